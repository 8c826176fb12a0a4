"""A request from the web page: checked against the server's limits, then run through `pipelines.generate`.

`check_form` turns the page's inputs into a `VideoRequest` or raises ValueError with a message for the person at
the page (the page shows it; the server keeps serving). `VideoJobs` runs requests one at a time (the page's queue
has concurrency 1), with the loaded pipelines cached per model folder (loading costs seconds), and writes each
video to an mp4 in its own folder.
"""

from __future__ import annotations

import math
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from videoldm.defaults import DEFAULT_STEPS
from videoldm.io import write_video
from videoldm.pipelines.generate import (
    FPS,
    FRAMES,
    STACK_FPS,
    TextToVideo,
    VideoRequest,
    generate_video,
    load_pipeline,
    load_upscaler,
)
from videoldm.pipelines.stack import DEFAULT_KEYFRAMES, MAX_KEYFRAMES, stack_frames
from videoldm.pipelines.upscale import VideoUpscalePipeline
from videoldm.ui.models import ModelChoice

MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 20.0  # the page's slider; the shipped model needs no more than 7.5-12


@dataclass(frozen=True)
class Limits:
    """The server's limits (`videoldm serve --max-frames --max-size --max-steps`): the most frames per video, the
    largest height / width sampled (before an upsampler's x2 / x4) and the most denoising steps."""

    max_frames: int = stack_frames(DEFAULT_KEYFRAMES)  # 113: the stack's default video
    max_size: int = 128  # twice the shipped model's 64 x 64
    max_steps: int = 50

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def default_frames(self, *, stack: bool) -> int:
        """The page's frame count: the stack's 113 or the key frames' 16, within the limit."""
        return min(stack_frames(DEFAULT_KEYFRAMES) if stack else FRAMES, self.max_frames)


@dataclass(frozen=True)
class Form:
    """The page's inputs, as gradio passes them (numbers may arrive as floats or None)."""

    prompt: str
    negative_prompt: str = ""
    seed: float | None = -1
    frames: float | None = FRAMES
    steps: float | None = DEFAULT_STEPS
    guidance: float | None = 7.5
    interpolate: bool = False
    upscale: bool = False
    height: float | None = None
    width: float | None = None


def _integer(name: str, value: float | None) -> int:
    if value is None or not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _in_range(name: str, value: int, low: int, high: int, why: str = "") -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}]{why}, got {value}")
    return value


def check_form(form: Form, model: ModelChoice, limits: Limits) -> VideoRequest:
    """The `VideoRequest` for `form` on `model`, or a ValueError saying what to change (empty prompt, frames,
    steps or size out of the server's range, an option the model does not have). A negative or empty seed draws a
    random one."""
    prompt = (form.prompt or "").strip()
    if not prompt:
        raise ValueError('Type a prompt: what the video shows, e.g. "a red circle moving right".')
    if form.interpolate and not model.interpolation:
        raise ValueError(f"{model.name} has no interpolation model: untick Interpolate (key frames only)")
    if form.upscale and not model.upsampler:
        raise ValueError(f"{model.name} has no video upsampler: untick Upscale")
    stack = form.interpolate
    frames = _integer("Frames", form.frames)
    if stack:
        most = min(limits.max_frames, stack_frames(MAX_KEYFRAMES))
        _in_range("Frames", frames, 2, most, " with interpolation")
    else:
        _in_range("Frames", frames, 1, limits.max_frames, " (the server's limit)")
    steps = _in_range("Steps", _integer("Steps", form.steps), 1, limits.max_steps, " (the server's limit)")
    guidance = 7.5 if form.guidance is None else float(form.guidance)
    if not 0 <= guidance <= MAX_GUIDANCE:
        raise ValueError(f"Guidance must be in [0, {MAX_GUIDANCE:g}], got {guidance}")
    sizes = {}
    for name, value in (("Height", form.height), ("Width", form.width)):
        size = model.geometry.default_size if value is None else _integer(name, value)
        _in_range(name, size, 1, limits.max_size, " (the server's limit)")
        model.geometry.check_size(name, size)
        sizes[name] = size
    seed = -1 if form.seed is None else _integer("Seed", form.seed)
    seed = secrets.randbelow(2**31) if seed < 0 else _in_range("Seed", seed, 0, MAX_SEED)
    return VideoRequest(
        prompt=prompt,
        num_frames=frames,
        height=sizes["Height"],
        width=sizes["Width"],
        seed=seed,
        steps=steps,
        guidance=guidance,
        negative_prompt=(form.negative_prompt or "").strip() or None,
        keyframes_only=not stack,
    )


@dataclass(frozen=True)
class Result:
    """A written video and what made it."""

    path: Path
    request: VideoRequest
    fps: float
    height: int
    width: int
    seconds: float

    def summary(self) -> str:
        """One line for the page: seed, frames, rate, size, time."""
        r = self.request
        return (
            f"seed {r.seed} · {r.num_frames} frames at {self.fps:g} fps · {self.width} x {self.height} px · "
            f"{r.steps} steps · {self.seconds:.1f} s"
        )


class VideoJobs:
    """Runs checked requests: pipelines cached per model folder (the `max_models` most recently used), one job
    at a time (a lock, besides the page's queue), each video written to `output_dir` (the previous job's file is
    removed first: gradio has copied it into its own cache by then)."""

    def __init__(self, output_dir: Path, *, device: str | None = None, max_models: int = 2) -> None:
        self.output_dir = Path(output_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_models = max_models
        self._pipelines: OrderedDict[Path, TextToVideo] = OrderedDict()
        self._upscalers: OrderedDict[Path, VideoUpscalePipeline] = OrderedDict()
        self._lock = threading.Lock()

    def _cached(self, cache: OrderedDict, folder: Path, load):
        if folder not in cache:
            cache[folder] = load()
            while len(cache) > self.max_models:
                cache.popitem(last=False)
        cache.move_to_end(folder)
        return cache[folder]

    def pipeline(self, model: ModelChoice) -> TextToVideo:
        """The model's pipeline (the stack when it has interpolation/: its key-frame model serves key frames
        only too), loaded once."""
        return self._cached(
            self._pipelines,
            model.folder,
            lambda: load_pipeline(model.folder, stack=model.interpolation, device=self.device),
        )

    def upscaler(self, model: ModelChoice, height: int, width: int) -> VideoUpscalePipeline:
        """The model's upsampler, loaded once, checked to take `height` x `width` videos (ValueError)."""
        upscaler = self._cached(
            self._upscalers, model.folder, lambda: load_upscaler(model.folder, height, width).to(self.device)
        )
        upscaler.upsampler.check_input_size(height, width)
        return upscaler

    def run(self, model: ModelChoice, request: VideoRequest, *, upscale: bool = False) -> Result:
        """Sample `request` on `model` (then its upsampler when `upscale`) and write the mp4; ValueError for a
        size the upsampler does not take, OSError / ValueError when the folder does not load."""
        with self._lock:
            start = time.perf_counter()
            upscaler = self.upscaler(model, request.height, request.width) if upscale else None
            video = generate_video(self.pipeline(model), request, upscaler=upscaler)
            fps = FPS if request.keyframes_only else STACK_FPS
            shutil.rmtree(self.output_dir, ignore_errors=True)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            path = write_video(self.output_dir / f"videoldm-{request.seed}.mp4", video, fps=fps)
            height, width = video.shape[-2:]
            return Result(path, request, fps, height, width, seconds=time.perf_counter() - start)
