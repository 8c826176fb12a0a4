"""The training stages: what is trained, on which batches, with which loss, and what is exported.

`STAGES` is the one registry of stage names: config validation (`load_config`), the trainer (`build_stage`)
and `videoldm train`'s help all read it. Adding a stage is one module holding a `Stage` subclass (see
`base.Stage` for the protocol; `diffusion.DiffusionStage` for a denoiser's) and one line below.
"""

from __future__ import annotations

from pathlib import Path

from videoldm.training.config import ConfigError, RunConfig, read_config
from videoldm.training.stages.autoencoder import AutoencoderStage
from videoldm.training.stages.base import Stage
from videoldm.training.stages.decoder import DecoderStage
from videoldm.training.stages.diffusion import DiffusionLoss, DiffusionStage, noise_scheduler_config
from videoldm.training.stages.dreambooth import DreamBoothStage
from videoldm.training.stages.image import ImageStage
from videoldm.training.stages.interpolation import InterpolationStage
from videoldm.training.stages.prediction import PredictionStage
from videoldm.training.stages.temporal import TemporalStage
from videoldm.training.stages.upsampler import UpsamplerStage

STAGES: dict[str, type[Stage]] = {
    "autoencoder": AutoencoderStage,
    "image": ImageStage,
    "temporal": TemporalStage,
    "decoder": DecoderStage,
    "upsampler": UpsamplerStage,
    "interpolation": InterpolationStage,
    "dreambooth": DreamBoothStage,
    "prediction": PredictionStage,
}


def stage_class(config: RunConfig) -> type[Stage]:
    """The class of `config.stage`; a ConfigError naming `stage` and the known names when there is none."""
    if config.stage not in STAGES:
        raise ConfigError(f"stage: expected one of {list(STAGES)}, got {config.stage!r}")
    cls = STAGES[config.stage]
    # Keys only some stages read: elsewhere they would be silently ignored.
    if config.train.probe_every and not issubclass(cls, DiffusionStage):
        raise ConfigError(f"train.probe_every: the direction probe samples videos; stage {config.stage!r} does not")
    if config.data.images is not None and cls is not DreamBoothStage:
        raise ConfigError(
            f"data.images: pictures of one concept, used by stage 'dreambooth'; stage {config.stage!r} trains on "
            "videos: give it data.videos"
        )
    if config.data.shards is not None and not issubclass(cls, DiffusionStage):
        raise ConfigError(
            f"data.shards: shards hold latents and caption embeddings; stage {config.stage!r} trains on pixels: "
            "give it data.videos"
        )
    if config.model.fresh_temporal and not issubclass(cls, TemporalStage | InterpolationStage | PredictionStage):
        raise ConfigError(
            f"model.fresh_temporal: only used by stages 'temporal', 'interpolation' and 'prediction', got stage "
            f"{config.stage!r}"
        )
    if config.train.context_dropout and not issubclass(cls, InterpolationStage | UpsamplerStage):
        raise ConfigError(
            f"train.context_dropout: only used by stages 'interpolation' and 'upsampler', got stage {config.stage!r}"
        )
    for key in ("blend_start", "blend_start_range"):
        if getattr(config.train, key) and cls is not InterpolationStage:
            raise ConfigError(f"train.{key}: only used by stage 'interpolation', got stage {config.stage!r}")
    for key in ("context_dropout", "blend_start"):  # one check for every stage that reads a share
        if not 0 <= getattr(config.train, key) <= 1:
            raise ConfigError(f"train.{key}: a share in [0, 1], got {getattr(config.train, key)}")
    if config.data.patch_size is not None and cls is not UpsamplerStage:
        # not the decoder stage: its VAE decoder's mid-block attention sees the whole frame, and a decoded crop of
        # the latents differs from that crop of the decoded frame (22 dB apart; docs/decoder.md "Why not crops")
        raise ConfigError(f"data.patch_size: only used by stage 'upsampler', got stage {config.stage!r}")
    if config.model.lora_rank is not None and cls is not DreamBoothStage:
        raise ConfigError(f"model.lora_rank: only used by stage 'dreambooth', got stage {config.stage!r}")
    for key in ("context_frame_probs", "context_free_in_view", "context_only"):
        if getattr(config.train, key) not in (None, False) and cls is not PredictionStage:
            raise ConfigError(f"train.{key}: only used by stage 'prediction', got stage {config.stage!r}")
    return cls


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML config and validate it, including what its stage needs, before any work is done."""
    config = read_config(path)
    stage_class(config).check_config(config)
    return config


def build_stage(config: RunConfig) -> Stage:
    """The stage of a validated config (its models built or loaded)."""
    cls = stage_class(config)
    cls.check_config(config)  # cheap; holds for configs built in code, not read by load_config
    return cls(config)


__all__ = [
    "STAGES",
    "DiffusionLoss",
    "DiffusionStage",
    "Stage",
    "build_stage",
    "load_config",
    "noise_scheduler_config",
    "stage_class",
]
