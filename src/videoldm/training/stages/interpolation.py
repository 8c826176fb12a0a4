"""The interpolation stage (PAPER.md section 5): temporal layers with a context encoder that make the 3 frames
between each pair of given frames, on a frozen image UNet -- one model for the two stages of the paper's stack,
told which by a task condition.

A clip is `data.num_frames` = 4k + 1 latent frames (5, 9, 13, ...) from the latent cache; every 4th is given
(`diffusion.masks.interpolation_mask`). Condition c (one per clip, uniform over `num_conditions`) takes the clip's
frames every `data.frame_stride * 4**c` source frames: with `frame_stride: 1` and two conditions, c = 0 is the
last stage of the stack (given frames 4 source frames apart -> every frame, 7.5 -> 30 fps) and c = 1 the first
(key frames 16 apart -> 4 apart, 1.875 -> 7.5 fps). The given frames enter as clean context (mask * z, mask); a
`train.context_dropout` share of the clips gets an all-zero context instead (context guidance); captions are
dropped as in the temporal stage. The loss counts the new frames only (`DiffusionLoss(loss_mask=...)`): the
sampler holds the given frames at the noise level of each step, as this stage noises them, and pastes them back
at the end, so what the model predicts for them is never used (docs/interpolation.md).

Model: fresh temporal layers (`model.temporal`: `TemporalAdapter` options; `context_in_channels` is always set,
`num_conditions` defaults to 2) on `model.pretrained`'s `unet/` (an image LDM or a Video LDM folder), or the
folder's `interpolation/` continued (`model.fresh_temporal: true`: new layers anyway). The export is the
pretrained folder's parts (unet/, temporal/, temporal_decoder/, upsampler/ where present; vae/, text encoder,
scheduler/) plus `interpolation/`: `temporal/` (the adapter), `scheduler/` (its sampler) and `config.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from videoldm import layout
from videoldm.diffusion.masks import (
    INTERPOLATION_FACTOR,
    context_from_mask,
    given_count,
    interpolation_mask,
    linear_blend,
)
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import ConfigError, RunConfig
from videoldm.training.stages.diffusion import DiffusionStage
from videoldm.video_unet import VideoUNet

NUM_CONDITIONS = 2  # the paper's two interpolation stages
# Copied from model.pretrained into the export when present (the spatial UNet is shared, never duplicated).
SHARED_PARTS = (layout.UNET, layout.TEMPORAL, layout.TEMPORAL_DECODER, layout.UPSAMPLER)


def write_interpolation_config(folder: Path, *, num_frames: int, frame_strides: list[int]) -> None:
    """`interpolation/config.json`: the clip length trained on (the pipeline's default window) and, per condition,
    the output frames' spacing in source frames it was trained at."""
    config = {"num_frames": num_frames, "factor": INTERPOLATION_FACTOR, "frame_strides": frame_strides}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


class InterpolationStage(DiffusionStage):
    continued_part = layout.INTERPOLATION

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        cls.require_pretrained(config)
        cls._require_saved_prediction_type(config)
        try:
            given_count(config.data.num_frames)
        except ValueError as err:
            raise ConfigError(f"data.num_frames: {err}") from err
        for key in ("sample_every", "probe_every"):
            if getattr(config.train, key):
                raise ConfigError(f"train.{key}: not supported by stage 'interpolation' (it samples no text-to-video)")
        if config.train.image_fraction:
            raise ConfigError("train.image_fraction: not supported by stage 'interpolation'")
        options = dict(config.model.temporal)
        if options.get("context_in_channels") not in (None, True):
            raise ConfigError("model.temporal.context_in_channels: set by the stage (the latents' channels + 1)")
        cls._refuse_options_when_continuing(config)
        if not cls._continues(config):
            conditions = options.get("num_conditions", NUM_CONDITIONS)
            if not isinstance(conditions, int) or conditions < 1:
                raise ConfigError(f"model.temporal.num_conditions: an integer >= 1, got {conditions!r}")
            span = (config.data.num_frames - 1) * config.data.frame_stride * INTERPOLATION_FACTOR ** (
                conditions - 1
            ) + 1
            if config.data.shards is None and span > config.data.cache_frames:
                stride = config.data.frame_stride * INTERPOLATION_FACTOR ** (conditions - 1)
                raise ConfigError(
                    f"data.cache_frames ({config.data.cache_frames}): clips of the coarsest condition "
                    f"({conditions - 1}) take data.num_frames ({config.data.num_frames}) frames every {stride} "
                    f"source frames: set it >= {span}"
                )

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.vae = self._load_vae()
        unet = UNet2DConditionModel.from_pretrained(self._pretrained(layout.UNET), local_files_only=True)
        if self._continues(config):
            temporal = self._pretrained(layout.INTERPOLATION) / layout.TEMPORAL
            self.video_unet = VideoUNet.from_image_unet(unet, temporal=temporal)
            if self.video_unet.temporal.context_encoder is None:
                raise ValueError(f"{temporal}: these temporal layers have no context encoder")
        else:
            options: dict[str, Any] = {"num_conditions": NUM_CONDITIONS, **config.model.temporal}
            options["context_in_channels"] = True
            self.video_unet = VideoUNet.from_image_unet(unet, **options)
        embedding = self.video_unet.temporal.condition_embedding
        self.num_conditions = 1 if embedding is None else embedding.num_embeddings
        self.module = self._temporal_loss(self.video_unet)

    def trainable(self) -> nn.Module:
        return self.video_unet.temporal

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        raise NotImplementedError("the interpolation stage writes no text-to-video samples")

    def frame_strides(self) -> list[int]:
        """Per condition, the spacing of a clip's frames in source frames: frame_stride * 4**c."""
        return [self.config.data.frame_stride * INTERPOLATION_FACTOR**c for c in range(self.num_conditions)]

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Clips: latents (B, c, T, h, w) (T = 4k + 1), caption embeddings (B, L, D), noise, one diffusion time
        per clip, the context (B, c+1, T, h, w) (all zero for a `context_dropout` share of the clips), the
        condition (B,) and the loss mask (B, T) (the new frames)."""
        assert cache.latents is not None
        t, b = self.config.data.num_frames, self.config.train.batch_size
        condition = torch.randint(self.num_conditions, (b,), generator=g)
        strides = torch.tensor(self.frame_strides())[condition]
        videos, frames = B.pick_clips(cache, batch_size=b, num_frames=t, generator=g, strides=strides)
        latents = B.gather_clips(cache.latents, videos, frames, t).float()
        text = B.text_for(cache, videos, dropout=self.config.train.caption_dropout, generator=g)
        batch = self._diffusion_batch(latents, text, g)
        given = interpolation_mask(given_count(t))
        context = context_from_mask(latents, given)
        batch["context"] = B.zero_share(context, self.config.train.context_dropout, g)
        batch["loss_mask"] = (~given)[None].expand(b, -1).float()
        if self.config.train.blend_start:
            self._start_from_blend(batch, given, g)
        if self.video_unet.temporal.condition_embedding is not None:
            batch["condition"] = condition
        return batch

    def _start_from_blend(self, batch: dict[str, torch.Tensor], given: torch.Tensor, g: torch.Generator) -> None:
        """A `train.blend_start` share of the clips noised from the given frames' linear blend (what the pipeline
        starts from at strength < 1) at a time from `train.blend_start_range`, their target still the truth: the
        noise is replaced by `batches.noise_from`'s. The given frames are the blend's own, so they are unchanged."""
        train, latents = self.config.train, batch["latents"]
        chosen = torch.rand(latents.shape[0], generator=g) < train.blend_start
        times = self._draw_timesteps(latents.shape[0], g, train.blend_start_range)
        batch["timesteps"] = torch.where(chosen, times, batch["timesteps"])
        shifted = B.noise_from(
            linear_blend(latents[:, :, given]),
            latents,
            batch["noise"],
            batch["timesteps"],
            self.module.scheduler.alphas_cumprod,
        )
        batch["noise"] = torch.where(chosen.reshape(-1, 1, 1, 1, 1), shifted, batch["noise"])

    def export(self, directory: Path, cache: VideoCache) -> None:
        pretrained = self.config.model.pretrained
        assert pretrained is not None
        directory.mkdir(parents=True, exist_ok=True)
        for part in SHARED_PARTS:
            if (pretrained / part).is_dir():
                shutil.copytree(pretrained / part, directory / part)
        self._write_conditioning(directory)
        part = directory / layout.INTERPOLATION
        self.video_unet.save_temporal(part / layout.TEMPORAL)
        self.sampling_scheduler().save_pretrained(part / layout.SCHEDULER)
        write_interpolation_config(part, num_frames=self.config.data.num_frames, frame_strides=self.frame_strides())
