"""A patch-wise video discriminator of 3D convolutions (PAPER.md section 3) and its hinge losses.

Like the LDM autoencoder's PatchGAN (`NLayerDiscriminator`) with every Conv2d a Conv3d: the downsampling
convolutions are strided in space and in time, so each logit judges a space-time patch of the video, and
motion (flicker, jitter) is something it can see. GroupNorm instead of BatchNorm: no batch statistics to
synchronise across processes, and a batch of one clip works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from videoldm.temporal.layers import group_count


class VideoDiscriminator(ModelMixin, ConfigMixin):
    """Patch logits for videos: (B, 3, T, H, W) in [-1, 1] -> (B, 1, T', H', W').

    Args:
        in_channels: channels of the video.
        channels: width of the first layer; it doubles with every downsampling layer (at most 8x).
        num_layers: downsampling layers after the first; each halves H, W and (if temporal_stride) T.
        temporal_stride: stride 2 in time too (otherwise only in space).
    """

    @register_to_config
    def __init__(
        self, *, in_channels: int = 3, channels: int = 64, num_layers: int = 3, temporal_stride: bool = True
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        stride = (2 if temporal_stride else 1, 2, 2)
        # Kernel 3 in time, 4 in space (the PatchGAN's): a clip of a few frames still gives logits.
        kernel, padding = (3, 4, 4), (1, 1, 1)
        layers: list[nn.Module] = [nn.Conv3d(in_channels, channels, kernel, stride, padding), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2**i, 8)
            last = i == num_layers  # the PatchGAN's last hidden layer keeps the resolution
            conv = nn.Conv3d(width, out, 3 if last else kernel, 1 if last else stride, 1, bias=False)
            layers += [conv, nn.GroupNorm(group_count(out), out), nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv3d(width, 1, 3, 1, 1))
        self.layers = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, C, T, H, W) -> patch logits (B, 1, T', H', W')."""
        return self.layers(video)


def _init_weights(module: nn.Module) -> None:
    """The LDM PatchGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) norm scales."""
    if isinstance(module, nn.Conv3d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator loss against a hinge discriminator: -mean(fake logits)."""
    return -logits_fake.mean()
