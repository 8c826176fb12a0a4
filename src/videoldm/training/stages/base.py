"""The protocol every training stage follows, and the helpers the stages share.

A stage owns an `nn.Module` whose forward computes the loss, so DDP (through accelerate) wraps exactly the
computation it must synchronise. Batches are drawn from the cache by `batch(cache, generator)`, outside the
module, as a pure function of the step's generator. The trainer talks to a stage only through the methods
and attributes of `Stage` below: it never looks for attributes a particular stage happens to have.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from videoldm import layout
from videoldm.loading import load_text_encoder, read_builtin_marker
from videoldm.text import TextEncoder
from videoldm.training.cache import VideoCache, data_key, load_videos
from videoldm.training.config import ConfigError, RunConfig

BUILTIN_PREFIX = "builtin:"


class Stage:
    """Base class: a subclass builds `self.module` (forward -> loss), draws batches and exports a model folder.

    The trainer's protocol:
    - `check_config(config)` (classmethod): raise `ConfigError` naming the dotted key when the config lacks
      what the stage needs; run by `load_config` before any work.
    - `trainable()`: the module whose parameters are optimised, checkpointed and exported.
    - `begin_step(step)`: called before each optimiser step's micro-batches (a loss that ramps in by step).
    - `batch(cache, g)`: one micro-batch, the keyword arguments of `module.forward`.
    - `adversary` / `adversary_loss(batch, step)`: a stage trained against an adversary (a GAN discriminator)
      sets `adversary` to it; the trainer then gives it its own optimiser and checkpoint entries and, after
      each generator pass, minimises `adversary_loss` (None: no adversary update this step).
    - `export(directory, cache)`: a complete model folder.
    - `load_pixels()` / `data_key()`: what the cache's pixels are and what they depend on (base: the videos of
      `data.videos`; the dreambooth stage: its pictures and the class images it samples).
    `needs_latents` / `needs_text` say what the cache must hold.
    """

    needs_latents = False
    needs_text = False
    adversary: nn.Module | None = None

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.vae: AutoencoderKL | None = None
        self.text_encoder: TextEncoder | None = None
        self.module: nn.Module

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Raise `ConfigError` (naming the key) when `config` lacks what this stage needs. Base: nothing."""

    def trainable(self) -> nn.Module:
        """The module whose parameters are optimised, checkpointed and exported."""
        return self.module

    def begin_step(self, step: int) -> None:
        """The optimiser step about to run (0-based). Base: nothing depends on it."""

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def adversary_loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor | None:
        """The adversary's loss on this micro-batch, after the generator pass (only when `adversary` is set)."""
        raise NotImplementedError(f"{type(self).__name__} has no adversary")

    def export(self, directory: Path, cache: VideoCache) -> None:
        """Write a complete model folder for this stage's result (the trained part plus what it builds on)."""
        raise NotImplementedError

    def load_pixels(self) -> tuple[list[str], torch.Tensor]:
        """The training data as captions and uint8 pixels (N, 3, T, H, W), decoded once into the cache."""
        return load_videos(self.config.data)

    def data_key(self) -> str:
        """What `load_pixels` depends on (keys the cache files)."""
        return data_key(self.config.data)

    # shared helpers -------------------------------------------------------------------------------
    @staticmethod
    def require_pretrained(config: RunConfig) -> None:
        """For stages that build on the previous stage's model folder."""
        if config.model.pretrained is None:
            raise ConfigError(
                f"model.pretrained: required for stage {config.stage!r} (the previous stage's model folder)"
            )

    def _pretrained(self, sub: str) -> Path:
        assert self.config.model.pretrained is not None
        path = self.config.model.pretrained / sub
        if not path.is_dir():
            raise FileNotFoundError(f"model.pretrained: {self.config.model.pretrained} has no {sub}/ folder")
        return path

    def vae_dir(self) -> Path:
        return self._pretrained(layout.VAE)

    def text_encoder_id(self) -> str:
        """Which text encoder this stage uses (keys the text-embedding cache)."""
        pretrained = self.config.model.pretrained
        if pretrained is not None and (pretrained / layout.TEXT_ENCODER).is_dir():
            marker = read_builtin_marker(pretrained / layout.TEXT_ENCODER)
            return BUILTIN_PREFIX + marker["builtin"] if marker else str(pretrained / layout.TEXT_ENCODER)
        return self.config.model.text_encoder

    def get_text_encoder(self) -> TextEncoder:
        """Loaded on first use: a cached run needs no text encoder (its embeddings are in the cache)."""
        if self.text_encoder is None:
            self.text_encoder = self._load_text_encoder()
        return self.text_encoder

    def _load_vae(self) -> AutoencoderKL:
        vae = AutoencoderKL.from_pretrained(self._pretrained(layout.VAE), local_files_only=True)
        return vae.eval().requires_grad_(False)

    def _load_text_encoder(self) -> TextEncoder:
        pretrained = self.config.model.pretrained
        if pretrained is not None and (pretrained / layout.TEXT_ENCODER).is_dir():
            return load_text_encoder(pretrained / layout.TEXT_ENCODER, pretrained / layout.TOKENIZER)
        spec = self.config.model.text_encoder
        if spec.startswith(BUILTIN_PREFIX):
            return TextEncoder.builtin(spec.removeprefix(BUILTIN_PREFIX), max_length=self.config.model.text_max_length)
        return TextEncoder.from_pretrained(spec, max_length=self.config.model.text_max_length)
