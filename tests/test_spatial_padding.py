"""Circular spatial padding (`temporal.padding`): a VideoUNet on a world that wraps commutes with circular shifts,
time is never wrapped, and the choice travels with the temporal layers' folder and training config."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import tiny_unet
from test_diffusion_loss import config_file
from test_video_unet import inputs, perturb_temporal
from videoldm import VideoUNet
from videoldm.diffusion.masks import context_from_mask
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


def test_circular_continued_wraps_only_the_videos_continued_from_given_frames():
    zeros = VideoUNet.from_image_unet(tiny_unet(), kernel_size=(3, 3, 3), context_in_channels=True)
    perturb_temporal(zeros)
    by_mode = {"zeros": zeros}
    for mode in ("circular", "circular_continued"):
        by_mode[mode] = copy.deepcopy(zeros)
        by_mode[mode].spatial_padding = mode
    sample, timestep, text = inputs(b=2, t=4)
    # Video 0 continues its first 2 frames (a prediction clip); video 1 is made from text alone (S = 0).
    context = context_from_mask(torch.randn_like(sample), torch.arange(4)[None] < torch.tensor([[2], [0]]))

    def run(mode: str, i: int) -> torch.Tensor:
        kwargs = {"encoder_hidden_states": text[i : i + 1], "context": context[i : i + 1]}
        return by_mode[mode](sample[i : i + 1], timestep[i : i + 1], **kwargs).sample

    with torch.no_grad():
        mixed = by_mode["circular_continued"](sample, timestep, encoder_hidden_states=text, context=context).sample
        continued, from_text = run("circular", 0), run("zeros", 1)
        assert (run("circular", 1) - from_text).abs().max() > 1e-2  # the two paddings do differ on this input
        # With no context at all (the pipeline's first clip) nothing wraps either.
        alone = by_mode["circular_continued"](sample[1:], timestep[1:], encoder_hidden_states=text[1:]).sample
        unpadded = zeros(sample[1:], timestep[1:], encoder_hidden_states=text[1:]).sample
    assert torch.allclose(mixed[:1], continued, atol=1e-5)
    assert torch.allclose(mixed[1:], from_text, atol=1e-5)
    assert torch.allclose(alone, unpadded, atol=1e-5)


def test_padding_hooks_give_gradient_checkpointing_the_forward_s_padding():
    video_unet = VideoUNet.from_image_unet(
        tiny_unet(), kernel_size=(3, 3, 3), context_in_channels=True, spatial_padding="circular_continued"
    )
    perturb_temporal(video_unet)
    sample, timestep, text = inputs(b=2, t=4)
    context = context_from_mask(sample, torch.arange(4)[None] < torch.tensor([[2], [0]]))
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            video_unet.enable_gradient_checkpointing()
        video_unet.zero_grad()
        video_unet(sample, timestep, encoder_hidden_states=text, context=context).sample.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in video_unet.temporal.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_run_config_names_a_bad_padding(tmp_path):
    path = config_file(tmp_path)
    path.write_text(path.read_text().replace("model:\n", "model:\n  spatial_padding: reflect\n", 1))
    with pytest.raises(ConfigError, match=r"model\.spatial_padding"):
        load_config(path)
