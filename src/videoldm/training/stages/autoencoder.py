"""The autoencoder stage: a diffusers AutoencoderKL on single frames (L1 + KL), for models trained from scratch.

The export is a model folder with `vae/` only, its `scaling_factor` measured on the data.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from videoldm import layout
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import ConfigError, RunConfig
from videoldm.training.stages.base import Stage


class AutoencoderLoss(nn.Module):
    """L1 reconstruction + KL for an AutoencoderKL on frames (B, 3, H, W) in [-1, 1]."""

    def __init__(self, vae: AutoencoderKL, kl_weight: float) -> None:
        super().__init__()
        self.vae = vae
        self.kl_weight = kl_weight

    def forward(self, frames: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(frames).latent_dist
        z = posterior.mean + posterior.std * noise  # reparameterised with the step's noise (deterministic)
        reconstruction = self.vae.decode(z).sample
        return F.l1_loss(reconstruction, frames) + self.kl_weight * posterior.kl().mean()


class AutoencoderStage(Stage):
    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        if config.model.vae is None:
            raise ConfigError(f"model.vae: required for stage {config.stage!r} (the AutoencoderKL config)")

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        assert config.model.vae is not None
        self.vae = AutoencoderKL(**config.model.vae)
        self.module = AutoencoderLoss(self.vae, config.optim.kl_weight)

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=1, generator=g)
        frames = B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, 1)[:, :, 0])
        if self.config.data.random_flip:
            frames = B.flip(frames, g)
        latent_shape = self._latent_shape(frames)
        return {"frames": frames, "noise": torch.randn(latent_shape, generator=g)}

    def _latent_shape(self, frames: torch.Tensor) -> tuple[int, ...]:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        b, _, h, w = frames.shape
        return (b, self.vae.config.latent_channels, h // factor, w // factor)

    def export(self, directory: Path, cache: VideoCache) -> None:
        # Latents should have unit variance for the diffusion model's noise schedule: measure, as SD did for
        # its 0.18215, and store it as the VAE's scaling_factor.
        self.vae.register_to_config(scaling_factor=self._latent_scale(cache))
        self.vae.save_pretrained(directory / layout.VAE)

    @torch.no_grad()
    def _latent_scale(self, cache: VideoCache, count: int = 256) -> float:
        g = torch.Generator().manual_seed(0)
        videos, starts = B.pick_clips(cache, batch_size=count, num_frames=1, generator=g)
        frames = B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, 1)[:, :, 0])
        was_training = self.vae.training
        self.vae.eval()
        latents = self.vae.encode(frames.to(self.vae.device)).latent_dist.mode()
        self.vae.train(was_training)
        return float(1.0 / latents.float().std())
