"""One text-to-video run on a Video LDM folder: the path `videoldm generate` and `videoldm serve` share.

`load_pipeline` loads the folder as the paper's stack (`VideoLDMStackPipeline`, when it has `interpolation/` and
the stack runs) or as the text-to-video model alone (`VideoLDMPipeline`); `load_upscaler` its `upsampler/`;
`generate_video` runs a `VideoRequest` through them: key frames (-> x4 -> x4) -> one decode (-> the upsampler).
Callers check their arguments first (the CLI with its option names, the web page with its limits); here a bad
value raises the pipelines' ValueError, and a folder that does not load raises OSError or ValueError.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from videoldm.defaults import DEFAULT_STEPS
from videoldm.diffusion import make_scheduler
from videoldm.layout import INTERPOLATION, TEMPORAL, UPSAMPLER
from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline
from videoldm.pipelines.rollout import DEFAULT_CONTEXT_GUIDANCE, PredictionSpec, stream_keyframes, stream_stack
from videoldm.pipelines.stack import DEFAULT_INTERPOLATION_STEPS, VideoLDMStackPipeline, keyframes_for
from videoldm.pipelines.upscale import DEFAULT_STEPS as UPSCALE_DEFAULT_STEPS
from videoldm.pipelines.upscale import VideoUpscalePipeline

STACK_FPS = 30.0  # the paper's output rate (key frames at 30 / 16 = 1.875 fps)
FPS = 8.0  # key frames alone, and folders without interpolation/
FRAMES = 16  # key frames alone, and folders without interpolation/

TextToVideo = VideoLDMPipeline | VideoLDMStackPipeline


@dataclass(frozen=True)
class VideoRequest:
    """What to sample: the arguments of `videoldm generate` that reach the pipelines.

    `num_frames` N is the output's frame count (with the stack: K = keyframes_for(N) key frames, interpolated and
    trimmed to N); `steps` and `guidance` are the key frames'; the `interpolation_*` and `context_guidance`
    options are the stack's (None: its defaults), `prediction_guidance` the context guidance of a rollout's
    predicted clips (None: `rollout.DEFAULT_CONTEXT_GUIDANCE`). `keyframes_only` runs a stack pipeline's key-frame
    model alone. `conv_in_time` samples all key frames as one clip, the model on overlapping windows of its
    trained length (`pipelines.conv_in_time`), instead of a rollout.
    """

    prompt: str
    num_frames: int
    height: int
    width: int
    seed: int
    steps: int = DEFAULT_STEPS
    guidance: float = 7.5
    negative_prompt: str | None = None
    keyframes_only: bool = False
    image_only: bool = False
    image_decoder: bool = False
    interpolation_steps: int | None = None
    interpolation_strength: float | tuple[float, ...] | None = None  # one, or one per x4 pass
    context_guidance: float | None = None
    prediction_guidance: float | None = None
    conv_in_time: bool = False


def has_interpolation(folder: Path) -> bool:
    """Whether the folder holds an interpolation model (`interpolation/temporal/`): the stack runs by default."""
    return (folder / INTERPOLATION / TEMPORAL).is_dir()


def has_upsampler(folder: Path) -> bool:
    """Whether the folder holds a video upsampler (`upsampler/`)."""
    return (folder / UPSAMPLER).is_dir()


def load_pipeline(
    folder: Path,
    *,
    stack: bool,
    image_decoder: bool = False,
    torch_dtype: torch.dtype = torch.float32,
    scheduler: str | None = None,
    device: torch.device | str = "cpu",
) -> TextToVideo:
    """The folder's stack pipeline (`stack`, the folder must have `interpolation/`) or its text-to-video pipeline,
    on `device`; `scheduler` (a name of `videoldm.diffusion.SAMPLERS`) replaces the key frames' sampler.
    Raises OSError or ValueError when the folder does not load."""
    loader = VideoLDMStackPipeline if stack else VideoLDMPipeline
    pipe = loader.from_pretrained(folder, image_decoder=image_decoder, torch_dtype=torch_dtype)
    if scheduler is not None:
        keyframes = keyframe_pipeline(pipe)
        keyframes.scheduler = make_scheduler(scheduler, keyframes.scheduler.config)
    return pipe.to(device)


def keyframe_pipeline(pipe: TextToVideo) -> VideoLDMPipeline:
    """The text-to-video model of `pipe`: the stack's key-frame pipeline, or `pipe` itself."""
    return pipe.keyframes if isinstance(pipe, VideoLDMStackPipeline) else pipe


def load_upscaler(folder: Path, height: int, width: int) -> VideoUpscalePipeline:
    """The folder's `VideoUpscalePipeline`, checked to take `height` x `width` videos (before anything is sampled).
    Raises ValueError when the folder has no `upsampler/` or the size does not fit it, OSError when it does not
    load."""
    if not has_upsampler(folder):
        raise ValueError(f"{folder} has no {UPSAMPLER}/ folder (a video upsampler)")
    upscaler = VideoUpscalePipeline.from_pretrained(folder)
    upscaler.upsampler.check_input_size(height, width)
    return upscaler


def generate_video(
    pipe: TextToVideo, request: VideoRequest, *, upscaler: VideoUpscalePipeline | None = None
) -> torch.Tensor:
    """Sample `request` with `pipe` -- the stack when `pipe` is one and not `request.keyframes_only`, else the
    text-to-video model alone -- then run `upscaler` (on `pipe`'s device) on the video when given.

    One generator seeded with `request.seed` seeds every stage in turn, and the upsampler gets its own generator
    at the same seed: same request, same video. Each stage shows a tqdm bar ("key frames", "interpolating x4
    (1/2)", "(2/2)", "upscaling"; "generating" without the stack).

    Returns:
        (3, N, H, W) in [-1, 1] on the CPU (H, W multiplied by the upsampler's factor when upscaled).
    """
    common = {"num_frames": request.num_frames, **sampling_options(request)}
    if runs_stack(pipe, request):
        assert isinstance(pipe, VideoLDMStackPipeline)
        pipe.set_progress_bar_config(unit="step")
        strength = request.interpolation_strength
        video = pipe(
            request.prompt,
            **common,
            interpolation_steps=request.interpolation_steps or DEFAULT_INTERPOLATION_STEPS,
            **({} if strength is None else {"interpolation_strength": strength}),
            context_guidance_scale=1.0 if request.context_guidance is None else request.context_guidance,
        ).frames
    else:
        keyframes = keyframe_pipeline(pipe)
        keyframes.set_progress_bar_config(desc="generating", unit="step")
        video = keyframes(request.prompt, **common, image_only=request.image_only).frames
    if upscaler is not None:
        upscaler.to(pipe.device)
        with tqdm(total=UPSCALE_DEFAULT_STEPS, desc="upscaling", unit="step") as bar:
            video = upscaler(
                video,
                num_inference_steps=UPSCALE_DEFAULT_STEPS,
                generator=torch.Generator().manual_seed(request.seed),
                image_only=request.image_only,
                progress=bar,
            ).frames
    return video[0].cpu()


def sampling_options(request: VideoRequest, *, prediction: bool = False) -> dict[str, Any]:
    """The key frames' sampling options of `request` (and a rollout's context guidance with `prediction`), with
    a new generator seeded by `request.seed`: the keyword arguments every text-to-video path shares."""
    options = {
        "height": request.height,
        "width": request.width,
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance,
        "negative_prompt": request.negative_prompt,
        "generator": torch.Generator().manual_seed(request.seed),
        "image_decoder": request.image_decoder,
    }
    if prediction:
        guidance = request.prediction_guidance
        options["context_guidance_scale"] = DEFAULT_CONTEXT_GUIDANCE if guidance is None else guidance
    return options


def runs_stack(pipe: TextToVideo, request: VideoRequest) -> bool:
    """Whether `request` runs the whole stack on `pipe` (else the key-frame model alone)."""
    return isinstance(pipe, VideoLDMStackPipeline) and not request.keyframes_only and not request.image_only


def needs_stream(request: VideoRequest, spec: PredictionSpec | None, *, stack: bool) -> bool:
    """Whether `request` is made piece by piece (`stream_video`): conv-in-time, or longer than one clip of the
    folder's prediction model (`spec`: a rollout). Without a prediction model a long request is one clip."""
    if request.image_only:
        return False
    if request.conv_in_time:
        return True
    if spec is None:
        return False
    keyframes = keyframes_for(request.num_frames, max_keyframes=None) if stack else request.num_frames
    return keyframes > spec.num_frames


def stream_video(pipe: TextToVideo, request: VideoRequest, spec: PredictionSpec | None) -> Iterator[torch.Tensor]:
    """`request` as a rollout or conv-in-time (`pipelines.rollout`): pieces (3, n, H, W) in [-1, 1] on the CPU,
    N frames in all, interpolated and decoded piece by piece -- memory does not grow with N. Same request, same
    video."""
    options = {**sampling_options(request, prediction=True), "conv_in_time": request.conv_in_time}
    if runs_stack(pipe, request):
        assert isinstance(pipe, VideoLDMStackPipeline)
        pipe.set_progress_bar_config(unit="step")
        strength = request.interpolation_strength
        pieces = stream_stack(
            pipe,
            request.prompt,
            num_frames=request.num_frames,
            spec=spec,
            interpolation_steps=request.interpolation_steps or DEFAULT_INTERPOLATION_STEPS,
            **({} if strength is None else {"interpolation_strength": strength}),
            interpolation_context_guidance_scale=1.0 if request.context_guidance is None else request.context_guidance,
            **options,
        )
    else:
        keyframes = keyframe_pipeline(pipe)
        keyframes.set_progress_bar_config(desc="generating", unit="step")
        pieces = stream_keyframes(keyframes, request.prompt, num_frames=request.num_frames, spec=spec, **options)
    for piece in pieces:
        yield piece[0].cpu()
