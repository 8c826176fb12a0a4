"""Toroidal (circular) spatial padding, for a world that wraps around its edges.

On the shapes world's long-video data the frame is a torus: an object that leaves one edge re-enters at the
opposite one, in the same row or column. With zero padding a model has no short path from one edge to the other,
and the prediction rollouts never carried an object across: 0 of 12 crossings kept its row (the object was
redrawn elsewhere; `docs/long-videos.md`, session 22). Padding every spatial convolution circularly -- the image
UNet's and the temporal layers' -- makes the two edges neighbours, as they are in the world.

`TemporalAdapter(spatial_padding="circular")` records the choice with the temporal layers; `VideoUNet` applies it to
its image UNet and its temporal layers when built, so every pipeline that loads the folder samples the model it was
trained as. Time is never wrapped: the temporal convolutions keep zero padding along frames.
"""

from __future__ import annotations

import functools

import torch.nn.functional as F
from torch import nn

SPATIAL_PADDINGS = ("zeros", "circular")


def _pad_height_width(pad: tuple[int, ...], module: nn.Module, args: tuple) -> tuple:
    (x, *rest) = args
    return (F.pad(x, pad, mode="circular"), *rest)


def pad_circularly(module: nn.Module) -> None:
    """Make every spatial convolution in `module` pad circularly, in place; idempotent.

    Conv2d: PyTorch's own `padding_mode="circular"`. Conv3d over (T, H, W): H and W padded circularly by a forward
    pre-hook and T zero-padded by the convolution as before (`padding_mode="circular"` would wrap time too, making
    the last frame a neighbour of the first). Parameters and their names are unchanged."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and any(conv.padding):
            conv.padding_mode = "circular"
        elif isinstance(conv, nn.Conv3d) and any(conv.padding[1:]) and not getattr(conv, "pads_circularly", False):
            pad_t, pad_h, pad_w = conv.padding
            conv.padding = (pad_t, 0, 0)
            conv.register_forward_pre_hook(functools.partial(_pad_height_width, (pad_w, pad_w, pad_h, pad_h, 0, 0)))
            conv.pads_circularly = True


def check_spatial_padding(value: str) -> str:
    """`value` if it names a padding of `SPATIAL_PADDINGS`, else a ValueError naming it."""
    if value not in SPATIAL_PADDINGS:
        raise ValueError(f"spatial_padding must be one of {SPATIAL_PADDINGS}, got {value!r}")
    return value
