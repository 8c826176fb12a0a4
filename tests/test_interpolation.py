"""Interpolation (PAPER.md section 5): context masks, the zero-initialised task condition, the pipeline (given
frames back exactly, windows, seeds, guidance) and the interpolation stage (batches, a short run, its export)."""

from __future__ import annotations

import json

import pytest
import torch

from interpolation_fixtures import given_latents, save_tiny_interpolation_model, tiny_interpolation_unet
from test_pipeline_fixtures import tiny_image_unet
from videoldm import VideoUNet
from videoldm.diffusion.guidance import ClassifierFreeGuidance, ContextGuidance, NoGuidance
from videoldm.diffusion.masks import (
    context_from_mask,
    given_count,
    interpolated_length,
    interpolation_mask,
    linear_blend,
    paste_frames,
    spread_frames,
)
from videoldm.pipelines.interpolate import VideoInterpolationPipeline


# ---------------------------------------------------------------------------------------------------- masks
def test_interpolation_mask_gives_every_fourth_frame_of_4t_minus_3():
    assert interpolated_length(8) == 29 and interpolated_length(29) == 113
    mask = interpolation_mask(3)
    assert mask.tolist() == [True, False, False, False, True, False, False, False, True]
    assert given_count(9) == 3 and given_count(113) == 29
    for bad in (4, 8, 1):
        with pytest.raises(ValueError, match="4 \\* k \\+ 1"):
            given_count(bad)


def test_context_is_masked_latents_and_the_mask():
    z = torch.randn(2, 4, 5, 3, 3)
    mask = interpolation_mask(2)
    context = context_from_mask(z, mask)
    assert context.shape == (2, 5, 5, 3, 3)
    assert torch.equal(context[:, :4, 0], z[:, :, 0]) and torch.equal(context[:, :4, 4], z[:, :, 4])
    assert not context[:, :4, 1:4].any() and torch.equal(context[:, 4, :, 0, 0], mask.float()[None].expand(2, -1))
    per_clip = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])  # prediction masks: S = 1, 2 (issue 16's kind)
    assert context_from_mask(z, per_clip)[1, 4, :, 0, 0].tolist() == [1, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="mask must be"):
        context_from_mask(z, torch.ones(4))


def test_spread_and_paste_put_given_frames_at_every_fourth_position():
    given = torch.randn(1, 4, 3, 2, 2)
    spread = spread_frames(given)
    assert spread.shape[2] == 9 and torch.equal(spread[:, :, ::4], given) and not spread[:, :, 1::4].any()
    pasted = paste_frames(torch.randn(1, 4, 9, 2, 2), given)
    assert torch.equal(pasted[:, :, ::4], given)
    with pytest.raises(ValueError, match="need 9 frames"):
        paste_frames(torch.randn(1, 4, 8, 2, 2), given)


# ---------------------------------------------------------------------------------------------------- condition
def unet_inputs(batch: int = 2, frames: int = 5):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn((batch, 4, frames, 8, 8), generator=g)
    text = torch.randn((batch, 3, 384), generator=g)
    context = context_from_mask(torch.randn((batch, 4, frames, 8, 8), generator=g), interpolation_mask(2))
    return sample, text, context


def test_a_fresh_condition_changes_nothing_and_a_trained_one_does():
    unet = tiny_image_unet(cross_attention_dim=384)
    with_condition = VideoUNet.from_image_unet(unet, context_in_channels=True, num_conditions=2)
    without = VideoUNet.from_image_unet(tiny_image_unet(cross_attention_dim=384), context_in_channels=True)
    state = {k: v for k, v in with_condition.temporal.state_dict().items() if not k.startswith("condition")}
    without.temporal.load_state_dict(state)
    assert with_condition.temporal.condition_embedding.weight.abs().sum() == 0
    sample, text, context = unet_inputs()
    with torch.no_grad():
        for condition in (torch.tensor([0, 1]), torch.tensor([1, 1])):
            a = with_condition(sample, 10, text, context=context, condition=condition).sample
            assert torch.equal(a, without(sample, 10, text, context=context).sample)
        torch.nn.init.normal_(with_condition.temporal.condition_embedding.weight)
        for p in with_condition.temporal.parameters():  # the residual branches, off their zero init
            p.add_(0.1 * torch.randn_like(p))
        zero = with_condition(sample, 10, text, context=context, condition=torch.tensor([0, 0])).sample
        mixed = with_condition(sample, 10, text, context=context, condition=torch.tensor([0, 1])).sample
    assert torch.equal(zero[0], mixed[0]) and (zero[1] - mixed[1]).abs().max() > 1e-4


def test_condition_gets_gradient_and_bad_conditions_name_the_problem():
    video_unet = tiny_interpolation_unet()
    sample, text, context = unet_inputs()
    video_unet(sample, 10, text, context=context, condition=torch.tensor([0, 1])).sample.pow(2).mean().backward()
    assert video_unet.temporal.condition_embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"condition must be in \[0, 2\)"):
        video_unet(sample, 10, text, context=context, condition=torch.tensor([0, 2]))
    plain = VideoUNet.from_image_unet(tiny_image_unet(cross_attention_dim=384), context_in_channels=True)
    with pytest.raises(ValueError, match="num_conditions"):
        plain(sample, 10, text, context=context, condition=torch.tensor([0, 1]))


def test_folders_without_the_condition_key_load_unchanged(tmp_path):
    unet = tiny_image_unet(cross_attention_dim=384)
    old = VideoUNet.from_image_unet(unet, context_in_channels=True)
    old.save_temporal(tmp_path / "temporal")
    config = json.loads((tmp_path / "temporal" / "config.json").read_text())
    del config["num_conditions"]  # a folder written before the key existed
    (tmp_path / "temporal" / "config.json").write_text(json.dumps(config))
    loaded = VideoUNet.from_image_unet(unet, temporal=tmp_path / "temporal")
    assert loaded.temporal.condition_embedding is None
    sample, text, context = unet_inputs()
    with torch.no_grad():
        assert torch.equal(
            loaded(sample, 10, text, context=context).sample, old(sample, 10, text, context=context).sample
        )


# ---------------------------------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_interpolation_model(tmp_path_factory.mktemp("interpolation") / "model")


@pytest.fixture(scope="module")
def pipe(folder):
    pipe = VideoInterpolationPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, z, **kwargs):
    kwargs = {
        "num_inference_steps": 2,
        "output_type": "latent",
        "generator": torch.Generator().manual_seed(0),
        **kwargs,
    }
    return pipe(latents=z, **kwargs).frames


def test_given_frames_come_back_exactly_and_the_seed_fixes_the_rest(pipe):
    z = given_latents(2, 3)
    out = run(pipe, z)
    assert out.shape == (2, 4, 9, 4, 4) and torch.equal(out[:, :, ::4], z)
    assert torch.equal(out, run(pipe, z))
    assert not torch.equal(out, run(pipe, z, generator=torch.Generator().manual_seed(1)))
    x16 = run(pipe, z, factor=16)
    assert x16.shape[2] == 33 and torch.equal(x16[:, :, ::16], z) and torch.equal(x16[:, :, ::4], run(pipe, z))


def test_linear_blend_keeps_the_given_frames_and_blends_between():
    given = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)], dim=1)[None]  # (1, 1, 2, 2, 2)
    out = linear_blend(given)
    assert out.shape[2] == 5 and out[0, 0, :, 0, 0].tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_strength_starts_from_the_noised_blend(pipe):
    """strength 0.02 of 50 steps: one step from the blend noised to t = 1 -- the blend, give or take that
    step's noise; strength 1 (from pure noise) lands far from it. Given frames exact either way."""
    z = given_latents(1, 3)
    blend = linear_blend(z)
    near = run(pipe, z, num_inference_steps=50, strength=0.02)
    full = run(pipe, z, strength=1.0)
    assert torch.equal(near[:, :, ::4], z) and torch.equal(full[:, :, ::4], z)
    assert (near - blend).abs().max() < 0.2 < (full - blend).abs().max()
    assert torch.equal(run(pipe, z, strength=0), blend)  # 0: the blend itself
    for bad in (-0.1, 1.5, [0.4]):  # a list needs one value per pass: factor 4 has one, 16 two
        with pytest.raises(ValueError, match="strength"):
            run(pipe, z, strength=bad, factor=16 if isinstance(bad, list) else 4)


def test_factor_16_takes_a_strength_per_pass_and_defaults_the_dense_pass_to_the_blend(pipe, monkeypatch):
    """Default (0.4, 0): the dense pass is the latent blend of the first pass's frames, without a UNet call; a
    strength per pass runs the model where it is > 0."""
    z = given_latents(1, 3)
    coarse = run(pipe, z)
    calls = []
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    assert torch.equal(run(pipe, z, factor=16), linear_blend(coarse))
    default_calls = len(calls)
    both = run(pipe, z, factor=16, strength=[0.4, 0.4])
    assert len(calls) - default_calls > default_calls and torch.equal(both[:, :, ::4], coarse)  # the model ran twice
    assert not torch.equal(both, linear_blend(coarse))


def test_factor_16_runs_the_coarse_condition_then_the_fine_one(pipe):
    assert pipe.conditions_for(4) == [1] and pipe.conditions_for(16) == [1, 0]
    z = given_latents(1, 3)
    assert not torch.equal(run(pipe, z, conditions=[0]), run(pipe, z, conditions=[1]))


def test_windows_equal_one_pass_on_a_short_input_and_start_on_given_frames(pipe):
    z = given_latents(1, 3)  # 9 frames: one window of 9 = the whole clip
    assert torch.equal(run(pipe, z, window_frames=9), run(pipe, z, window_frames=None))
    long = given_latents(1, 6)  # 21 frames: windows of 9 at 0, 8, 12 (the last aligned to the end)
    windowed = run(pipe, long)  # default window: the trained clip length
    assert windowed.shape[2] == 21 and torch.equal(windowed[:, :, ::4], long)
    assert not torch.equal(windowed, run(pipe, long, window_frames=None))
    with pytest.raises(ValueError, match="window_frames must be 4k"):
        run(pipe, long, window_frames=8)
    with pytest.raises(ValueError, match="window_overlap must be 4j"):
        run(pipe, long, window_frames=9, window_overlap=2)


def test_windows_sharing_only_a_given_frame_are_independent_passes(pipe, monkeypatch):
    """No seam by construction: with overlap 1 each new frame comes from one window, which sees exactly what a
    pass over its own given frames sees (the same noise), and the shared boundary frame is the given one."""
    import videoldm.pipelines.interpolate as module

    noise = torch.randn((1, 4, 17, 4, 4), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(module, "randn_tensor", lambda shape, **kw: noise[:, :, : shape[2]].clone())
    long = given_latents(1, 5)  # 17 frames: windows [0, 9) and [8, 17)
    windowed = run(pipe, long, window_frames=9, window_overlap=1)
    alone = run(pipe, long[:, :, :3], window_frames=None)
    assert torch.allclose(windowed[:, :, :9], alone, atol=1e-6)


def test_windows_run_together_give_what_they_give_one_at_a_time(pipe, monkeypatch):
    """Several windows in one UNet call (stacked along the batch) change the speed, not the video."""
    import videoldm.pipelines.interpolate as module

    long = given_latents(2, 6)  # 21 frames: 3 windows of 9, two videos
    results = []
    for group in (1, 2, 7):  # one per call; a group of 2 then a group of 1; all three at once
        monkeypatch.setattr(module, "WINDOWS_PER_CALL", group)
        results.append(run(pipe, long))
    for result in results[1:]:
        torch.testing.assert_close(result, results[0], rtol=1e-5, atol=1e-5)


def test_guidance_choice(pipe):
    assert isinstance(pipe.guider(context_guidance_scale=1, guidance_scale=7.5, text_guidance=False), NoGuidance)
    assert isinstance(
        pipe.guider(context_guidance_scale=1, guidance_scale=7.5, text_guidance=True), ClassifierFreeGuidance
    )
    both = pipe.guider(context_guidance_scale=2, guidance_scale=7.5, text_guidance=True)
    assert isinstance(both, ContextGuidance) and both.num_branches == 3
    z = given_latents(1, 2)
    guided = run(pipe, z, context_guidance_scale=3.0, prompt="a red circle moving right", guidance_scale=4.0)
    assert torch.equal(guided[:, :, ::4], z) and not torch.equal(guided, run(pipe, z))


def test_pixels_in_and_out_through_the_folders_autoencoder(pipe):
    video = torch.rand((1, 3, 2, 8, 8), generator=torch.Generator().manual_seed(0)) * 2 - 1
    frames = pipe(video, num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 3, 5, 8, 8) and frames.abs().max() <= 1
    with pytest.raises(ValueError, match="at least 2 frames"):
        pipe(video[:, :, :1], num_inference_steps=1)
    with pytest.raises(ValueError, match="factor must be one of"):
        pipe(video, factor=8)


def test_a_folder_without_interpolation_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no interpolation/temporal/"):
        VideoInterpolationPipeline.from_pretrained(tmp_path)
