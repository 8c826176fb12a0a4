"""Shared fixtures: tiny diffusers image UNets built in code (no downloads)."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def tiny_unet(*, seed: int = 0, class_labels: bool = False, extra_channels: int = 0) -> UNet2DConditionModel:
    """A 2-level cross-attention UNet; optionally with class labels and extra input channels (x4-upscaler-like)."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4 + extra_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
        num_class_embeds=10 if class_labels else None,
    ).eval()


@pytest.fixture
def unet() -> UNet2DConditionModel:
    return tiny_unet()


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (a shared 2-core machine runs tiny ops up to 20x slower on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
