"""Training on latent shards (`data.shards`): the clip source the diffusion stages draw batches from.

`LatentShards` answers what the in-memory `cache.VideoCache` answers -- how many videos, how many stored frames
each, clips of latents, caption embeddings -- so `batches.pick_clips` (one sampler for both) draws the same
kind of batch as a pure function of (seed, step, micro-step, rank), and a run killed and resumed reads the same
clips as an uninterrupted one. Only the chosen videos are read from disk: memory does not grow with the
collection (`data/shards.py` keeps one integer per shard and a few parsed shard indexes).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import torch

from videoldm import layout
from videoldm.data.shards import DATASET_FILE, ShardError, ShardSet
from videoldm.training.cache import vae_fingerprint
from videoldm.training.config import ConfigError, RunConfig

# Clips kept decoded: a batch reads each chosen clip once for its latents and once for its caption.
_CLIP_CACHE = 64
# Samples and the direction probe need captions with embeddings: taken from the first clips, not all of them.
_PROMPT_CLIPS = 256


class _ShardLatents:
    """`gather(videos, frames)` for `batches.gather_clips`: (B,), (B, T) -> latents (B, c, T, h, w) fp16."""

    def __init__(self, source: LatentShards) -> None:
        self.source = source

    def gather(self, videos: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        clips = [self.source.clip(int(v))["latents"][:, f] for v, f in zip(videos, frames, strict=True)]
        return torch.stack(clips)


class LatentShards:
    """A shard folder as a clip source (see `batches.ClipSource`); `frame_stride` as the config asks."""

    pixels = None  # shards hold latents: stages that train on pixels use data.videos

    def __init__(self, shards: ShardSet, *, frame_stride: int) -> None:
        self.shards = shards
        self.frame_stride = frame_stride
        self.latents = _ShardLatents(self)
        self._clips: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        self._empty = shards.empty_text()
        self._prompts: tuple[list[str], torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.shards)

    @property
    def frames_per_video(self) -> int:
        return int(self.shards.dataset["settings"]["frames"])

    def clip(self, video: int) -> dict[str, torch.Tensor]:
        """{"latents": (c, T, h, w), "text": (L, D)} of one video, read on first use."""
        if video in self._clips:
            self._clips.move_to_end(video)
        else:
            self._clips[video] = self.shards.read(video)
            if len(self._clips) > _CLIP_CACHE:
                self._clips.popitem(last=False)
        return self._clips[video]

    def caption_embeddings(self, videos: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.clip(int(v))["text"] for v in videos])

    def empty_prompt(self) -> torch.Tensor:
        return self._empty

    # What samples / the direction probe read of a cache (training/samples.py), from the first clips only.
    def _prompt_table(self) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        if self._prompts is None:
            count = min(len(self), _PROMPT_CLIPS)
            captions = [self.shards.locate(i)[1]["caption"] for i in range(count)]
            first: dict[str, int] = {}  # each caption's first clip
            for i, caption in enumerate(captions):
                first.setdefault(caption, i)
            rows = {c: r + 1 for r, c in enumerate(first)}
            text = torch.stack([self._empty, *(self.shards.read(i)["text"] for i in first.values())])
            self._prompts = captions, text, torch.tensor([rows[c] for c in captions])
        return self._prompts

    @property
    def captions(self) -> list[str]:
        return self._prompt_table()[0]

    @property
    def text(self) -> torch.Tensor:
        return self._prompt_table()[1]

    @property
    def text_index(self) -> torch.Tensor:
        return self._prompt_table()[2]


def open_shards(stage: Any, config: RunConfig) -> LatentShards:
    """`data.shards` checked against the run before any step: complete, untruncated shards (`ShardSet.open`),
    written with this model's VAE (latent channels, latent size for `data.size`, encoder weights) and long
    enough for the clips the config asks for. Every error names the file and what was expected."""
    data = config.data
    assert data.shards is not None
    try:
        shards = ShardSet.open(data.shards)
    except ShardError as err:
        raise ConfigError(f"data.shards: {err}") from err
    meta_file = data.shards / DATASET_FILE
    meta = shards.dataset
    vae = stage.vae.config
    factor = 2 ** (len(vae.block_out_channels) - 1)
    expected = [int(vae.latent_channels), data.size // factor, data.size // factor]
    if list(meta["latent_shape"]) != expected:
        raise ConfigError(
            f"data.shards: {meta_file} holds latents (c, h, w) = {tuple(meta['latent_shape'])} (frames of "
            f"{meta['settings']['size']} px), this run expects {tuple(expected)}: {config.model.pretrained}'s VAE "
            f"({vae.latent_channels} channels, factor {factor}) at data.size {data.size}; encode the videos with "
            f"this model at --size {data.size}, or set data.size to the shards' size"
        )
    fingerprint = vae_fingerprint(stage.vae_dir())
    if meta["vae_fingerprint"] != fingerprint:
        raise ConfigError(
            f"data.shards: {meta_file} was encoded by another VAE (fingerprint {meta['vae_fingerprint']}, "
            f"{meta.get('model')}) than {stage.vae_dir()} ({fingerprint}): its latents mean nothing to this model; "
            "encode the videos with this model folder"
        )
    unet = config.model.unet or json.loads((config.model.pretrained / layout.UNET / "config.json").read_text())
    text_dim = meta["text_shape"][1]
    if unet.get("cross_attention_dim") != text_dim:
        raise ConfigError(
            f"data.shards: {meta_file} holds caption embeddings of width {text_dim} ({meta.get('model')}'s text "
            f"encoder), this run's UNet attends to width {unet.get('cross_attention_dim')}: encode the captions "
            "with this model's text encoder"
        )
    span = data.clip_span
    frames = int(meta["settings"]["frames"])
    if span > frames:
        raise ConfigError(
            f"data.num_frames ({data.num_frames}) frames every data.frame_stride ({data.frame_stride}) span {span} "
            f"stored frames, but the clips in {data.shards} have {frames} (--num-frames of the encode)"
        )
    source = LatentShards(shards, frame_stride=data.frame_stride)
    first = source.clip(0)["latents"]
    if tuple(first.shape) != (expected[0], frames, expected[1], expected[2]):
        raise ConfigError(
            f"data.shards: {shards.directory / shards.names[0]}.tar holds latents {tuple(first.shape)}, its "
            f"{DATASET_FILE} promises {(expected[0], frames, expected[1], expected[2])}"
        )
    return source
