"""Tiny interpolation models built in code (no downloads), shared by the interpolation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from test_pipeline_fixtures import perturb_temporal, sd_scheduler, tiny_image_unet, write_tiny_video_ldm
from videoldm import VideoUNet
from videoldm.layout import INTERPOLATION, SCHEDULER, TEMPORAL
from videoldm.training.stages.interpolation import write_interpolation_config

WINDOW = 9  # the clip length the tiny model "was trained on": its default window


def tiny_interpolation_unet(*, seed: int = 1, **options: Any) -> VideoUNet:
    """The tiny Video LDM's spatial UNet with trained-looking interpolation layers (context, two conditions)."""
    unet = tiny_image_unet(seed=0, cross_attention_dim=384)  # the spatial UNet of write_tiny_video_ldm's folder
    options = {"context_in_channels": True, "num_conditions": 2, **options}
    return perturb_temporal(VideoUNet.from_image_unet(unet, **options), seed=seed)


def save_tiny_interpolation_model(folder: Path, **options: Any) -> Path:
    """A tiny Video LDM folder (write_tiny_video_ldm) plus interpolation/."""
    if not folder.is_dir():
        write_tiny_video_ldm(folder)
    part = folder / INTERPOLATION
    tiny_interpolation_unet(**options).save_temporal(part / TEMPORAL)
    sd_scheduler().save_pretrained(part / SCHEDULER)
    write_interpolation_config(part, num_frames=WINDOW, frame_strides=[1, 4])
    return folder


def given_latents(batch: int = 1, frames: int = 3, *, seed: int = 0) -> torch.Tensor:
    """(B, 4, T, 4, 4) latents of the tiny model (16 x 16 pixel frames)."""
    return torch.randn((batch, 4, frames, 4, 4), generator=torch.Generator().manual_seed(seed))
