"""A model applied "convolutionally" (PAPER.md section 6): over overlapping windows of frames and tiles of pixels,
blended, so memory is bounded by the window, not by the video's length or size.

The windows along each axis are `autoencoder.chunked_decode.plan_chunks`'s -- the chunked decoder's -- with its
weights: 1 inside, a linear ramp over the frames (or pixels) a window shares with its neighbour. A window's weight
is the product of its three axes' weights, and each output element is the weighted mean of the windows that hold
it. A denoiser is windowed inside the model closure of `sample_latents`, once per step, so every step sees one
blended prediction of the whole video and the sampling loop stays the one loop.

Exactness: with temporal layers that reach `radius` frames to either side (per-frame norms, no absolute frame
positions; see `TemporalAdapterBase.temporal_radius`), a window's prediction on frame f is exact when frames
f - radius .. f + radius (clipped to the video) lie inside it; `exact_frames` lists the frames where that holds
for every window of non-zero weight, so there the windowed prediction equals one pass over the whole video.
Spatial tiles are never exact (the UNet's receptive field and its per-frame GroupNorm statistics span the frame);
their overlap hides seams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from videoldm.autoencoder.chunked_decode import Chunk, plan_chunks

Window = tuple[slice, slice, slice]
"""Frames, rows and columns of one window: `x[:, :, frames, rows, columns]`."""


@dataclass(frozen=True)
class WindowPlan:
    """The windows over a (T, H, W) video: chunks of frames x tiles of rows x tiles of columns."""

    frames: list[Chunk]
    rows: list[Chunk]
    columns: list[Chunk]

    @classmethod
    def of(
        cls,
        num_frames: int,
        height: int,
        width: int,
        *,
        chunk_size: int | None = None,
        chunk_overlap: int = 0,
        tile_size: int | None = None,
        tile_overlap: int = 0,
    ) -> WindowPlan:
        """None sizes (or sizes >= the axis) mean one window along that axis."""

        def axis(length: int, size: int | None, overlap: int) -> list[Chunk]:
            if size is None or size >= length:
                return plan_chunks(length, chunk_size=length, overlap=0)
            return plan_chunks(length, chunk_size=size, overlap=overlap)

        return cls(
            frames=axis(num_frames, chunk_size, chunk_overlap),
            rows=axis(height, tile_size, tile_overlap),
            columns=axis(width, tile_size, tile_overlap),
        )

    def __len__(self) -> int:
        return len(self.frames) * len(self.rows) * len(self.columns)

    def windows(self) -> list[tuple[Window, torch.Tensor]]:
        """Each window's slices and its weights (t, h, w)."""
        out = []
        for f in self.frames:
            for r in self.rows:
                for c in self.columns:
                    weight = f.weights[:, None, None] * r.weights[None, :, None] * c.weights[None, None, :]
                    out.append(((slice(f.start, f.stop), slice(r.start, r.stop), slice(c.start, c.stop)), weight))
        return out

    def exact_frames(self, radius: int | None) -> list[int]:
        """Frames whose windowed prediction equals one pass over all frames, for temporal layers reaching `radius`
        frames to either side (None: unbounded -- then only a single chunk of frames is exact)."""
        total = self.frames[-1].stop
        if len(self.frames) == 1:
            return list(range(total))
        if radius is None:
            return []
        exact = []
        for frame in range(total):
            needed = (max(0, frame - radius), min(total, frame + radius + 1))
            holders = [c for c in self.frames if c.start <= frame < c.stop and c.weights[frame - c.start] > 0]
            if all(c.start <= needed[0] and needed[1] <= c.stop for c in holders):
                exact.append(frame)
        return exact


def blend_windows(
    run: Callable[[list[Window]], torch.Tensor],
    plan: WindowPlan,
    *,
    batch: int,
    channels: int,
    like: torch.Tensor,
    group: int = 1,
) -> torch.Tensor:
    """`run(windows)` -> (len(windows) * batch, channels, t, h, w): the outputs of up to `group` consecutive windows
    of `plan` that have one shape, concatenated along the batch (window-major); returns the blend
    (batch, channels, T, H, W) in `like`'s dtype and device. `group` > 1 runs several windows in one model call:
    on a CPU a UNet on 4-7 windows of 9 frames at once is ~30% faster than one window at a time (small batches
    leave the cores idle between ops; very large ones outgrow the caches)."""
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    t, h, w = plan.frames[-1].stop, plan.rows[-1].stop, plan.columns[-1].stop
    out = like.new_zeros((batch, channels, t, h, w))
    total = like.new_zeros((t, h, w))
    pending: list[tuple[Window, torch.Tensor]] = []

    def flush() -> None:
        outputs = run([window for window, _ in pending]).to(like.dtype).split(batch)
        for (window, weight), output in zip(pending, outputs, strict=True):
            weight = weight.to(like.device, like.dtype)
            out[:, :, window[0], window[1], window[2]] += weight * output
            total[window] += weight
        pending.clear()

    for window, weight in plan.windows():
        if pending and (len(pending) == group or pending[0][1].shape != weight.shape):
            flush()
        pending.append((window, weight))
    flush()
    return out / total
