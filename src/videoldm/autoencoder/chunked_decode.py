"""Decode long videos in overlapping chunks of frames, blended across the overlap (no seam, bounded memory).

Each clip of the batch is cut on its own along T -- two clips never share a chunk -- into chunks of
`chunk_size` frames that start every `chunk_size - overlap` frames (the last chunk is aligned to the clip's
end, so every chunk has the same length). Each chunk's frames get a weight: 1 inside, a linear ramp
1/(overlap+1), ..., overlap/(overlap+1) over the `overlap` frames it shares with its neighbour (none at the
clip's ends). A frame's output is the weighted mean of the chunks that hold it, so consecutive chunks
cross-fade instead of cutting, and memory depends on `chunk_size`, not on the clip length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# The pipelines' default `decode_chunk_size`. Decoding a long clip in chunks is faster, not only leaner: the
# activations of a whole 113-frame clip outgrow the CPU's caches, so every convolution streams them from memory.
# Measured on a 2-core CPU, the stack's 113 frames through the temporal decoder: all at once 6.6 s, chunks of 64
# 8.7 s, of 32 3.0 s, of 16 2.9 s (benchmarks/results/generate_stack.md). 32 keeps the overlap's extra work small.
DEFAULT_DECODE_CHUNK = 32


@dataclass(frozen=True)
class Chunk:
    """Frames [start, stop) of a clip and their blend weights (stop - start,)."""

    start: int
    stop: int
    weights: torch.Tensor


def default_overlap(chunk_size: int) -> int:
    """A quarter of the chunk: decoding costs 4/3 of a single pass."""
    return chunk_size // 4


def plan_chunks(num_frames: int, *, chunk_size: int, overlap: int) -> list[Chunk]:
    """The chunks covering frames 0..num_frames-1, with their blend weights (see the module docstring)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise ValueError(f"overlap must be in [0, chunk_size={chunk_size}), got {overlap}")
    if num_frames <= chunk_size:
        return [Chunk(0, num_frames, torch.ones(num_frames))]
    stride = chunk_size - overlap
    starts = list(range(0, num_frames - chunk_size + 1, stride))
    if starts[-1] + chunk_size < num_frames:
        starts.append(num_frames - chunk_size)
    ramp_up = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    chunks = []
    for i, start in enumerate(starts):
        weights = torch.ones(chunk_size)
        if i > 0 and overlap:
            weights[:overlap] = torch.minimum(weights[:overlap], ramp_up)
        if i < len(starts) - 1 and overlap:
            weights[-overlap:] = torch.minimum(weights[-overlap:], ramp_up.flip(0))
        chunks.append(Chunk(start, start + chunk_size, weights))
    return chunks


def decode_in_chunks(
    decode: Callable[[torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    *,
    chunk_size: int,
    overlap: int,
) -> torch.Tensor:
    """Run `decode` ((1, C, t, h, w) -> (1, C_out, t, H, W)) over overlapping chunks of each clip.

    latents: (B, C, T, h, w). Returns (B, C_out, T, H, W), each frame the weighted mean of its chunks.
    """
    b, _, t, _, _ = latents.shape
    plan = plan_chunks(t, chunk_size=chunk_size, overlap=overlap)
    out: torch.Tensor | None = None
    total = torch.zeros(t)
    for chunk in plan:
        total[chunk.start : chunk.stop] += chunk.weights
    for i in range(b):
        for chunk in plan:
            frames = decode(latents[i : i + 1, :, chunk.start : chunk.stop])
            if out is None:
                out = frames.new_zeros((b, frames.shape[1], t, *frames.shape[-2:]))
            weights = chunk.weights.to(frames.device, frames.dtype).reshape(1, 1, -1, 1, 1)
            out[i : i + 1, :, chunk.start : chunk.stop] += weights * frames
    assert out is not None
    return out / total.to(out.device, out.dtype).reshape(1, 1, -1, 1, 1)


class StreamingDecoder:
    """Decode latents that arrive piece by piece (a long rollout) in bounded memory, without a seam.

    An output frame of a decoder whose temporal layers reach `radius` frames to either side (a temporal decoder with
    per-frame norms: `TemporalDecoderAdapter.temporal_radius()`; 0 for the image decoder) depends only on the
    latents within `radius` of it. So each call decodes the frames whose right-hand neighbours have all arrived,
    with `radius` latents of context on both sides, and keeps only those frames: every frame is what one decode of
    the whole clip gives it (up to float rounding). Memory: at most `chunk_size` + 2 * radius latents at once.

    `decode`: (B, C, t, h, w) -> (B, C_out, t, H, W).
    """

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], *, radius: int, chunk_size: int = 64) -> None:
        if radius < 0 or chunk_size < 1:
            raise ValueError(f"need radius >= 0 and chunk_size >= 1, got {radius}, {chunk_size}")
        self.decode = decode
        self.radius = radius
        self.chunk_size = chunk_size
        self._latents: torch.Tensor | None = None  # the latents still needed, from frame self._first on
        self._first = 0  # the clip index of self._latents[:, :, 0]
        self._done = 0  # frames already returned

    def push(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Add the next latents (B, C, n, h, w); returns the decoded frames now final, as (B, C_out, t, H, W)
        pieces in order (possibly none)."""
        self._latents = latents if self._latents is None else torch.cat([self._latents, latents], dim=2)
        return self._drain(final=False)

    def flush(self) -> list[torch.Tensor]:
        """Decode every frame still held (the clip has ended)."""
        return self._drain(final=True) if self._latents is not None else []

    def _drain(self, *, final: bool) -> list[torch.Tensor]:
        assert self._latents is not None
        out = []
        while True:
            end = self._first + self._latents.shape[2]  # frames that have arrived
            ready = end if final else end - self.radius  # frames whose right context has arrived
            stop = min(ready, self._done + self.chunk_size)
            if stop <= self._done or (not final and stop - self._done < self.chunk_size):
                return out
            lo = max(self._first, self._done - self.radius)
            hi = min(end, stop + self.radius)
            frames = self.decode(self._latents[:, :, lo - self._first : hi - self._first])
            out.append(frames[:, :, self._done - lo : stop - lo])
            self._done = stop
            keep = max(self._first, self._done - self.radius)  # left context of the next chunk
            self._latents = self._latents[:, :, keep - self._first :]
            self._first = keep
