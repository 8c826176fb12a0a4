"""Temporal building blocks: the alpha blend in the frames' layout, and attention over a few frames."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videoldm.temporal import attention as layers
from videoldm.temporal.attention import TemporalAttention, _matmul_attention
from videoldm.temporal.layers import AlphaBlender, frames_to_video


def reference_blend(alpha: torch.Tensor, frames: torch.Tensor, temporal_video: torch.Tensor) -> torch.Tensor:
    """alpha * spatial + (1 - alpha) * temporal, written out in the frames layout (B*T, C, H, W)."""
    b, c, t, h, w = temporal_video.shape
    temporal = temporal_video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    return alpha * frames + (1 - alpha) * temporal


def test_blend_frames_is_the_alpha_formula_with_per_frame_alphas_and_gradients():
    g = torch.Generator().manual_seed(0)
    b, c, t, h, w = 2, 3, 4, 5, 6
    frames = torch.randn(b * t, c, h, w, generator=g)
    temporal = torch.randn(b, c, t, h, w, generator=g)
    blender = AlphaBlender(alpha_init_logit=0.3)

    out = blender.blend_frames(frames, temporal)
    alpha = torch.sigmoid(torch.tensor(0.3))
    torch.testing.assert_close(out, reference_blend(alpha, frames, temporal))
    assert out.shape == frames.shape and out.is_contiguous()

    indicator = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    per_frame = torch.where(indicator.reshape(-1), torch.ones(()), alpha).reshape(-1, 1, 1, 1)
    out = blender.blend_frames(frames, temporal, image_only_indicator=indicator)
    torch.testing.assert_close(out, reference_blend(per_frame, frames, temporal))
    assert torch.equal(out[0], frames[0]) and torch.equal(out[6], frames[6])  # image frames: exactly spatial

    # The learned alpha gets the formula's gradient.
    out.sum().backward()
    logit = torch.tensor(0.3, requires_grad=True)
    a = torch.sigmoid(logit)
    a_frames = torch.where(indicator.reshape(-1), torch.ones(()), a).reshape(-1, 1, 1, 1)
    reference_blend(a_frames, frames, temporal).sum().backward()
    torch.testing.assert_close(blender.mix_logit.grad, logit.grad)


def test_blend_of_identical_inputs_is_exact():
    """A fresh (zero-initialised) temporal branch returns its input: the blend must give it back bit for bit."""
    frames = torch.randn(8, 3, 4, 4)
    out = AlphaBlender(alpha_init_logit=-1.7).blend_frames(frames, frames_to_video(frames, 4).contiguous())
    assert torch.equal(out, frames)


@pytest.mark.parametrize("masked", [False, True])
def test_matmul_attention_equals_sdpa(masked):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(6, 2, 8, 16, generator=g) for _ in range(3))
    mask = None
    if masked:  # a distance mask with -inf, as FramePositions builds it
        idx = torch.arange(8)
        mask = torch.zeros(1, 8, 8).masked_fill((idx[:, None] - idx[None]).abs() > 2, float("-inf"))
    torch.testing.assert_close(_matmul_attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, mask))


def test_bf16_temporal_attention_on_cpu_stays_close_to_float32():
    torch.manual_seed(0)
    attention = TemporalAttention(dim=32, num_heads=4)
    x = torch.randn(64, 8, 32)
    reference = attention(x)
    low = attention.to(torch.bfloat16)(x.bfloat16()).float()
    # bf16 keeps 8 bits of mantissa: ~1% relative error is what its rounding gives.
    assert (low - reference).norm() / reference.norm() < 0.02


def test_short_self_attention_on_cpu_skips_sdpa_but_long_uses_it(monkeypatch):
    """<= SHORT_SEQUENCE frames on a CPU run the matmul path (faster there, in every dtype); longer ones SDPA."""
    torch.manual_seed(0)
    attention = TemporalAttention(dim=32, num_heads=4)
    short, long = torch.randn(16, 8, 32), torch.randn(4, 40, 32)
    monkeypatch.setattr(layers, "SHORT_SEQUENCE", 0)
    expected = attention(short)  # through SDPA
    monkeypatch.undo()
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(args[0].shape[-2])
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    torch.testing.assert_close(attention(short), expected)
    assert calls == []
    attention(long)
    assert calls == [40]
