"""The context encoder: clean latents and their mask (PAPER.md section 4) as features at every UNet resolution."""

from __future__ import annotations

import torch
from torch import nn


class ContextEncoder(nn.Module):
    """The learned downsampling of the context c_S = (mask * z, mask) to every UNet resolution.

    Convolutions have no bias and SiLU(0) = 0, so an all-zero context gives all-zero features at any
    point in training: `context=None` and "no context frames" (S = 0) are the same input by construction.
    Each frame is encoded on its own (2-D convolutions): the context adds no mixing across time.
    """

    def __init__(self, *, in_channels: int, channels: int, num_levels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.levels = nn.ModuleList(
            [nn.Conv2d(channels, channels, 3, padding=1, bias=False)]
            + [nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False) for _ in range(num_levels - 1)]
        )

    def forward(self, context: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """context: (B, C+1, T, H, W) -> {(h, w): (B*T, channels, h, w)} at H, ceil(H/2), ceil(H/4), ..."""
        b, c, t, h, w = context.shape
        x = nn.functional.silu(self.conv_in(context.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)))
        features = {}
        for conv in self.levels:
            x = nn.functional.silu(conv(x))
            features[tuple(x.shape[-2:])] = x
        return features


def is_context_parameter(name: str) -> bool:
    """Whether a `TemporalAdapter` parameter only acts on the context: the context encoder's and each layer's
    zero-initialised `context_proj` (an all-zero context gives all-zero features, so these never change an S = 0
    output)."""
    return name.startswith("context_encoder.") or name.endswith(".context_proj.weight")
