"""The aligned video UNet: identity at init, alpha = 1 recovers the image UNet, freezing, adapters, context."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_unet
from videoldm import VideoUNet
from videoldm.temporal import frames_to_video, video_to_frames


def image_unet_per_frame(unet, sample, timestep, text, **kwargs):
    """Reference: the image UNet applied to every frame independently. sample (B, C, T, H, W)."""
    b, _, t, _, _ = sample.shape
    timestep = torch.as_tensor(timestep).expand(b).repeat_interleave(t)
    extra = {k: v.repeat_interleave(t, 0) for k, v in kwargs.items()}
    out = unet(video_to_frames(sample), timestep, text.repeat_interleave(t, 0), **extra).sample
    return frames_to_video(out, t)


def inputs(b=2, t=8, c=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(b, c, t, 8, 8, generator=g)
    text = torch.randn(b, 5, 32, generator=g)
    timestep = torch.tensor([10, 700])[:b]
    return sample, timestep, text


def perturb_temporal(video_unet: VideoUNet, seed: int = 0) -> None:
    """Make every temporal weight non-zero, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in video_unet.temporal.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("num_frames", [1, 8])
@pytest.mark.parametrize("variant", ["cross_attention", "class_labels_extra_channels"])
def test_fresh_video_unet_equals_image_unet_per_frame(num_frames, variant):
    labelled = variant == "class_labels_extra_channels"
    unet = tiny_unet(class_labels=labelled, extra_channels=3 if labelled else 0)
    video_unet = VideoUNet.from_image_unet(unet)
    sample, timestep, text = inputs(t=num_frames, c=unet.config.in_channels)
    kwargs = {"class_labels": torch.tensor([3, 7])} if labelled else {}
    with torch.no_grad():
        out = video_unet(sample, timestep, encoder_hidden_states=text, **kwargs).sample
        ref = image_unet_per_frame(unet, sample, timestep, text, **kwargs)
    assert out.shape == (2, 4, num_frames, 8, 8)
    assert (out - ref).abs().max().item() <= 1e-5


def test_trained_temporal_layers_change_the_output_but_alpha_one_recovers_the_image_unet(unet):
    video_unet = VideoUNet.from_image_unet(unet, kernel_size=(3, 3, 3), position_encoding="relative")
    perturb_temporal(video_unet)
    sample, timestep, text = inputs()
    with torch.no_grad():
        ref = image_unet_per_frame(unet, sample, timestep, text)
        video = video_unet(sample, timestep, encoder_hidden_states=text).sample
        image_only = video_unet(sample, timestep, encoder_hidden_states=text, image_only=True).sample
        indicator = video_unet(
            sample, timestep, encoder_hidden_states=text, image_only_indicator=torch.ones(2, 8, dtype=torch.bool)
        ).sample
    assert (video - ref).abs().max() > 1e-2, "trained temporal layers must matter"
    assert torch.equal(image_only, ref)
    assert torch.equal(indicator, ref)


def test_deep_copy_runs_its_own_temporal_layers(unet):
    """copy.deepcopy (EMA copies, a bf16 copy) must give a VideoUNet whose hooks run the copy's layers."""
    video_unet = VideoUNet.from_image_unet(copy.deepcopy(unet))
    perturb_temporal(video_unet)
    twin = copy.deepcopy(video_unet)
    sample, timestep, text = inputs()
    with torch.no_grad():
        before = video_unet(sample, timestep, encoder_hidden_states=text).sample
        torch.testing.assert_close(twin(sample, timestep, encoder_hidden_states=text).sample, before)
        perturb_temporal(twin, seed=1)  # the copy's layers, not the original's, must now run in the copy
        changed = twin(sample, timestep, encoder_hidden_states=text).sample
        assert (changed - before).abs().max() > 1e-2
        assert torch.equal(video_unet(sample, timestep, encoder_hidden_states=text).sample, before)


def test_image_only_indicator_is_per_frame(unet):
    """Frames flagged as images see the image model; the other clip in the batch still sees temporal layers."""
    video_unet = VideoUNet.from_image_unet(unet)
    perturb_temporal(video_unet)
    sample, timestep, text = inputs()
    indicator = torch.zeros(2, 8, dtype=torch.bool)
    indicator[0] = True
    with torch.no_grad():
        mixed = video_unet(sample, timestep, encoder_hidden_states=text, image_only_indicator=indicator).sample
        ref = image_unet_per_frame(unet, sample, timestep, text)
        video = video_unet(sample, timestep, encoder_hidden_states=text).sample
    assert torch.equal(mixed[0], ref[0])
    assert torch.allclose(mixed[1], video[1], atol=1e-6)


def test_freeze_spatial_one_step_moves_only_temporal_parameters(unet):
    video_unet = VideoUNet.from_image_unet(unet)
    video_unet.freeze_spatial()
    spatial_before = {k: v.clone() for k, v in video_unet.unet.state_dict().items()}
    temporal_before = {k: v.clone() for k, v in video_unet.temporal.state_dict().items()}
    assert all(not p.requires_grad for p in video_unet.unet.parameters())
    params = list(video_unet.temporal_parameters())
    assert len(params) == len(list(video_unet.temporal.parameters()))
    optimiser = torch.optim.AdamW(params, lr=1e-3)
    sample, timestep, text = inputs()
    loss = (video_unet(sample, timestep, encoder_hidden_states=text).sample - sample).pow(2).mean()
    loss.backward()
    optimiser.step()
    for k, v in video_unet.unet.state_dict().items():
        assert torch.equal(v, spatial_before[k]), k
    changed = [k for k, v in video_unet.temporal.state_dict().items() if not torch.equal(v, temporal_before[k])]
    assert any("conv2" in k for k in changed) and any("proj_out" in k for k in changed)
    assert any("mix_logit" in k for k in changed)


def test_spatial_parameters_keep_their_diffusers_names(unet):
    video_unet = VideoUNet.from_image_unet(unet)
    names = {k.removeprefix("unet.") for k in video_unet.state_dict() if k.startswith("unet.")}
    assert names == set(unet.state_dict())
    assert all(k.startswith(("unet.", "temporal.")) for k in video_unet.state_dict())


def test_save_temporal_roundtrip_and_transfer_to_another_backbone(tmp_path, unet):
    video_unet = VideoUNet.from_image_unet(unet, cross_attention=True)
    perturb_temporal(video_unet)
    video_unet.save_temporal(tmp_path / "temporal")
    assert (tmp_path / "temporal" / "diffusion_pytorch_model.safetensors").is_file()

    reloaded = VideoUNet.from_image_unet(copy.deepcopy(unet), temporal=tmp_path / "temporal")
    sample, timestep, text = inputs()
    with torch.no_grad():
        a = video_unet(sample, timestep, encoder_hidden_states=text).sample
        b = reloaded(sample, timestep, encoder_hidden_states=text).sample
    assert torch.equal(a, b)

    # A "DreamBooth" backbone: same layout, other spatial weights.
    dreambooth = tiny_unet(seed=123)
    spatial = {k: v.clone() for k, v in dreambooth.state_dict().items()}
    transferred = VideoUNet.from_image_unet(dreambooth, temporal=tmp_path / "temporal")
    for k, v in transferred.unet.state_dict().items():
        assert torch.equal(v, spatial[k]), k
    for k, v in transferred.temporal.state_dict().items():
        assert torch.equal(v, video_unet.temporal.state_dict()[k]), k


def test_save_pretrained_roundtrip(tmp_path, unet):
    video_unet = VideoUNet.from_image_unet(unet, context_in_channels=True)
    perturb_temporal(video_unet)
    video_unet.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "unet" / "config.json").is_file()
    loaded = VideoUNet.from_pretrained(tmp_path / "model")
    sample, timestep, text = inputs()
    context = torch.randn(2, 5, 8, 8, 8)
    with torch.no_grad():
        a = video_unet(sample, timestep, encoder_hidden_states=text, context=context).sample
        b = loaded(sample, timestep, encoder_hidden_states=text, context=context).sample
    assert torch.equal(a, b)


def test_loading_onto_a_mismatched_backbone_names_the_layer_and_both_shapes(tmp_path, unet):
    VideoUNet.from_image_unet(unet).save_temporal(tmp_path / "temporal")
    torch.manual_seed(0)
    wider = type(unet)(**{**unet.config, "block_out_channels": (16, 64)})
    with pytest.raises(ValueError) as err:
        VideoUNet.from_image_unet(wider, temporal=tmp_path / "temporal")
    message = str(err.value)
    assert "'down_blocks.0.attentions.0'" in message and "(32,)" in message and "(16,)" in message


def test_loading_an_adapter_with_an_unknown_config_key_fails(tmp_path, unet):
    VideoUNet.from_image_unet(unet).save_temporal(tmp_path / "temporal")
    config = tmp_path / "temporal" / "config.json"
    config.write_text(config.read_text().replace('"ff_mult"', '"ff_multiplier"'))
    with pytest.raises(ValueError, match="ff_multiplier"):
        VideoUNet.from_image_unet(unet, temporal=tmp_path / "temporal")


def test_zero_context_equals_no_context_and_context_path_learns(unet):
    video_unet = VideoUNet.from_image_unet(unet, context_in_channels=True)
    sample, timestep, text = inputs()
    mask = torch.zeros(2, 1, 8, 8, 8)
    mask[:, :, :2] = 1
    context = torch.cat([mask * torch.randn(2, 4, 8, 8, 8), mask], dim=1)
    with torch.no_grad():
        none = video_unet(sample, timestep, encoder_hidden_states=text).sample
        zeros = video_unet(sample, timestep, encoder_hidden_states=text, context=torch.zeros_like(context)).sample
        given = video_unet(sample, timestep, encoder_hidden_states=text, context=context).sample
    assert torch.equal(none, zeros)
    assert torch.allclose(given, none, atol=1e-6), "a fresh model ignores the context"

    video_unet.freeze_spatial()
    optimiser = torch.optim.SGD(video_unet.temporal_parameters(), lr=0.5)
    # Zero-initialised outputs, then zero-initialised context projections: the encoder gets gradient at step 3.
    for _ in range(3):
        optimiser.zero_grad()
        out = video_unet(sample, timestep, encoder_hidden_states=text, context=context).sample
        out.pow(2).mean().backward()
        optimiser.step()
    encoder_grads = [p.grad for p in video_unet.temporal.context_encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in encoder_grads)
    with torch.no_grad():
        none = video_unet(sample, timestep, encoder_hidden_states=text).sample
        zeros = video_unet(sample, timestep, encoder_hidden_states=text, context=torch.zeros_like(context)).sample
        given = video_unet(sample, timestep, encoder_hidden_states=text, context=context).sample
    assert torch.equal(none, zeros), "an all-zero context stays 'no context' after training"
    assert (given - none).abs().max() > 1e-7, "after training, the context changes the output"


def checkpointing_step(unet, *, checkpointing: bool, trainable: str, **kwargs):
    """Loss and parameter gradients of one backward through a trained VideoUNet (context and text cross-attention
    on, so every kind of temporal input crosses the checkpoints)."""
    video_unet = VideoUNet.from_image_unet(copy.deepcopy(unet), cross_attention=True, context_in_channels=True)
    perturb_temporal(video_unet)
    if trainable == "temporal":
        video_unet.freeze_spatial()
    if checkpointing:
        video_unet.enable_gradient_checkpointing()
    sample, timestep, text = inputs()
    context = torch.cat([torch.randn(2, 4, 8, 8, 8), torch.ones(2, 1, 8, 8, 8)], dim=1)
    out = video_unet(sample, timestep, encoder_hidden_states=text, context=context, **kwargs).sample
    loss = (out - sample).pow(2).mean()
    loss.backward()
    return loss.detach(), {k: p.grad for k, p in video_unet.named_parameters()}


CHECKPOINTING_INPUTS = {
    "video": {},
    "image_only_indicator": {"image_only_indicator": torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0], [0] * 8])},
    "image_only": {"image_only": True},
}


@pytest.mark.parametrize(
    ("trainable", "variant"),
    [
        ("temporal", "video"),
        ("temporal", "image_only_indicator"),
        ("full", "video"),
        ("full", "image_only_indicator"),
        ("full", "image_only"),  # temporal-only training has nothing to train with image_only
    ],
)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(unet, trainable, variant):
    """Spatial blocks and temporal layers recomputed in backward: same loss, same gradient for every trainable
    parameter (bitwise equal on CPU; the tolerance, rtol 1e-5 and atol 1e-7, allows for other kernels)."""
    kwargs = CHECKPOINTING_INPUTS[variant]
    torch.manual_seed(0)
    plain_loss, plain = checkpointing_step(unet, checkpointing=False, trainable=trainable, **kwargs)
    torch.manual_seed(0)
    loss, checkpointed = checkpointing_step(unet, checkpointing=True, trainable=trainable, **kwargs)
    torch.testing.assert_close(loss, plain_loss, rtol=1e-6, atol=0)
    trained = {k for k, g in plain.items() if g is not None}
    expected = {k for k in plain if k.startswith("unet.")} if trainable == "full" else set()
    if variant != "image_only":  # image_only skips every temporal layer
        expected |= {k for k in plain if k.startswith("temporal.")}
    assert trained == expected
    assert {k for k, g in checkpointed.items() if g is not None} == trained
    for k in trained:
        torch.testing.assert_close(checkpointed[k], plain[k], rtol=1e-5, atol=1e-7, msg=k)


def test_gradient_checkpointing_recomputes_the_temporal_layers_with_the_forward_frame_state(unet):
    """The backward pass recomputes every temporal layer -- those after the ResNet blocks together with their
    checkpointed block -- with the forward's frame state (frames, text, indicator) and the forward's result.
    Reading a state cleared after forward (the old bug) skipped them in the recomputation."""
    video_unet = VideoUNet.from_image_unet(unet, cross_attention=True)
    perturb_temporal(video_unet)
    video_unet.freeze_spatial()
    video_unet.enable_gradient_checkpointing()
    calls: dict[str, list[tuple]] = {}
    for name, layer in zip(video_unet.temporal.layer_names(), video_unet.temporal.layers.values(), strict=True):
        layer.register_forward_hook(
            lambda _m, args, kwargs, out, name=name: calls.setdefault(name, []).append((args, kwargs, out.detach())),
            with_kwargs=True,
        )
    sample, timestep, text = inputs()
    indicator = torch.zeros(2, 8)
    indicator[0, 3] = 1
    # Early stop (set at forward time) would end each recomputation as soon as its saved tensors are back,
    # before the layer returns and its forward hook runs.
    with torch.utils.checkpoint.set_checkpoint_early_stop(False):
        out = video_unet(sample, timestep, encoder_hidden_states=text, image_only_indicator=indicator).sample
        assert len(calls) == len(video_unet.temporal.layers) and all(len(c) == 1 for c in calls.values())
        assert video_unet._state is None, "the frame state is cleared after forward"
        out.pow(2).mean().backward()
    assert all(len(c) == 2 for c in calls.values()), "each temporal layer is recomputed once in backward"
    for name, ((args, kwargs, result), (re_args, re_kwargs, re_result)) in calls.items():
        assert re_kwargs["num_frames"] == 8 and re_kwargs["text"] is text, name
        assert re_kwargs["image_only_indicator"] is indicator, name
        assert re_kwargs.keys() == kwargs.keys(), name
        for key, value in kwargs.items():
            same = torch.equal(re_kwargs[key], value) if torch.is_tensor(value) else re_kwargs[key] == value
            assert same, (name, key)
        assert torch.equal(re_args[0], args[0]) and torch.equal(re_result, result), name
    assert {layer.kind for layer in video_unet.temporal.layers.values()} == {"resnet", "transformer"}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, s, t, x: m(s[:, :, 0], t, encoder_hidden_states=x), "rank 4"),
        (lambda m, s, t, x: m(s[:, :3], t, encoder_hidden_states=x), "in_channels=4"),
        (lambda m, s, t, x: m(s, t, encoder_hidden_states=x, image_only_indicator=torch.ones(2, 7)), r"\(2, 8\)"),
        (lambda m, s, t, x: m(s, torch.tensor([1, 2, 3]), encoder_hidden_states=x), "timestep"),
        (lambda m, s, t, x: m(s, t, encoder_hidden_states=x, context=torch.zeros(2, 5, 8, 8, 8)), "context encoder"),
    ],
)
def test_clear_errors(unet, call, match):
    video_unet = VideoUNet.from_image_unet(unet)
    sample, timestep, text = inputs()
    with pytest.raises(ValueError, match=match):
        call(video_unet, sample, timestep, text)
