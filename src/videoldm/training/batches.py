"""Training batches as a pure function of (seed, step, micro-step, rank).

Every random choice of a step -- which videos, which start frame, flips, caption dropout, noise, diffusion
time -- comes from one generator seeded by those four numbers. So the data position of a run is its step
number: a run resumed from a checkpoint draws exactly the batches the uninterrupted run would have drawn,
and DDP ranks draw different batches without a distributed sampler.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import torch


class ClipSource(Protocol):
    """What batches are drawn from: the in-memory `cache.VideoCache` or the streamed `shards.LatentShards`.

    `frames_per_video` full-rate (stored) frames per video; clips take every `frame_stride`-th. `latents` (and
    `pixels` for the cache) are (N, C, T_all, H, W) tensors or objects with `gather(videos, frames)` that read
    only the chosen videos.
    """

    frame_stride: int

    def __len__(self) -> int: ...

    @property
    def frames_per_video(self) -> int: ...

    def caption_embeddings(self, videos: torch.Tensor) -> torch.Tensor:
        """(B,) video numbers -> their caption embeddings (B, L, D)."""
        ...

    def empty_prompt(self) -> torch.Tensor:
        """The embedding of "" (L, D): caption dropout's replacement."""
        ...


class LazyClips(Protocol):
    """A clip source's tensor that is read on demand (latent shards): only the chosen videos are read."""

    def gather(self, videos: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B,) videos, (B, T) stored frames -> clips (B, C, T, H, W)."""
        ...


def step_generator(seed: int, step: int, micro: int = 0, rank: int = 0) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{step}/{micro}/{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def pick_clips(
    cache: ClipSource,
    *,
    batch_size: int,
    num_frames: int,
    generator: torch.Generator,
    strides: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random videos and clips: (video index (B,), source frames (B, num_frames)).

    A clip is `num_frames` frames every `cache.frame_stride` cached (full-rate) frames from a random start, so
    key-frame clips start at any frame, not only at multiples of the stride. The draws are the same as for
    consecutive frames (one video, then one start per clip), so stride-1 batches are what they always were.
    `strides` (B,): each clip's own spacing in source frames instead (the interpolation stage's two frame rates);
    each clip then starts anywhere its span fits.
    """
    stride = cache.frame_stride if strides is None else int(strides.max())
    span = (num_frames - 1) * stride + 1
    total = cache.frames_per_video
    if span > total:
        raise ValueError(
            f"a clip of {num_frames} frames every {stride} source frames spans {span} frames, but the "
            f"cache holds {total} per video (data.cache_frames, or the shards' frames)"
        )
    videos = torch.randint(len(cache), (batch_size,), generator=generator)
    if strides is None:
        starts = torch.randint(total - span + 1, (batch_size,), generator=generator)
        return videos, starts[:, None] + cache.frame_stride * torch.arange(num_frames)[None]
    if tuple(strides.shape) != (batch_size,) or strides.min() < 1:
        raise ValueError(f"strides must be (B,) = ({batch_size},) positive integers, got {strides.tolist()}")
    spans = (num_frames - 1) * strides + 1
    starts = (torch.rand(batch_size, generator=generator) * (total - spans + 1)).long()
    return videos, starts[:, None] + strides[:, None] * torch.arange(num_frames)[None]


def gather_clips(
    source: torch.Tensor | LazyClips, videos: torch.Tensor, frames: torch.Tensor, num_frames: int
) -> torch.Tensor:
    """source (N, C, T_all, H, W) -> clips (B, C, num_frames, H, W).

    `frames`: each clip's source frames (B, num_frames), as `pick_clips` returns them, or start frames (B,) of
    consecutive frames. `source` may be a lazy reader (`gather(videos, frames)`, e.g. latent shards): then only
    the chosen videos are read.
    """
    if frames.ndim == 1:
        frames = frames[:, None] + torch.arange(num_frames)[None]
    if frames.shape != (len(videos), num_frames):
        raise ValueError(
            f"frames must be (B,) starts or (B, num_frames) = ({len(videos)}, {num_frames}) indices, "
            f"got {tuple(frames.shape)}"
        )
    if not isinstance(source, torch.Tensor):
        return source.gather(videos, frames)
    clips = source[videos[:, None], :, frames]  # (B, T, C, H, W): advanced indices come first
    return clips.permute(0, 2, 1, 3, 4)


def random_corners(batch_size: int, size: int, patch: int, *, grid: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 2) top-left (y, x) corners of random `patch` x `patch` crops of `size` x `size` frames, on a lattice of
    `grid` pixels (so the crop of a frame and of its latents or low-resolution version line up)."""
    return torch.randint((size - patch) // grid + 1, (batch_size, 2), generator=generator) * grid


def crop(x: torch.Tensor, corners: torch.Tensor, patch: int) -> torch.Tensor:
    """x (B, ..., H, W) -> (B, ..., patch, patch): each item cut at its (y, x) corner of `corners` (B, 2)."""
    return torch.stack([c[..., y : y + patch, x : x + patch] for c, (y, x) in zip(x, corners.tolist(), strict=True)])


def zero_share(x: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """x (B, ...) with a random `share` of its items set to zero: the "without it" branch that guidance over a
    conditioning input (interpolation context, upsampler input) is trained on. Draws B numbers whatever the share."""
    dropped = torch.rand(x.shape[0], generator=generator) < share
    return torch.where(dropped.reshape(-1, *([1] * (x.ndim - 1))), torch.zeros_like(x), x)


def noise_from(
    start: torch.Tensor,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
) -> torch.Tensor:
    """The noise n' for which the scheduler's add_noise(latents, n', t) equals add_noise(start, noise, t): a clip
    noised from `start` (the given frames' blend) whose denoising target stays `latents` -- for an eps model,
    n' = noise + sqrt(a / (1 - a)) (start - latents), a = alpha_bar(t). start, latents, noise (B, ...); t (B,)."""
    a = alphas_cumprod.to(latents.device)[timesteps].float().reshape(-1, *([1] * (latents.ndim - 1)))
    return noise + (a / (1 - a)).sqrt() * (start - latents)


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return pixels.float() / 127.5 - 1


def from_unit_range(video: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded: how decoded frames are cached and sharded."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Horizontally flip a random half of the batch (B, ..., W)."""
    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(mask.reshape(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


def text_for(cache: ClipSource, videos: torch.Tensor, *, dropout: float, generator: torch.Generator) -> torch.Tensor:
    """Caption embeddings (B, L, D) of the chosen videos; a `dropout` share replaced by the empty prompt."""
    text = cache.caption_embeddings(videos)
    dropped = torch.rand(len(videos), generator=generator) < dropout
    return torch.where(dropped[:, None, None], cache.empty_prompt().to(text.dtype), text).float()
