"""Tiny AutoencoderKLs and videos built in code for the autoencoder tests (no downloads)."""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKL

from videoldm.autoencoder import VideoAutoencoder


def tiny_vae(*, seed: int = 0, norm_num_groups: int = 4) -> AutoencoderKL:
    """Two levels (8, 16 channels), 2x downsampling, 4 latent channels, 4 norm groups by default."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=norm_num_groups,
        sample_size=16,
    ).eval()


def perturb_temporal(video_ae: VideoAutoencoder, *, scale: float = 0.1, seed: int = 1) -> None:
    """Give every temporal parameter random values (as after training), so temporal layers act."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in video_ae.temporal.named_parameters():
            p.copy_(torch.randn_like(p) * scale + (0.5 if name.endswith("mix_logit") else 0.0))


def tiny_video(*, batch: int = 2, frames: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    """A smooth moving pattern (B, 3, T, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, 3, 1, 1, 1, generator=g) * 2 * math.pi
    t = torch.arange(frames).reshape(1, 1, -1, 1, 1)
    x = torch.linspace(0, 2 * math.pi, size)
    return torch.sin(x.reshape(1, 1, 1, 1, -1) + x.reshape(1, 1, 1, -1, 1) * 0.5 + phase + 0.3 * t) * 0.9


def smooth_latents(*, frames: int, seed: int = 0, size: int = 8) -> torch.Tensor:
    """Latents (1, 4, T, size, size) that change slowly over time, so a seam would stand out."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 1, 4, 1, size, size, generator=g)
    t = torch.arange(frames).float().reshape(1, 1, -1, 1, 1) * 0.1
    return a * torch.cos(t) + b * torch.sin(t)
