"""The prediction stage (PAPER.md section 4): the key-frame model's temporal layers, given a context encoder and
trained to continue a clip from its first S frames, S drawn per clip from {0, 1, ..., len(probs) - 1}.

One model, as in the paper: S = 0 is an all-zero context, which the bias-free `ContextEncoder` maps to all-zero
features, so the same layers stay the text-to-video key-frame model (the `temporal/` every pipeline loads) and
S = 0 is also the unconditional branch of context guidance. S = 1 starts a clip from one frame, S = 2 continues
one from the last two frames of the previous clip (the rollout, `pipelines/rollout.py`). The loss counts the new
frames only: the sampler holds the given frames at each step's noise level and pastes them back, as the
interpolation pipeline does. `train.context_free_in_view` keeps the S = 0 clips to those whose object stays inside
the frame (on the wrapping world, the key-frame model otherwise learns to draw pieces at the edges).
`train.context_only` trains only the parameters that act on the context (`is_context_parameter`): S = 0 outputs,
the key frames, stay bit-identical to the pretrained layers' -- the prediction learned beside them, not over them.

Model: `model.pretrained`'s `temporal/` continued. When those layers have no context encoder yet (a key-frame
model), a zero-initialised one is added (`with_context_encoder`): at step 0 the model is exactly the key-frame
model. `model.fresh_temporal: true` builds new layers with `model.temporal`'s options instead. The export is a
complete Video LDM folder (the pretrained folder's other parts copied) with `prediction.json`: the clip length,
frame stride and number of context frames the rollout uses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file
from torch import nn

from videoldm import layout
from videoldm.diffusion.masks import context_from_mask
from videoldm.temporal.adapter import TemporalAdapter
from videoldm.temporal.context import is_context_parameter
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import ConfigError, RunConfig
from videoldm.training.stages.diffusion import DiffusionStage
from videoldm.video_unet import VideoUNet

DEFAULT_CONTEXT_PROBS = (0.2, 0.2, 0.6)  # P(S = 0), P(S = 1), P(S = 2)
ROLLOUT_CONTEXT = 2  # the rollout continues each clip from the previous clip's last 2 frames (PAPER.md section 4)
# Copied from model.pretrained into the export when present (the stage writes unet/ and temporal/ itself).
SHARED_PARTS = (layout.TEMPORAL_DECODER, layout.INTERPOLATION, layout.UPSAMPLER)
# `in_view_frames`: a border pixel whose channels differ by this much (uint8) is part of a coloured object. The
# shapes world's backgrounds are grey (channels equal up to a few levels of mp4 chroma noise); its objects are
# saturated colours (differences of ~200).
OBJECT_SATURATION = 64
MAX_REDRAWS = 200  # rounds of redrawing the S = 0 clips that leave the frame (`context_free_in_view`)


def in_view_frames(pixels: torch.Tensor, *, saturation: int = OBJECT_SATURATION) -> torch.Tensor:
    """pixels (N, 3, T, H, W) uint8 -> (N, T) bool: no coloured pixel on the frame's outermost rows and columns,
    i.e. the object lies inside the frame (it does not touch or cross an edge of the wrapping world)."""
    border = torch.cat([pixels[..., 0, :], pixels[..., -1, :], pixels[..., 1:-1, 0], pixels[..., 1:-1, -1]], -1)
    spread = border.amax(1).int() - border.amin(1).int()  # (N, T, border pixels)
    return (spread < saturation).all(-1)


def write_prediction_config(folder: Path, *, num_frames: int, frame_stride: int, context_frames: int) -> None:
    """`prediction.json`: the clip the rollout predicts (frames, their spacing in source frames) and how many of
    the previous clip's last frames it is given."""
    config = {"num_frames": num_frames, "frame_stride": frame_stride, "context_frames": context_frames}
    (folder / layout.PREDICTION).write_text(json.dumps(config, indent=2) + "\n")


def with_context_encoder(unet: UNet2DConditionModel, temporal: Path) -> VideoUNet:
    """`unet` with the temporal layers saved in `temporal` plus a new, zero-initialised context encoder: the
    context projections are zero, so the model's output is the saved model's for any context."""
    options = TemporalAdapter.options_from_dir(temporal)
    options.pop("layer_specs")
    options["context_in_channels"] = True
    video_unet = VideoUNet.from_image_unet(unet, **options)
    state = load_file(str(temporal / layout.WEIGHTS_NAME))
    missing, unexpected = video_unet.temporal.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{temporal}: unexpected temporal parameters {sorted(unexpected)[:5]}")
    not_context = [k for k in missing if not is_context_parameter(k)]
    if not_context:
        raise ValueError(f"{temporal}: missing temporal parameters {not_context[:5]}")
    return video_unet


class PredictionStage(DiffusionStage):
    continued_part = layout.TEMPORAL

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        cls.require_pretrained(config)
        cls._require_saved_prediction_type(config)
        cls._refuse_options_when_continuing(config)
        probs = cls.context_probs(config)
        if len(probs) < 1 or any(p < 0 for p in probs) or abs(sum(probs) - 1) > 1e-6:
            raise ConfigError(f"train.context_frame_probs: shares of S = 0, 1, ... that sum to 1, got {probs}")
        if len(probs) - 1 >= config.data.num_frames:
            raise ConfigError(
                f"train.context_frame_probs: up to {len(probs) - 1} context frames leave no new frame in clips of "
                f"data.num_frames = {config.data.num_frames}"
            )
        if config.train.image_fraction:
            raise ConfigError("train.image_fraction: not supported by stage 'prediction'")
        if config.train.context_free_in_view and config.data.shards is not None:
            raise ConfigError("train.context_free_in_view: needs the pixel cache of data.videos, not data.shards")

    @staticmethod
    def context_probs(config: RunConfig) -> list[float]:
        probs = config.train.context_frame_probs
        return list(DEFAULT_CONTEXT_PROBS if probs is None else probs)

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.vae = self._load_vae()
        unet = UNet2DConditionModel.from_pretrained(self._pretrained(layout.UNET), local_files_only=True)
        options: dict[str, Any] = dict(config.model.temporal)
        if not self._continues(config):
            self.video_unet = VideoUNet.from_image_unet(unet, **{**options, "context_in_channels": True})
        else:
            self.video_unet = VideoUNet.from_image_unet(unet, temporal=self._pretrained(layout.TEMPORAL))
            if self.video_unet.temporal.context_encoder is None:
                self.video_unet = with_context_encoder(unet, self._pretrained(layout.TEMPORAL))
        self.probs = torch.tensor(self.context_probs(config), dtype=torch.float64)
        self.module = self._temporal_loss(self.video_unet)
        if config.train.context_only:
            for name, param in self.video_unet.temporal.named_parameters():
                param.requires_grad_(is_context_parameter(name))
        self._in_view: torch.Tensor | None = None  # (N, T) from the cache's pixels, on the first batch

    def trainable(self) -> nn.Module:
        return self.video_unet.temporal

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        return self.video_unet, False  # S = 0: the text-to-video samples and the direction probe

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Clips: latents (B, c, T, h, w), caption embeddings (B, L, D), noise, one diffusion time per clip, the
        context (B, c+1, T, h, w) of each clip's first S frames (S per clip; S = 0: all zero) and the loss mask
        (B, T) (the frames not given)."""
        assert cache.latents is not None
        t, b = self.config.data.num_frames, self.config.train.batch_size
        videos, starts = B.pick_clips(cache, batch_size=b, num_frames=t, generator=g)
        given_count = torch.multinomial(self.probs, b, replacement=True, generator=g)
        if self.config.train.context_free_in_view:
            videos, starts = self._keep_in_view(cache, videos, starts, given_count == 0, g)
        latents = B.gather_clips(cache.latents, videos, starts, t).float()
        text = B.text_for(cache, videos, dropout=self.config.train.caption_dropout, generator=g)
        batch = self._diffusion_batch(latents, text, g)
        given = torch.arange(t)[None] < given_count[:, None]
        batch["context"] = context_from_mask(latents, given)
        batch["loss_mask"] = (~given).float()
        return batch

    def _keep_in_view(
        self, cache: VideoCache, videos: torch.Tensor, frames: torch.Tensor, free: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Redraw the clips marked `free` (B,) (S = 0) whose object touches an edge in any frame, until each is a
        clip whose object stays in view (`train.context_free_in_view`); the others are kept."""
        if self._in_view is None:
            self._in_view = in_view_frames(cache.pixels)
            if not self._in_view.any():
                raise ValueError(
                    "train.context_free_in_view: no cached frame has its object inside the frame (the check looks "
                    "for coloured pixels on the border, expecting grey backgrounds)"
                )
        videos, frames = videos.clone(), frames.clone()
        ok = ~free | self._in_view[videos[:, None], frames].all(1)
        for _ in range(MAX_REDRAWS):
            if ok.all():
                return videos, frames
            more_videos, more_frames = B.pick_clips(
                cache, batch_size=len(videos), num_frames=frames.shape[1], generator=g
            )
            take = ~ok & self._in_view[more_videos[:, None], more_frames].all(1)
            videos[take], frames[take] = more_videos[take], more_frames[take]
            ok |= take
        raise ValueError(
            f"train.context_free_in_view: no clip of {frames.shape[1]} frames with its object in view found in "
            f"{MAX_REDRAWS} draws; the data's objects leave the frame too often (slower objects or shorter clips)"
        )

    def export(self, directory: Path, cache: VideoCache) -> None:
        pretrained = self.config.model.pretrained
        assert pretrained is not None
        self._save_video_unet(self.video_unet, directory)
        for part in SHARED_PARTS:
            if (pretrained / part).is_dir():
                shutil.copytree(pretrained / part, directory / part)
        self._write_conditioning(directory)
        write_prediction_config(
            directory,
            num_frames=self.config.data.num_frames,
            frame_stride=self.config.data.frame_stride,
            context_frames=min(ROLLOUT_CONTEXT, len(self.probs) - 1),
        )
