"""Guidance arithmetic: each guider equals its formula computed from separate model calls, in ONE batched call."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_unet
from videoldm import VideoUNet
from videoldm.diffusion import (
    ClassifierFreeGuidance,
    Conditioning,
    ContextGuidance,
    MotionGuidance,
    NoGuidance,
    guided_prediction,
    text_guidance,
)

B, C, T, H, W, L, D = 2, 4, 3, 8, 8, 5, 32


class CountingModel:
    """A model whose output depends on sample, text and context in a non-trivial way; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, sample, timestep, *, encoder_hidden_states=None, context=None):
        self.calls.append(sample.shape[0])
        out = sample * encoder_hidden_states.sum(dim=(1, 2)).view(-1, 1, 1, 1, 1) + timestep
        if context is not None:
            out = out + 3.0 * context[:, :C] * context[:, C:]
        return out


@pytest.fixture
def inputs() -> tuple[torch.Tensor, Conditioning]:
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(B, C, T, H, W, generator=g)
    mask = (torch.rand(B, 1, T, H, W, generator=g) > 0.5).float()
    context = torch.cat([torch.randn(B, C, T, H, W, generator=g) * mask, mask], dim=1)
    cond = Conditioning(
        text=torch.randn(B, L, D, generator=g), negative_text=torch.randn(B, L, D, generator=g), context=context
    )
    return sample, cond


@pytest.mark.parametrize("scale", [0.0, 1.0, 7.5])
def test_classifier_free_guidance_formula_in_one_call(inputs, scale: float) -> None:
    sample, cond = inputs
    cond.context = None
    model = CountingModel()
    got = guided_prediction(model, ClassifierFreeGuidance(scale), sample, 5, cond)
    assert model.calls == [2 * B]  # batched: one call on [uncond, cond]
    uncond = model(sample, 5, encoder_hidden_states=cond.negative_text)
    conditional = model(sample, 5, encoder_hidden_states=cond.text)
    torch.testing.assert_close(got, uncond + scale * (conditional - uncond))
    if scale == 1.0:
        torch.testing.assert_close(got, conditional)
    if scale == 0.0:
        torch.testing.assert_close(got, uncond)


def test_classifier_free_guidance_gives_context_to_both_branches(inputs) -> None:
    sample, cond = inputs
    model = CountingModel()
    got = guided_prediction(model, ClassifierFreeGuidance(3.0), sample, 0, cond)
    uncond = model(sample, 0, encoder_hidden_states=cond.negative_text, context=cond.context)
    conditional = model(sample, 0, encoder_hidden_states=cond.text, context=cond.context)
    torch.testing.assert_close(got, uncond + 3.0 * (conditional - uncond))


def test_no_guidance_is_the_conditional_prediction(inputs) -> None:
    sample, cond = inputs
    model = CountingModel()
    got = guided_prediction(model, NoGuidance(), sample, 2, cond)
    assert model.calls == [B]
    torch.testing.assert_close(got, model(sample, 2, encoder_hidden_states=cond.text, context=cond.context))


def test_text_guidance_skips_the_unconditional_branch_when_it_cannot_matter() -> None:
    assert isinstance(text_guidance(1.0), NoGuidance)
    assert isinstance(text_guidance(7.5), ClassifierFreeGuidance)


def test_guiders_name_what_is_missing(inputs) -> None:
    sample, cond = inputs
    with pytest.raises(ValueError, match="negative_text"):
        ClassifierFreeGuidance(2.0).prepare(sample, Conditioning(text=cond.text))
    with pytest.raises(ValueError, match="context"):
        ContextGuidance(2.0).prepare(sample, Conditioning(text=cond.text))


@pytest.fixture
def context_unet() -> VideoUNet:
    """A tiny VideoUNet with a context encoder whose weights are no longer the zero initialisation."""
    model = VideoUNet.from_image_unet(tiny_unet(), context_in_channels=True).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.temporal.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model


def _predict(model: VideoUNet):
    return lambda sample, t, **kwargs: model(sample, t, **kwargs).sample


@torch.no_grad()
def test_context_guidance_matches_formula_with_context_none(inputs, context_unet) -> None:
    """f = f(z) + s (f(z; c_S) - f(z)), where f(z) is a real call with context=None (the paper's S = 0)."""
    sample, cond = inputs
    f = _predict(context_unet)
    got = guided_prediction(f, ContextGuidance(2.5), sample, 10, cond)
    without = f(sample, 10, encoder_hidden_states=cond.text, context=None)
    with_context = f(sample, 10, encoder_hidden_states=cond.text, context=cond.context)
    assert (with_context - without).abs().max() > 1e-3  # the context matters, so the test can fail
    torch.testing.assert_close(got, without + 2.5 * (with_context - without), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_context_guidance_composes_with_text_guidance(inputs, context_unet) -> None:
    sample, cond = inputs
    f = _predict(context_unet)
    calls = []

    def counting(sample, t, **kwargs):
        calls.append(sample.shape[0])
        return f(sample, t, **kwargs)

    got = guided_prediction(counting, ContextGuidance(2.0, text_scale=4.0), sample, 10, cond)
    assert calls == [3 * B]
    uncond = f(sample, 10, encoder_hidden_states=cond.negative_text, context=None)
    text = f(sample, 10, encoder_hidden_states=cond.text, context=None)
    text_context = f(sample, 10, encoder_hidden_states=cond.text, context=cond.context)
    expected = uncond + 4.0 * (text - uncond) + 2.0 * (text_context - text)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture
def text_unet() -> VideoUNet:
    """A tiny VideoUNet whose temporal layers read the text (cross-attention and the pooled prompt), trained-ish."""
    model = VideoUNet.from_image_unet(tiny_unet(), cross_attention=True, pooled_text_channels=True).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.temporal.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model


@torch.no_grad()
def test_temporal_text_reaches_the_temporal_layers_alone(inputs, text_unet) -> None:
    sample, cond = inputs
    f = _predict(text_unet)
    same = f(sample, 10, encoder_hidden_states=cond.text, temporal_encoder_hidden_states=cond.text)
    torch.testing.assert_close(same, f(sample, 10, encoder_hidden_states=cond.text))  # the default: one text
    other = f(sample, 10, encoder_hidden_states=cond.text, temporal_encoder_hidden_states=cond.negative_text)
    assert (other - same).abs().max() > 1e-3  # the temporal layers read it
    image = dict(encoder_hidden_states=cond.text, image_only=True)  # no temporal layers: nothing changes
    torch.testing.assert_close(
        text_unet(sample, 10, **image, temporal_encoder_hidden_states=cond.negative_text).sample,
        text_unet(sample, 10, **image).sample,
    )


@torch.no_grad()
def test_motion_guidance_formula_in_one_call(inputs, text_unet) -> None:
    """f = f_u + s (f_s - f_u) + m (f_st - f_s); m = s is plain text guidance."""
    sample, cond = inputs
    cond.context = None
    f = _predict(text_unet)
    calls = []

    def counting(sample, t, **kwargs):
        calls.append(sample.shape[0])
        return f(sample, t, **kwargs)

    got = guided_prediction(counting, MotionGuidance(3.0, 9.0), sample, 10, cond)
    assert calls == [3 * B]
    uncond = f(sample, 10, encoder_hidden_states=cond.negative_text)
    spatial = f(sample, 10, encoder_hidden_states=cond.text, temporal_encoder_hidden_states=cond.negative_text)
    both = f(sample, 10, encoder_hidden_states=cond.text)
    torch.testing.assert_close(got, uncond + 3.0 * (spatial - uncond) + 9.0 * (both - spatial), atol=1e-4, rtol=1e-4)
    plain = guided_prediction(f, ClassifierFreeGuidance(3.0), sample, 10, cond)
    torch.testing.assert_close(
        guided_prediction(f, MotionGuidance(3.0, 3.0), sample, 10, cond), plain, atol=1e-5, rtol=1e-5
    )
    with pytest.raises(ValueError, match="negative_text"):
        MotionGuidance(3.0, 9.0).prepare(sample, Conditioning(text=cond.text))
