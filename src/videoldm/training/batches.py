"""Training batches as a pure function of (seed, step, micro-step, rank).

Every random choice of a step -- which videos, which start frame, flips, caption dropout, noise, diffusion
time -- comes from one generator seeded by those four numbers. So the data position of a run is its step
number: a run resumed from a checkpoint draws exactly the batches the uninterrupted run would have drawn,
and DDP ranks draw different batches without a distributed sampler.
"""

from __future__ import annotations

import hashlib

import torch

from videoldm.training.cache import VideoCache


def step_generator(seed: int, step: int, micro: int = 0, rank: int = 0) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{step}/{micro}/{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def pick_clips(
    cache: VideoCache, *, batch_size: int, num_frames: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random videos and clips: (video index (B,), source frames (B, num_frames)).

    A clip is `num_frames` frames every `cache.frame_stride` cached (full-rate) frames from a random start, so
    key-frame clips start at any frame, not only at multiples of the stride. The draws are the same as for
    consecutive frames (one video, then one start per clip), so stride-1 batches are what they always were.
    """
    span = (num_frames - 1) * cache.frame_stride + 1
    total = cache.pixels.shape[2]
    if span > total:
        raise ValueError(
            f"a clip of {num_frames} frames every {cache.frame_stride} source frames spans {span} frames, but the "
            f"cache holds {total} per video (data.cache_frames)"
        )
    videos = torch.randint(len(cache), (batch_size,), generator=generator)
    starts = torch.randint(total - span + 1, (batch_size,), generator=generator)
    return videos, starts[:, None] + cache.frame_stride * torch.arange(num_frames)[None]


def gather_clips(source: torch.Tensor, videos: torch.Tensor, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """source (N, C, T_all, H, W) -> clips (B, C, num_frames, H, W).

    `frames`: each clip's source frames (B, num_frames), as `pick_clips` returns them, or start frames (B,) of
    consecutive frames.
    """
    if frames.ndim == 1:
        frames = frames[:, None] + torch.arange(num_frames)[None]
    if frames.shape != (len(videos), num_frames):
        raise ValueError(
            f"frames must be (B,) starts or (B, num_frames) = ({len(videos)}, {num_frames}) indices, "
            f"got {tuple(frames.shape)}"
        )
    clips = source[videos[:, None], :, frames]  # (B, T, C, H, W): advanced indices come first
    return clips.permute(0, 2, 1, 3, 4)


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return pixels.float() / 127.5 - 1


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Horizontally flip a random half of the batch (B, ..., W)."""
    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(mask.reshape(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


def text_for(cache: VideoCache, videos: torch.Tensor, *, dropout: float, generator: torch.Generator) -> torch.Tensor:
    """Caption embeddings (B, L, D) of the chosen videos; a `dropout` share replaced by the empty prompt."""
    assert cache.text is not None and cache.text_index is not None
    rows = cache.text_index[videos]
    dropped = torch.rand(len(rows), generator=generator) < dropout
    return cache.text[torch.where(dropped, torch.zeros_like(rows), rows)].float()
