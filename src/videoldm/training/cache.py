"""Decode (and encode) a video dataset once, so training steps cost only the model.

On a CPU the frozen VAE and text encoder cost more than a tiny UNet step; the cache holds, per video, the first
`cache_frames` source frames at the full frame rate as uint8 pixels, their VAE latents (fp16) and an index into
the unique caption embeddings. Training clips -- `num_frames` frames every `frame_stride` frames from any start --
are cut from it at batch time (`batches.py`). Each cache file is written atomically and reused when its key
(what its content depends on: the data, the VAE's encoder, the text encoder) matches.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from videoldm.autoencoder.scaling import scale_latents
from videoldm.training.batches import from_unit_range
from videoldm.training.config import DataConfig, RunConfig

logger = logging.getLogger(__name__)


@dataclass
class VideoCache:
    """pixels (N, 3, T, H, W) uint8; latents (N, c, T, h, w) fp16 or None; text (K+1, L, D) fp16 or None with
    row 0 the empty prompt (for caption dropout); text_index (N,) rows of `text`; captions (N). T counts source
    frames; a clip takes every `frame_stride`-th of them (`batches.pick_clips`)."""

    captions: list[str]
    pixels: torch.Tensor
    latents: torch.Tensor | None = None
    text: torch.Tensor | None = None
    text_index: torch.Tensor | None = None
    frame_stride: int = 1

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def frames_per_video(self) -> int:
        return self.pixels.shape[2]

    def caption_embeddings(self, videos: torch.Tensor) -> torch.Tensor:
        """(B,) videos -> their caption embeddings (B, L, D) fp16."""
        assert self.text is not None and self.text_index is not None
        return self.text[self.text_index[videos]]

    def empty_prompt(self) -> torch.Tensor:
        assert self.text is not None
        return self.text[0]


def load_videos(data: DataConfig) -> tuple[list[str], torch.Tensor]:
    """Decode the first `cache_frames` source frames of every readable video -> captions, uint8 (N, 3, T, H, W).

    Full rate, not strided: clips take every `frame_stride`-th frame from any start at batch time. Videos too
    short for the cache are counted in one warning (not one line each); if none is long enough, one error says
    how many frames are needed and why.
    """
    from videoldm.data.video_folder import VideoFolderDataset

    dataset = VideoFolderDataset(
        data.videos,
        captions=data.captions or data.videos / "captions.csv",
        num_frames=data.cache_frames,
        size=data.size,
        random_start=False,
    )
    count = len(dataset) if data.max_videos is None else min(len(dataset), data.max_videos)
    captions, clips, short = [], [], []
    for i in tqdm(range(count), desc="decoding videos", leave=False):
        length = _frame_count(dataset, i)
        if length is not None and length < data.cache_frames:
            short.append(length)
            continue
        sample = dataset.load(i)
        if sample is None:  # unreadable: counted and reported by the dataset, one line per file
            continue
        captions.append(sample["caption"])
        clips.append(from_unit_range(sample["video"]))
    summary = dataset.report()
    if summary:
        logger.warning(summary)
    if short:
        message = f"{len(short)} of {count} videos in {data.videos} are too short: {_frames_needed(data, short)}"
        if not clips:
            raise ValueError(message)
        logger.warning("skipped %s", message)
    if not clips:
        raise ValueError(f"no readable videos in {data.videos}")
    return captions, torch.stack(clips)


def _frame_count(dataset, index: int) -> int | None:
    """The video's frame count, or None when it cannot be probed (then `dataset.load` reports why)."""
    from videoldm.data.common import SkipItem
    from videoldm.io import VideoReadError, probe_video

    try:
        return probe_video(dataset.resolve(index)).num_frames
    except (SkipItem, VideoReadError):
        return None


def _frames_needed(data: DataConfig, lengths: list[int]) -> str:
    return (
        f"the cache needs {data.cache_frames} source frames per video (data.cache_frames; a clip of "
        f"data.num_frames={data.num_frames} frames every data.frame_stride={data.frame_stride} frames spans "
        f"{data.clip_span} of them, from any start), they have {min(lengths)}-{max(lengths)}: lower "
        f"data.cache_frames (>= {data.clip_span}), num_frames or frame_stride, or use longer videos"
    )


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, *, batch_size: int = 64, progress: bool = True) -> torch.Tensor:
    """uint8 (N, 3, T, H, W) -> scaled VAE latents (N, c, T, h, w) fp16, using the posterior mode (deterministic)."""
    n, _, t, _, _ = pixels.shape
    frames = pixels.permute(0, 2, 1, 3, 4).reshape(n * t, *pixels.shape[1:2], *pixels.shape[3:])
    out = []
    for i in tqdm(range(0, len(frames), batch_size), desc="encoding latents", leave=False, disable=not progress):
        x = frames[i : i + batch_size].float() / 127.5 - 1
        out.append(vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mode().float().cpu())
    latents = scale_latents(torch.cat(out), vae.config)
    return latents.reshape(n, t, *latents.shape[1:]).permute(0, 2, 1, 3, 4).half()


@torch.no_grad()
def encode_captions(text_encoder, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique caption embeddings (K+1, L, D) fp16, row 0 = "", and each caption's row (N,)."""
    unique = sorted(set(captions))
    rows = {c: i + 1 for i, c in enumerate(unique)}
    text = torch.cat([text_encoder([""]), text_encoder(unique)]).half().cpu()
    return text, torch.tensor([rows[c] for c in captions])


def cache_key(*parts: object) -> str:
    payload = json.dumps([str(p) for p in parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def data_key(data: DataConfig) -> str:
    """What the decoded pixels depend on -- the captions table's content and the decoding settings, not the
    folder's absolute path, so a cache moves between machines with the dataset. Not `frame_stride`: the cache
    holds full-rate frames (the 1 keeps the keys of caches written before, when stride 1 was the only full
    rate, so they are reused)."""
    captions = data.captions or data.videos / "captions.csv"
    table = hashlib.sha256(captions.read_bytes()).hexdigest()
    return cache_key(table, data.size, data.cache_frames, 1, data.max_videos)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """safetensors, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), meta


def prepare_cache(stage, config: RunConfig, *, is_main: bool, wait: Callable[[], None]) -> VideoCache:
    """Build what the stage needs (pixels; text embeddings; latents) on the main process, reuse what exists.

    Three files under the cache folder, each keyed by what it depends on, so stages share them and a
    pixels + text cache built on one machine can travel to another that lacks the text encoder.
    """
    root = config.data.cache_dir or config.output_dir / "cache"
    dkey = stage.data_key()
    files = {"pixels": root / f"pixels-{dkey}.safetensors"}
    if stage.needs_text:
        text_key = cache_key(dkey, stage.text_encoder_id(), config.model.text_max_length)
        files["text"] = root / f"text-{text_key}.safetensors"
    if stage.needs_latents:
        files["latents"] = root / f"latents-{cache_key(dkey, vae_fingerprint(stage.vae_dir()))}.safetensors"
    if is_main:
        _build_missing(stage, config, files)
    wait()
    pixels, meta = load_tensors(files["pixels"])
    cache = VideoCache(
        captions=json.loads(meta["captions"]), pixels=pixels["pixels"], frame_stride=config.data.frame_stride
    )
    if "text" in files:
        text, _ = load_tensors(files["text"])
        cache.text, cache.text_index = text["text"], text["text_index"]
    if "latents" in files:
        cache.latents = load_tensors(files["latents"])[0]["latents"]
    return cache


def _build_missing(stage, config: RunConfig, files: dict[str, Path]) -> None:
    if not files["pixels"].is_file():
        captions, pixels = stage.load_pixels()
        save_tensors(files["pixels"], {"pixels": pixels}, {"captions": json.dumps(captions)})
    loaded, meta = load_tensors(files["pixels"])
    captions = json.loads(meta["captions"])
    if "text" in files and not files["text"].is_file():
        text, index = encode_captions(stage.get_text_encoder(), captions)
        save_tensors(files["text"], {"text": text, "text_index": index}, {})
    if "latents" in files and not files["latents"].is_file():
        save_tensors(files["latents"], {"latents": encode_latents(stage.vae, loaded["pixels"])}, {})


# The VAE's parts that make the latents: `encode` runs the encoder and quant_conv (the posterior's mode).
_ENCODER_PREFIXES = ("encoder.", "quant_conv.")


def vae_fingerprint(directory: Path) -> str:
    """A hash of what cached latents depend on: the VAE's config (diffusers' defaults filled in, its bookkeeping
    `_` keys dropped) and its encoder + quant_conv weights as float32 values -- not the files' bytes. The stages
    load a VAE in float32, so the shipped fp16 VAE and an export's fp32 copy of it encode alike and share a key;
    a changed decoder (the decoder stage) keeps it too."""
    from diffusers import AutoencoderKL
    from safetensors import safe_open

    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"VAE folder {directory} has no config.json")
    defaults = {
        name: p.default
        for name, p in inspect.signature(AutoencoderKL.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    config = {**defaults, **json.loads(config_file.read_text())}
    digest = hashlib.sha256(
        json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True, default=str).encode()
    )
    tensors = 0
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            names = list(f.keys())  # a safetensors handle is not iterable
            for name in sorted(k for k in names if k.startswith(_ENCODER_PREFIXES)):
                value = f.get_tensor(name).float().contiguous()
                digest.update(f"{name}{tuple(value.shape)}".encode())
                digest.update(value.numpy().tobytes())
                tensors += 1
    if tensors == 0:
        raise ValueError(
            f"VAE folder {directory}: no encoder weights (encoder.* / quant_conv.*) in its *.safetensors files"
        )
    return digest.hexdigest()[:16]
