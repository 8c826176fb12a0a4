"""Toroidal (circular) spatial padding, for a world that wraps around its edges.

On the shapes world's long-video data the frame is a torus: an object that leaves one edge re-enters at the
opposite one, in the same row or column. With zero padding a model has no short path from one edge to the other,
and the prediction rollouts never carried an object across: 0 of 12 crossings kept its row (the object was
redrawn elsewhere; `docs/long-videos.md`, session 22). Padding every spatial convolution circularly -- the image
UNet's and the temporal layers' -- makes the two edges neighbours, as they are in the world.

Three choices (`SPATIAL_PADDINGS`), recorded with the temporal layers (`TemporalAdapter(spatial_padding=...)`):
- "zeros": the image model's own padding.
- "circular": every clip wraps. Circular padding everywhere regressed the text-to-video key frames, whose frozen
  image UNet was trained on frames with zero padding (session 22: one object in 18/48 probe videos, from 44/48).
- "circular_continued": a clip continued from given frames (a prediction or interpolation context with at least one
  given frame) wraps; a clip made from text alone (S = 0, the key-frame task) pads with zeros, as the image UNet was
  trained. The choice is per sample of a batch (a training batch mixes S = 0, 1, 2).

One mechanism serves all three: `install` moves each padded spatial convolution's H, W padding into a forward
pre-hook that pads per the convolution's `wraps` -- False (zeros), True (circular) or a (B,) bool tensor, one per
video of the batch -- set by `set_wraps` before each forward. Time is never wrapped: the temporal convolutions keep
zero padding along frames. The `wraps` of the last forward stays until the next, so gradient checkpointing's
recomputation in the backward pass pads as the forward did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPATIAL_PADDINGS = ("zeros", "circular", "circular_continued")

Wraps = bool | torch.Tensor  # False, True, or (B,) bool: which videos of the batch wrap


def _spatial_padding(conv: nn.Module) -> tuple[int, ...] | None:
    """F.pad's (w, w, h, h) of a padded spatial convolution (Conv2d, or Conv3d over (T, H, W)), else None."""
    if isinstance(getattr(conv, "padding", None), str):
        return None  # "same" / "valid": not a padding this module moves
    if isinstance(conv, nn.Conv2d) and any(conv.padding) and conv.padding_mode == "zeros":
        pad_h, pad_w = conv.padding
        return (pad_w, pad_w, pad_h, pad_h)
    if isinstance(conv, nn.Conv3d) and any(conv.padding[1:]) and conv.padding_mode == "zeros":
        _, pad_h, pad_w = conv.padding
        return (pad_w, pad_w, pad_h, pad_h, 0, 0)
    return None


def _pad(conv: nn.Module, args: tuple) -> tuple:
    (x, *rest) = args
    wraps, pad = conv.wraps, conv.spatial_pad
    if isinstance(wraps, torch.Tensor):
        # A batch mixing both (set_wraps made a uniform one a bool). Frames are folded into the batch video-major
        # ((B*T, C, H, W) in the image UNet): one flag per video.
        if x.shape[0] % len(wraps):
            raise ValueError(f"wraps has {len(wraps)} videos; a batch of {x.shape[0]} is not a multiple")
        per_item = wraps.to(x.device).repeat_interleave(x.shape[0] // len(wraps))
        per_item = per_item.view(-1, *([1] * (x.ndim - 1)))
        return (torch.where(per_item, F.pad(x, pad, mode="circular"), F.pad(x, pad)), *rest)
    return (F.pad(x, pad, mode="circular") if wraps else F.pad(x, pad), *rest)


def install(module: nn.Module) -> None:
    """Let every padded spatial convolution in `module` pad per its `wraps` (False at first: zero padding, the same
    output as before), in place; idempotent. The convolution itself then pads only time (Conv3d); parameters and
    their names are unchanged."""
    for conv in module.modules():
        pad = _spatial_padding(conv)
        if pad is None or hasattr(conv, "spatial_pad"):
            continue
        conv.padding = (conv.padding[0], 0, 0) if isinstance(conv, nn.Conv3d) else (0, 0)
        conv.spatial_pad, conv.wraps = pad, False
        conv.register_forward_pre_hook(_pad)
    # Kept on the module (a plain list, not a registered child): set_wraps runs before every forward, and walking
    # the ~700 modules of even the tiny model each time cost ~10 ms.
    module.padded_convs = [conv for conv in module.modules() if hasattr(conv, "spatial_pad")]


def set_wraps(module: nn.Module, wraps: Wraps) -> None:
    """Set which videos the next forward wraps (see the module docstring), for the convolutions that `install` on
    this same `module` found; none if it was never installed."""
    if isinstance(wraps, torch.Tensor) and (wraps.all() or not wraps.any()):
        wraps = bool(wraps.any())  # one padding for the whole batch: decided once here, not in every conv's hook
    for conv in getattr(module, "padded_convs", ()):
        conv.wraps = wraps


def pad_circularly(module: nn.Module) -> None:
    """Make every spatial convolution in `module` pad circularly, in place, until `set_wraps` says otherwise."""
    install(module)
    set_wraps(module, True)


def check_spatial_padding(value: str) -> str:
    """`value` if it names a padding of `SPATIAL_PADDINGS`, else a ValueError naming it."""
    if value not in SPATIAL_PADDINGS:
        raise ValueError(f"spatial_padding must be one of {SPATIAL_PADDINGS}, got {value!r}")
    return value
