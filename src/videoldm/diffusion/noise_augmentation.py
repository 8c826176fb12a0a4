"""Noise augmentation of a cascade's conditioning frames (PAPER.md section 6).

An upsampler is trained on low-resolution frames downscaled from the truth, but at inference it gets a generator's
frames, with the generator's artefacts. Noising the low-resolution input, c = a_g * x + s_g * eps at a level g
that the model is told (as `class_labels`), hides that gap: trained on every level, the model can be run at a
level above the artefacts. As in diffusers' x4 upscaler, the levels are the timesteps of a separate DDPM schedule
(linear betas 1e-4 .. 0.02, 1000 steps: `low_res_scheduler`), drawn in [0, max_noise_level) during training, one
per clip -- never per frame, or the frames of a clip would see different inputs (PAPER.md section 10).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler


def low_res_scheduler_config() -> dict[str, Any]:
    """The noise-augmentation schedule of diffusers' x4 upscaler (its `low_res_scheduler`)."""
    return {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}


def low_res_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**low_res_scheduler_config())


def augment(
    frames: torch.Tensor, noise_level: torch.Tensor, noise: torch.Tensor, *, scheduler: DDPMScheduler
) -> torch.Tensor:
    """frames (B, C, T, h, w), noise_level (B,) integer levels (one per clip), noise like frames ->
    a_g * frames + s_g * noise (B, C, T, h, w), a_g = sqrt(alpha_bar[g]), s_g = sqrt(1 - alpha_bar[g])."""
    if noise_level.shape != (frames.shape[0],):
        raise ValueError(
            f"noise_level must be (B,) = ({frames.shape[0]},), one level per clip; got {noise_level.shape}"
        )
    levels = scheduler.config.num_train_timesteps
    if noise_level.min() < 0 or noise_level.max() >= levels:
        raise ValueError(f"noise levels must be in [0, {levels}), got {noise_level.tolist()}")
    return scheduler.add_noise(frames, noise.to(frames.dtype), noise_level.long().to(frames.device))
