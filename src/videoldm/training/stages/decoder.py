"""The decoder stage: the temporal VAE decoder (PAPER.md section 3) against a 3D-conv patch discriminator.

Encoder and latent space frozen, the decoder's temporal layers trained on clips. `model.pretrained` is a
complete model folder; the export is that folder plus `temporal_decoder/`. The stage's adversary is the
video discriminator (see `Stage.adversary`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from videoldm import layout
from videoldm.autoencoder import DecoderLoss, VideoAutoencoder
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import RunConfig
from videoldm.training.stages.base import Stage


class DecoderReconstruction(nn.Module):
    """The temporal decoder's generator loss on clips: decode cached latents, compare with the true frames."""

    def __init__(self, video_ae: VideoAutoencoder, loss: DecoderLoss) -> None:
        super().__init__()
        self.video_ae = video_ae
        self.loss = loss
        self.step = 0  # the adversarial term starts at optim.disc_start_step
        self.last_reconstruction: torch.Tensor | None = None

    def forward(self, video: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """video (B, 3, T, H, W) in [-1, 1], latents (B, c, T, h, w) -> the generator loss."""
        reconstruction = self.video_ae.decode(latents)
        self.last_reconstruction = reconstruction.detach()  # for the discriminator step that follows
        loss, _ = self.loss.generator_loss(video, reconstruction, step=self.step, last_layer=self.video_ae.last_layer)
        return loss


class DecoderStage(Stage):
    needs_latents = True

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        cls.require_pretrained(config)

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.vae = self._load_vae()
        self.video_ae = VideoAutoencoder.from_vae(self.vae, **config.model.temporal_decoder)
        self.video_ae.freeze_spatial()
        if config.train.gradient_checkpointing:
            self.video_ae.enable_gradient_checkpointing()
        opt = config.optim
        loss = DecoderLoss(
            disc_weight=opt.disc_weight,
            disc_start_step=opt.disc_start_step,
            lpips_weights=opt.lpips_weights,
            flicker_weight=opt.flicker_weight,
        )
        self.module = DecoderReconstruction(self.video_ae, loss)
        self.adversary = loss.discriminator

    def trainable(self) -> nn.Module:
        return self.video_ae.temporal

    def begin_step(self, step: int) -> None:
        self.module.step = step

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Clips: video (B, 3, T, H, W) in [-1, 1] and their cached latents (B, c, T, h, w)."""
        assert cache.latents is not None
        t = self.config.data.num_frames
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=t, generator=g)
        return {
            "video": B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, t)),
            "latents": B.gather_clips(cache.latents, videos, starts, t).float(),
        }

    def adversary_loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor | None:
        """The discriminator's hinge loss on this step's clips and reconstructions (None before it starts)."""
        loss = self.module.loss
        if not loss.discriminator_active(step) or self.module.last_reconstruction is None:
            return None
        d_loss, _ = loss.discriminator_loss(batch["video"], self.module.last_reconstruction, step=step)
        return d_loss

    def export(self, directory: Path, cache: VideoCache) -> None:
        assert self.config.model.pretrained is not None
        shutil.copytree(self.config.model.pretrained, directory, ignore=shutil.ignore_patterns(layout.TEMPORAL_DECODER))
        self.video_ae.save_temporal(directory / layout.TEMPORAL_DECODER)
