"""Circular spatial padding (`temporal.padding`): a VideoUNet on a world that wraps commutes with circular shifts,
time is never wrapped, and the choice travels with the temporal layers' folder and training config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_unet
from test_diffusion_loss import config_file
from test_video_unet import inputs, perturb_temporal
from videoldm import VideoUNet
from videoldm.temporal.padding import pad_circularly
from videoldm.training.config import ConfigError
from videoldm.training.stages import load_config


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def trained_video_unet(padding: str) -> VideoUNet:
    video_unet = VideoUNet.from_image_unet(tiny_unet(), kernel_size=(3, 3, 3), spatial_padding=padding)
    perturb_temporal(video_unet)
    return video_unet


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_circular_padding_makes_the_video_unet_commute_with_circular_shifts(padding):
    video_unet = trained_video_unet(padding)
    sample, timestep, text = inputs(t=4)
    with torch.no_grad():
        out = video_unet(sample, timestep, encoder_hidden_states=text).sample
        # A shift by a multiple of the UNet's downsampling (2 here) moves every feature map by whole pixels.
        out_of_shifted = video_unet(shifted(sample, 2, 4), timestep, encoder_hidden_states=text).sample
    error = (out_of_shifted - shifted(out, 2, 4)).abs().max().item()
    if padding == "circular":
        assert error < 1e-4  # the two edges are neighbours: a wrapped object is the same object
    else:
        assert error > 1e-2  # zero padding tells the edges apart


def test_temporal_convolutions_wrap_space_but_not_time():
    conv = nn.Conv3d(1, 1, (3, 3, 3), padding=(1, 1, 1), bias=False)
    nn.init.ones_(conv.weight)
    pad_circularly(conv)
    pad_circularly(conv)  # idempotent: one hook
    x = torch.zeros(1, 1, 4, 5, 5)
    x[0, 0, -1, 2, 4] = 1.0  # last frame, last column
    y = conv(x)
    assert y.shape == x.shape
    assert y[0, 0, 0].abs().sum() == 0  # the first frame does not see the last one
    assert y[0, 0, -1, 2, 0] == 1.0 and y[0, 0, -2, 2, 0] == 1.0  # column 0 neighbours column 4


def test_padding_is_saved_with_the_layers_and_loads_back(tmp_path):
    video_unet = trained_video_unet("circular")
    video_unet.save_pretrained(tmp_path / "model")
    loaded = VideoUNet.from_pretrained(tmp_path / "model")
    assert loaded.spatial_padding == "circular"
    sample, timestep, text = inputs(t=3)
    with torch.no_grad():
        expected = video_unet(sample, timestep, encoder_hidden_states=text).sample
        assert torch.allclose(loaded(sample, timestep, encoder_hidden_states=text).sample, expected, atol=1e-6)


def test_switching_to_circular_changes_a_loaded_model_and_cannot_be_undone():
    video_unet = trained_video_unet("zeros")
    sample, timestep, text = inputs(t=3)
    with torch.no_grad():
        before = video_unet(sample, timestep, encoder_hidden_states=text).sample
        video_unet.spatial_padding = "circular"
        after = video_unet(sample, timestep, encoder_hidden_states=text).sample
    assert video_unet.temporal.config.spatial_padding == "circular"
    assert (after - before).abs().max() > 1e-3
    with pytest.raises(ValueError, match="cannot switch 'circular' to 'zeros'"):
        video_unet.spatial_padding = "zeros"
    with pytest.raises(ValueError, match="spatial_padding must be one of"):
        video_unet.spatial_padding = "reflect"
    with pytest.raises(ValueError, match="spatial_padding must be one of"):
        VideoUNet.from_image_unet(tiny_unet(), spatial_padding="reflect")


def test_run_config_names_a_bad_padding(tmp_path):
    path = config_file(tmp_path)
    path.write_text(path.read_text().replace("model:\n", "model:\n  spatial_padding: reflect\n", 1))
    with pytest.raises(ConfigError, match=r"model\.spatial_padding"):
        load_config(path)
