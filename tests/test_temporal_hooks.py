"""The one hook mechanism (`VideoBackbone`) and temporal locality: per-frame norms keep layers local in time."""

from __future__ import annotations

import pytest
import torch

from autoencoder_fixtures import tiny_vae
from conftest import tiny_unet
from videoldm import VideoUNet
from videoldm.autoencoder import VideoAutoencoder
from videoldm.temporal import FrameState, VideoBackbone


def perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-zero temporal weights (zero-initialised outputs would hide any mixing across frames)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.temporal.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def receptive_field_from_layers(video_unet: VideoUNet) -> int:
    """Counted from the layer list: two (3,1,1) convolutions per temporal residual block (one frame each side
    each), the attention window of each temporal transformer."""
    window = video_unet.temporal.config.max_attention_distance
    return sum(2 if layer.kind == "resnet" else window for layer in video_unet.temporal.layers.values())


def change_of_each_frame(video_unet: VideoUNet, num_frames: int) -> torch.Tensor:
    """Max |output change| per frame (T,) when only frame 0 of the input changes."""
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(1, 4, num_frames, 8, 8, generator=g)
    text = torch.randn(1, 5, 32, generator=g)
    changed = sample.clone()
    changed[:, :, 0] += torch.randn(changed[:, :, 0].shape, generator=g)
    with torch.no_grad():
        a = video_unet(sample, 500, encoder_hidden_states=text).sample
        b = video_unet(changed, 500, encoder_hidden_states=text).sample
    return (a - b).abs().amax(dim=(0, 1, 3, 4))


def local_unet(temporal_norm: str) -> VideoUNet:
    video_unet = VideoUNet.from_image_unet(
        tiny_unet(), temporal_norm=temporal_norm, position_encoding="relative", max_attention_distance=1
    )
    perturb(video_unet)
    return video_unet


def test_frame_norm_leaves_every_frame_beyond_the_receptive_field_bit_identical():
    video_unet = local_unet("frame")
    radius = receptive_field_from_layers(video_unet)
    assert video_unet.temporal.temporal_radius() == radius
    num_frames = radius + 6
    change = change_of_each_frame(video_unet, num_frames)
    assert change[0] > 0 and change[1] > 0, "the temporal layers do carry frame 0 forward"
    assert torch.all(change[radius + 1 :] == 0), change


def test_clip_norm_reaches_every_frame():
    frame_model = local_unet("frame")
    radius = receptive_field_from_layers(frame_model)
    video_unet = local_unet("clip")
    assert video_unet.temporal.temporal_radius() is None
    change = change_of_each_frame(video_unet, radius + 6)
    assert change[-1] > 0
    # same weights, only the norm statistics differ: the clip norm is what carries frame 0 this far
    video_unet.temporal.load_state_dict(frame_model.temporal.state_dict())
    assert change_of_each_frame(video_unet, radius + 6)[radius + 1 :].min() > 0


def test_temporal_norm_option_is_saved_and_clip_stays_the_default(tmp_path):
    assert VideoUNet.from_image_unet(tiny_unet()).temporal.config.temporal_norm == "clip"
    video_unet = local_unet("frame")
    video_unet.save_pretrained(tmp_path)
    loaded = VideoUNet.from_pretrained(tmp_path)
    assert loaded.temporal.config.temporal_norm == "frame"
    torch.testing.assert_close(change_of_each_frame(loaded, 8), change_of_each_frame(video_unet, 8))
    with pytest.raises(ValueError, match="temporal_norm"):
        VideoUNet.from_image_unet(tiny_unet(), temporal_norm="batch")


def test_a_resnet_hook_finds_the_time_embedding_by_name_and_raises_without_it():
    video_unet = VideoUNet.from_image_unet(tiny_unet())
    perturb(video_unet)
    resnet = video_unet.unet.down_blocks[0].resnets[0]
    (hook,) = resnet._forward_hooks.values()
    x, temb = torch.randn(2, 32, 8, 8), torch.randn(2, resnet.time_emb_proj.in_features)
    with video_unet.frames(FrameState(num_frames=2)), torch.no_grad():
        positional = hook(resnet, (x, temb), {}, x)
        keyword = hook(resnet, (), {"input_tensor": x, "temb": temb}, x)
        torch.testing.assert_close(positional, keyword)
        assert not torch.equal(positional, hook(resnet, (x, 2 * temb), {}, x)), "the embedding reaches the layer"
        with pytest.raises(ValueError, match="time embedding"):
            hook(resnet, (x,), {}, x)


@pytest.mark.parametrize(
    "build", [lambda: VideoUNet.from_image_unet(tiny_unet()), lambda: VideoAutoencoder.from_vae(tiny_vae())]
)
def test_one_mechanism_frame_state_is_restored_after_nesting(build):
    model = build()
    assert isinstance(model, VideoBackbone)
    outer, inner = FrameState(num_frames=4), FrameState(num_frames=2)
    with model.frames(outer):
        with model.frames(inner):
            assert model._state is inner
        assert model._state is outer, "the outer state comes back (the decoder used to reset it to None)"
    assert model._state is None


def test_the_backbones_own_checkpointing_is_refused_for_a_video_forward():
    video_unet = VideoUNet.from_image_unet(tiny_unet())
    video_unet.unet.enable_gradient_checkpointing()  # diffusers' own: recomputes blocks without temporal layers
    sample, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 5, 32)
    with pytest.raises(ValueError, match=r"VideoUNet\.enable_gradient_checkpointing"):
        video_unet(sample, 10, encoder_hidden_states=text)
    video_unet.enable_gradient_checkpointing()  # ours replaces diffusers' function: fine
    video_unet(sample, 10, encoder_hidden_states=text)


def test_pooled_text_reaches_the_temporal_residual_blocks_and_a_fresh_model_is_still_the_image_model():
    unet = tiny_unet()
    video_unet = VideoUNet.from_image_unet(unet, pooled_text_channels=True, kernel_size=(3, 3, 3))
    assert video_unet.temporal.config.pooled_text_channels == unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(0)
    sample, text = torch.randn(1, 4, 4, 8, 8, generator=g), torch.randn(1, 5, 32, generator=g)
    with torch.no_grad():
        fresh = video_unet(sample, 10, encoder_hidden_states=text).sample
        image = video_unet(sample, 10, encoder_hidden_states=text, image_only=True).sample
    torch.testing.assert_close(fresh, image)
    perturb(video_unet)
    video_unet.freeze_spatial()
    video_unet(sample, 10, encoder_hidden_states=text).sample.square().mean().backward()
    resnets = [layer for layer in video_unet.temporal.layers.values() if layer.kind == "resnet"]
    assert resnets and all(layer.block.text_proj.weight.grad.abs().sum() > 0 for layer in resnets)
    block = resnets[0].block
    x = torch.randn(1, block.conv1.in_channels, 4, 8, 8, generator=g)
    t1, t2 = torch.randn(2, 1, 32, generator=g)
    with torch.no_grad():
        assert not torch.equal(block(x, text=t1), block(x, text=t2)), "the pooled text changes the block's output"
