"""The temporal stage: a VideoUNet's temporal layers on latent clips, spatial layers frozen.

One noise level per clip; optionally a share of the clips trained as images through `image_only_indicator`.
Starts from an image LDM folder (new temporal layers with `model.temporal`'s options) or continues a Video
LDM folder's temporal layers; `model.fresh_temporal: true` builds new layers on a Video LDM folder's `unet/`
instead. The export is a Video LDM model folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from videoldm import layout
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import RunConfig
from videoldm.training.stages.diffusion import DiffusionStage
from videoldm.video_unet import VideoUNet


class TemporalStage(DiffusionStage):
    continued_part = layout.TEMPORAL

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        cls.require_pretrained(config)
        cls._require_saved_prediction_type(config)
        cls._refuse_options_when_continuing(config)

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.vae = self._load_vae()
        if self._continues(config):
            self.video_unet = VideoUNet.from_pretrained(config.model.pretrained)
        else:
            unet = UNet2DConditionModel.from_pretrained(self._pretrained(layout.UNET), local_files_only=True)
            self.video_unet = VideoUNet.from_image_unet(unet, **config.model.temporal)
        self.module = self._temporal_loss(self.video_unet)

    def trainable(self) -> nn.Module:
        return self.video_unet.temporal

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        return self.video_unet, False

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Clips: latents (B, c, T, h, w), caption embeddings (B, L, D), noise, one diffusion time per clip,
        and `image_only_indicator` (B, T) when `train.image_fraction` > 0."""
        assert cache.latents is not None
        t = self.config.data.num_frames
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=t, generator=g)
        latents = B.gather_clips(cache.latents, videos, starts, t).float()
        text = B.text_for(cache, videos, dropout=self.config.train.caption_dropout, generator=g)
        batch = self._diffusion_batch(latents, text, g)
        if self.config.train.image_fraction > 0:
            images = torch.rand(latents.shape[0], generator=g) < self.config.train.image_fraction
            batch["image_only_indicator"] = images[:, None].expand(-1, t).clone()
        return batch

    def export(self, directory: Path, cache: VideoCache) -> None:
        self._save_video_unet(self.video_unet, directory)
        self._write_conditioning(directory)
