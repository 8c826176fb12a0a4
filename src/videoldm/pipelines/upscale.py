"""VideoUpscalePipeline: low-resolution videos -> videos `scale_factor` times larger (PAPER.md section 6).

Seams as in diffusers' x4 upscale pipeline: `check_inputs`, the noise-augmented conditioning
(`VideoUpsampler.condition`, one level per clip), `prepare_latents` (seeded noise at the output size), the one
sampling loop (`diffusion.sampling.sample_latents`) whose model closure runs the upsampler over overlapping,
blended windows of frames and tiles of pixels (`diffusion.windows`): memory is bounded by `chunk_size` frames x
`tile_size` pixels, not by the video. Pixel space: there is nothing to decode.

Folder: a model folder's `upsampler/` (see `videoldm.upsampler`); `scheduler/` inside it is the sampler.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from videoldm.diffusion.guidance import Conditioning, context_guider
from videoldm.diffusion.sampling import Generator, sample_latents
from videoldm.diffusion.windows import Window, WindowPlan, blend_windows
from videoldm.layout import SCHEDULER, UPSAMPLER
from videoldm.loading import load_scheduler
from videoldm.upsampler import VideoUpsampler

OUTPUT_TYPES = ("pt", "np")
DEFAULT_STEPS = 20  # denoising steps of `__call__` (and of `videoldm generate --upscale`)


@dataclass
class VideoUpscaleOutput(BaseOutput):
    """frames: (B, 3, T, H, W) float in [-1, 1] ("pt") or (B, T, H, W, 3) uint8 ("np")."""

    frames: torch.Tensor | np.ndarray


class VideoUpscalePipeline:
    """Video super-resolution with a `VideoUpsampler` and a diffusers scheduler (its sampler)."""

    def __init__(self, *, upsampler: VideoUpsampler, scheduler: SchedulerMixin) -> None:
        self.upsampler = upsampler.eval()
        self.scheduler = scheduler

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, image_only: bool = False, torch_dtype: torch.dtype = torch.float32
    ) -> VideoUpscalePipeline:
        """A model folder with `upsampler/` (or the `upsampler/` folder itself). `image_only`: load the image
        upsampler alone (its temporal layers left out: the paper's baseline). Local files only."""
        folder = Path(directory)
        part = folder / UPSAMPLER if (folder / UPSAMPLER).is_dir() else folder
        if not (part / SCHEDULER).is_dir():
            raise FileNotFoundError(f"{folder} has no {UPSAMPLER}/ folder with a {SCHEDULER}/ (no video upsampler)")
        upsampler = VideoUpsampler.from_pretrained(part, image_only=image_only, torch_dtype=torch_dtype)
        return cls(upsampler=upsampler, scheduler=load_scheduler(part / SCHEDULER))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `directory/upsampler/` (what `from_pretrained` reads)."""
        part = Path(directory) / UPSAMPLER
        self.upsampler.save_pretrained(part)
        self.scheduler.save_pretrained(part / SCHEDULER)
        return Path(directory)

    @property
    def device(self) -> torch.device:
        return self.upsampler.device

    @property
    def dtype(self) -> torch.dtype:
        return self.upsampler.dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> VideoUpscalePipeline:
        self.upsampler.video_unet.to(**{k: v for k, v in {"device": device, "dtype": dtype}.items() if v is not None})
        return self

    # ------------------------------------------------------------------ seams
    def check_inputs(
        self,
        video: torch.Tensor,
        *,
        noise_level: int,
        num_inference_steps: int,
        chunk_size: int | None,
        chunk_overlap: int,
        tile_size: int | None,
        tile_overlap: int,
        output_type: str,
    ) -> None:
        """Raise a ValueError naming the first bad argument."""
        if not torch.is_tensor(video) or video.ndim != 5 or video.shape[1] != 3:
            shape = tuple(video.shape) if torch.is_tensor(video) else type(video).__name__
            raise ValueError(f"video must be a tensor (B, 3, T, h, w) in [-1, 1], got {shape}")
        self.upsampler.check_input_size(video.shape[3], video.shape[4])
        top = self.upsampler.config.max_noise_level
        if not isinstance(noise_level, int) or not 0 <= noise_level < top:
            raise ValueError(f"noise_level must be an integer in [0, {top}) for this upsampler, got {noise_level!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if chunk_size is not None and (chunk_size < 1 or not 0 <= chunk_overlap < chunk_size):
            raise ValueError(
                f"need chunk_size >= 1 and 0 <= chunk_overlap < chunk_size, got {chunk_size}, {chunk_overlap}"
            )
        if tile_size is not None:
            multiple = self.upsampler.size_multiple
            if tile_size < multiple or tile_size % multiple or not 0 <= tile_overlap < tile_size:
                raise ValueError(
                    f"tile_size must be a positive multiple of {multiple} (output pixels) and 0 <= tile_overlap < "
                    f"tile_size, got {tile_size}, {tile_overlap}"
                )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")

    def prepare_latents(self, shape: tuple[int, ...], *, generator: Generator) -> torch.Tensor:
        """Seeded noise (B, 3, T, H, W) at the scheduler's initial sigma (set the timesteps first)."""
        noise = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        return noise.to(self.device) * self.scheduler.init_noise_sigma

    def _denoise(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        *,
        noise_level: torch.Tensor,
        plan: WindowPlan,
        image_only: bool,
        encoder_hidden_states: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The sampling loop's model: the upsampler on each window of `plan`, blended -> (N*B, 3, T, H, W).
        `context` is the upsampler's input (N*B, 3, T, H, W), stacked by the guider (all zeros in the branch
        without it); `noise_level` (B,) goes to every branch."""
        assert context is not None
        levels = noise_level.repeat(sample.shape[0] // noise_level.shape[0])

        def run(windows: list[Window]) -> torch.Tensor:
            (window,) = windows  # one tile per call (blend_windows' default group)
            part = (slice(None), slice(None), *window)
            x = sample[part].to(self.dtype)
            return self.upsampler(
                x, timestep, condition=context[part], noise_level=levels, image_only=image_only
            ).sample

        return blend_windows(run, plan, batch=sample.shape[0], channels=sample.shape[1], like=sample)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        video: torch.Tensor,
        *,
        noise_level: int | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        generator: Generator = None,
        chunk_size: int | None = 16,
        chunk_overlap: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        image_only: bool = False,
        input_guidance_scale: float = 1.0,
        output_type: str = "pt",
        progress: Any = None,
        return_dict: bool = True,
    ) -> VideoUpscaleOutput | tuple:
        """Upscale videos.

        Args:
            video: (B, 3, T, h, w) in [-1, 1].
            noise_level: noise augmentation of the input, in [0, max_noise_level) (default: the folder's level);
                higher hides more of the input's artefacts and keeps less of its detail.
            generator: seeds the input's augmentation noise and the initial noise: same seed, same video. A list
                of B generators seeds each video alone.
            chunk_size: frames per window (None: all frames at once); chunk_overlap: frames shared by neighbouring
                windows (default chunk_size // 4). tile_size / tile_overlap: the same for output pixels (default
                the whole frame; tile_overlap default tile_size // 4).
            image_only: skip the temporal layers (the image upsampler, frame by frame).
            input_guidance_scale: s != 1 runs guidance over the input, f(z) + s (f(z; input) - f(z)), the branch
                without it fed an all-zero input (for an upsampler trained with `train.context_dropout`); s = 1:
                one branch, no guidance.
            output_type: "pt" -> (B, 3, T, H, W) in [-1, 1]; "np" -> (B, T, H, W, 3) uint8.
            progress: anything with `update()` (a tqdm bar), called once per step.
        """
        noise_level = self.upsampler.config.noise_level if noise_level is None else noise_level
        chunk_overlap = (chunk_size // 4 if chunk_size else 0) if chunk_overlap is None else chunk_overlap
        tile_overlap = (tile_size // 4 if tile_size else 0) if tile_overlap is None else tile_overlap
        self.check_inputs(
            video,
            noise_level=noise_level,
            num_inference_steps=num_inference_steps,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            output_type=output_type,
        )
        b, c, t, h, w = video.shape
        factor = self.upsampler.scale_factor
        levels = torch.full((b,), noise_level, dtype=torch.long, device=self.device)
        noise = randn_tensor(video.shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        condition = self.upsampler.condition(video.to(self.device), levels, noise=noise.to(self.device))
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        latents = self.prepare_latents((b, c, t, h * factor, w * factor), generator=generator)
        plan = WindowPlan.of(
            t,
            h * factor,
            w * factor,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
        )
        model = functools.partial(self._denoise, noise_level=levels, plan=plan, image_only=image_only)
        sample = sample_latents(
            model,
            self.scheduler,
            latents,
            cond=Conditioning(text=None, context=condition.to(self.dtype)),
            guider=context_guider(input_guidance_scale),
            generator=generator,
            progress=progress,
        )
        frames = self.upsampler.from_diffusion(sample, video.to(self.device)).clamp(-1, 1)
        if output_type == "np":
            frames = ((frames + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
        return VideoUpscaleOutput(frames=frames) if return_dict else (frames,)
