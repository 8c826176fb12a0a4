"""Context masks: which frames of a clip are given (clean) and which the model makes, as pure functions.

The conditioning of PAPER.md sections 4 and 5 is c = (mask * z, mask): the clean latents of the given frames
(zeros elsewhere) and the mask itself as one more channel, (B, C+1, T, h, w). Every masked task is a frame-index
mask turned into that tensor by `context_from_mask`:

- interpolation (section 5): `interpolation_mask(T)` -- T given frames at every `factor`-th position of
  factor * (T - 1) + 1 frames (4T - 3 for the paper's factor 4), the factor - 1 frames between each pair masked;
- prediction (section 4, a later issue): the first S frames given.

`spread_frames` puts T given frames at their positions in the longer clip and `paste_frames` writes them back
into a sampled clip, so the given frames come back exactly; `linear_blend` fills the frames between them.
"""

from __future__ import annotations

import torch

INTERPOLATION_FACTOR = 4  # the paper's: 3 new frames between each pair of given frames


def interpolated_length(num_given: int, factor: int = INTERPOLATION_FACTOR) -> int:
    """Frames of a clip with `num_given` frames at every `factor`-th position: factor * (T - 1) + 1."""
    if num_given < 1 or factor < 1:
        raise ValueError(f"need num_given >= 1 and factor >= 1, got {num_given}, {factor}")
    return factor * (num_given - 1) + 1


def interpolation_mask(num_given: int, factor: int = INTERPOLATION_FACTOR) -> torch.Tensor:
    """(T_out,) bool, T_out = factor * (num_given - 1) + 1: True at frames 0, factor, 2 * factor, ... (given)."""
    mask = torch.zeros(interpolated_length(num_given, factor), dtype=torch.bool)
    mask[::factor] = True
    return mask


def given_count(num_frames: int, factor: int = INTERPOLATION_FACTOR) -> int:
    """How many frames an interpolation clip of `num_frames` frames is given; a ValueError unless num_frames is
    factor * k + 1 (a clip that starts and ends on a given frame)."""
    if num_frames < factor + 1 or (num_frames - 1) % factor:
        raise ValueError(
            f"an interpolation clip has {factor} * k + 1 frames (given frames at both ends), k >= 1; got {num_frames}"
        )
    return (num_frames - 1) // factor + 1


def context_from_mask(latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The context c = (mask * z, mask) of PAPER.md section 4.

    latents: (B, C, T, h, w) clean latents (only the masked-in frames are read); mask: (T,) or (B, T), True or 1
    where a frame is given. Returns (B, C+1, T, h, w) in the latents' dtype.
    """
    if latents.ndim != 5:
        raise ValueError(f"latents must be (B, C, T, h, w); got {tuple(latents.shape)}")
    b, _, t, h, w = latents.shape
    if mask.ndim == 1:
        mask = mask[None].expand(b, -1)
    if tuple(mask.shape) != (b, t):
        raise ValueError(f"mask must be (T,) = ({t},) or (B, T) = ({b}, {t}); got {tuple(mask.shape)}")
    m = mask.to(latents.device, latents.dtype)[:, None, :, None, None]
    return torch.cat([latents * m, m.expand(b, 1, t, h, w)], dim=1)


def spread_frames(given: torch.Tensor, factor: int = INTERPOLATION_FACTOR) -> torch.Tensor:
    """(B, C, T, h, w) -> (B, C, factor * (T - 1) + 1, h, w): the given frames at every `factor`-th position,
    zeros between them."""
    b, c, t, h, w = given.shape
    out = given.new_zeros((b, c, interpolated_length(t, factor), h, w))
    out[:, :, ::factor] = given
    return out


def linear_blend(given: torch.Tensor, factor: int = INTERPOLATION_FACTOR) -> torch.Tensor:
    """(B, C, T, h, w) -> (B, C, factor * (T - 1) + 1, h, w): the given frames at every `factor`-th position, each
    frame between two given ones their linear blend (the baseline interpolation, and the start of
    `VideoInterpolationPipeline(strength < 1)`)."""
    a, b = given[:, :, :-1], given[:, :, 1:]
    steps = [torch.lerp(a, b, k / factor) for k in range(factor)]  # (B, C, T-1, h, w) each
    out = torch.stack(steps, dim=3).flatten(2, 3)
    return torch.cat([out, given[:, :, -1:]], dim=2)


def paste_frames(latents: torch.Tensor, given: torch.Tensor, factor: int = INTERPOLATION_FACTOR) -> torch.Tensor:
    """`latents` (B, C, T_out, h, w) with its every `factor`-th frame replaced by `given` (B, C, T, h, w), exactly."""
    needed = interpolated_length(given.shape[2], factor)
    if latents.shape[2] != needed:
        raise ValueError(
            f"{given.shape[2]} given frames at every {factor}-th position need {needed} frames, the latents have "
            f"{latents.shape[2]}"
        )
    out = latents.clone()
    out[:, :, ::factor] = given.to(latents.dtype)
    return out
