"""The image stage: a UNet2DConditionModel on single latent frames with a frozen text encoder (eps / v loss).

From scratch when `model.unet` gives its config; otherwise a fine-tune of the UNet in `model.pretrained`'s
`unet/` (personalisation starts from a trained image model). The export is a Stable Diffusion model folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from videoldm import layout
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import ConfigError, RunConfig
from videoldm.training.stages.diffusion import DiffusionStage
from videoldm.video_unet import VideoUNet


class ImageStage(DiffusionStage):
    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        cls.require_pretrained(config)  # its vae/ (and text encoder, if it has one)
        if config.model.unet is None and not (config.model.pretrained / layout.UNET).is_dir():
            raise ConfigError(
                f"model.unet: required for stage {config.stage!r} unless model.pretrained "
                f"({config.model.pretrained}) has a {layout.UNET}/ folder to fine-tune"
            )

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.vae = self._load_vae()
        if config.model.unet is not None:
            self.unet = UNet2DConditionModel(**config.model.unet)
        else:
            unet = UNet2DConditionModel.from_pretrained(self._pretrained(layout.UNET), local_files_only=True)
            self.unet = unet.train()  # from_pretrained returns eval mode; a fresh UNet trains in train mode
        if config.train.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.module = self._diffusion_loss(self.unet)

    def trainable(self) -> nn.Module:
        return self.unet

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        if not hasattr(self, "_sampling_unet"):  # built once: it hooks into self.unet
            self._sampling_unet = VideoUNet.from_image_unet(self.unet)
        return self._sampling_unet, True

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Single frames: latents (B, c, h, w), caption embeddings (B, L, D), noise and diffusion times."""
        assert cache.latents is not None
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=1, generator=g)
        latents = B.gather_clips(cache.latents, videos, starts, 1)[:, :, 0].float()
        text = B.text_for(cache, videos, dropout=self.config.train.caption_dropout, generator=g)
        return self._diffusion_batch(latents, text, g)

    def export(self, directory: Path, cache: VideoCache) -> None:
        self.unet.save_pretrained(directory / layout.UNET)
        self._write_conditioning(directory)
