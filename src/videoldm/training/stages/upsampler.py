"""The upsampler stage: the video upsampler of PAPER.md section 6, trained on patches in pixel space.

Two runs of one stage, as for the generator:
- image upsampler (no `model.temporal`): a fresh UNet from `model.unet` (in_channels 6 = noisy frame + the
  low-resolution frame, out_channels 3, `num_class_embeds` >= max_noise_level), or the one in `model.pretrained`'s
  `upsampler/` fine-tuned;
- temporal layers (`model.temporal`: `TemporalAdapter` options, `temporal_norm: frame` by default -- the pipeline
  samples in chunks of frames, and "clip" norms would make a chunk's output depend on its length) on the frozen
  image upsampler in `model.pretrained`'s `upsampler/`; a folder with `upsampler/temporal/` is continued.

A batch: clips of `data.num_frames` frames from the pixel cache (decoded at `data.size`, the output size), one
random `data.patch_size` crop per clip (default 32, aligned to the factor), downscaled by area to the input size,
noise-augmented at one level per clip in [0, max_noise_level) (`VideoUpsampler.condition`; all zeros for a
`train.context_dropout` share of the clips: the branch without it of input guidance), and the diffusion
loss (`DiffusionLoss`, one diffusion time per clip) on the high-resolution patch (or its scaled residual over the
bicubic upscale, for a `residual` upsampler: `VideoUpsampler.to_diffusion`). `model.upsampler` holds the
`UpsamplerConfig` options (scale_factor, max_noise_level, noise_level) for a fresh upsampler.
The export is a model folder with `upsampler/` (the sampler in `upsampler/scheduler/`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from videoldm import layout
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import ConfigError, RunConfig
from videoldm.training.stages.diffusion import DiffusionLoss, DiffusionStage
from videoldm.upsampler import UpsamplerConfig, VideoUpsampler, downscale
from videoldm.video_unet import VideoUNet

PATCH_SIZE = 32  # default training patch, output pixels


class UpsamplerLoss(nn.Module):
    """`DiffusionLoss` on high-resolution patches (B, 3, T, P, P) given their conditioning: no text."""

    def __init__(self, loss: DiffusionLoss) -> None:
        super().__init__()
        self.loss = loss

    def forward(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        condition: torch.Tensor,
        noise_level: torch.Tensor,
    ) -> torch.Tensor:
        return self.loss(latents, None, noise, timesteps, condition=condition, noise_level=noise_level)


class UpsamplerStage(DiffusionStage):
    needs_latents = False
    needs_text = False

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        model, options = config.model, dict(config.model.upsampler)
        if config.data.shards is not None:
            raise ConfigError("data.shards: the upsampler trains on pixels; give data.videos")
        for key in ("sample_every", "probe_every"):
            if getattr(config.train, key):
                raise ConfigError(f"train.{key}: not supported by stage 'upsampler' (it samples no text-to-video)")
        known = {*inspect.signature(UpsamplerConfig.__init__).parameters} - {"self"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"model.upsampler.{unknown[0]}: unknown key; known keys: {sorted(known)}")
        folder = cls._pretrained_upsampler(config)
        if folder is None:
            if model.unet is None:
                raise ConfigError("model.unet: required for stage 'upsampler' without model.pretrained's upsampler/")
            if model.temporal:
                raise ConfigError(
                    "model.temporal: the temporal layers go on a trained image upsampler (model.pretrained)"
                )
            try:
                UpsamplerConfig(**options)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"model.upsampler: {err}") from err
        else:
            if model.unet is not None:
                raise ConfigError(
                    f"model.unet: leave it out: the UNet is {folder}'s (fine-tuned, or under temporal layers)"
                )
            cls._require_saved_prediction_type(config, folder)
            if options:
                raise ConfigError(f"model.upsampler.{sorted(options)[0]}: set by {folder}; leave it out")
            if model.temporal and (folder / layout.TEMPORAL).is_dir():
                raise ConfigError(
                    f"model.temporal: {folder} has temporal layers already; leave it out to continue them"
                )
            if model.temporal.get("temporal_norm", "frame") != "frame":
                raise ConfigError(
                    "model.temporal.temporal_norm: must be 'frame' for the upsampler (it samples in chunks of frames; "
                    "'clip' norms make a chunk's output depend on its length)"
                )
        scale = (
            options.get("scale_factor", 2) if folder is None else UpsamplerConfig.load_config(folder)["scale_factor"]
        )
        patch = cls._patch_size(config)
        if not isinstance(patch, int) or patch % scale or not scale <= patch <= config.data.size:
            raise ConfigError(
                f"data.patch_size: a multiple of the scale_factor ({scale}) up to data.size ({config.data.size}), "
                f"got {patch!r}"
            )
        if config.data.size % scale:
            raise ConfigError(f"data.size: must be a multiple of scale_factor ({scale}), got {config.data.size}")

    @staticmethod
    def _patch_size(config: RunConfig) -> int:
        """Output pixels per side of a training patch: data.patch_size, or PATCH_SIZE."""
        return PATCH_SIZE if config.data.patch_size is None else config.data.patch_size

    @staticmethod
    def _pretrained_upsampler(config: RunConfig) -> Path | None:
        pretrained = config.model.pretrained
        if pretrained is None:
            return None
        if not (pretrained / layout.UPSAMPLER / layout.UNET).is_dir():
            raise ConfigError(f"model.pretrained: {pretrained} has no {layout.UPSAMPLER}/{layout.UNET}/ to build on")
        return pretrained / layout.UPSAMPLER

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        options: dict[str, Any] = dict(config.model.upsampler)
        self.patch_size = self._patch_size(config)
        folder = self._pretrained_upsampler(config)
        self.temporal = bool(config.model.temporal) or (folder is not None and (folder / layout.TEMPORAL).is_dir())
        if folder is None:
            assert config.model.unet is not None
            self.upsampler = VideoUpsampler.from_image_unet(
                UNet2DConditionModel(**config.model.unet), config=UpsamplerConfig(**options)
            )
        elif self.temporal and not config.model.temporal:  # continue the saved temporal layers
            self.upsampler = VideoUpsampler.from_pretrained(folder)
        else:
            image = VideoUpsampler.from_pretrained(folder, image_only=True)
            unet = image.video_unet.unet.train()
            temporal = {"temporal_norm": "frame", **config.model.temporal} if self.temporal else {}
            self.upsampler = VideoUpsampler.from_image_unet(unet, config=image.upsampler_config, **temporal)
        self.video_unet: VideoUNet = self.upsampler.video_unet
        if self.temporal:
            self.video_unet.freeze_spatial()
        else:
            self.video_unet.unet.train()
        if config.train.gradient_checkpointing:
            self.video_unet.enable_gradient_checkpointing()
        self.module = UpsamplerLoss(self._diffusion_loss(self.upsampler))

    def trainable(self) -> nn.Module:
        return self.video_unet.temporal if self.temporal else self.video_unet.unet

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        raise NotImplementedError("the upsampler stage writes no text-to-video samples")

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        """High-resolution patches (B, 3, T, P, P) as `latents` (or their residuals), their noise and diffusion
        times, the conditioning (B, 3, T, P, P) from the area-downscaled patch and its noise levels (B,)."""
        t, b = self.config.data.num_frames, self.config.train.batch_size
        scale = self.upsampler.scale_factor
        videos, frames = B.pick_clips(cache, batch_size=b, num_frames=t, generator=g)
        clips = B.gather_clips(cache.pixels, videos, frames, t)  # uint8 (B, 3, T, H, W)
        size, patch = clips.shape[-1], self.patch_size
        high = B.to_unit_range(B.crop(clips, B.random_corners(b, size, patch, grid=scale, generator=g), patch))
        if self.config.data.random_flip:
            high = B.flip(high, g)
        low = downscale(high, scale)
        levels = torch.randint(self.upsampler.config.max_noise_level, (b,), generator=g)
        condition = self.upsampler.condition(low, levels, noise=torch.randn(low.shape, generator=g))
        if self.config.train.context_dropout:  # the all-zero input of input guidance (drawn only when used)
            condition = B.zero_share(condition, self.config.train.context_dropout, g)
        batch = self._diffusion_batch(self.upsampler.to_diffusion(high, low), None, g)
        del batch["text"]
        return {**batch, "condition": condition, "noise_level": levels}

    def export(self, directory: Path, cache: VideoCache) -> None:
        part = directory / layout.UPSAMPLER
        self.upsampler.save_pretrained(part)
        self.sampling_scheduler().save_pretrained(part / layout.SCHEDULER)
