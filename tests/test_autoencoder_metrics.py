"""PSNR, SSIM and temporal flicker on synthetic videos with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from benchmarks.decoder_quality import compare_decoders, held_out_shapes, report

from autoencoder_fixtures import perturb_temporal, tiny_vae
from videoldm.autoencoder import VideoAutoencoder
from videoldm.autoencoder.metrics import psnr, ssim, temporal_flicker


def video(seed: int = 0, shape=(2, 3, 5, 24, 24)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_psnr_known_values():
    x = video()
    assert torch.isinf(psnr(x, x)).all() or (psnr(x, x) > 100).all()
    # A constant error of 0.1 on the [0, 1] scale (0.2 on [-1, 1]) is 20 dB.
    target = torch.zeros(1, 3, 2, 8, 8)
    torch.testing.assert_close(psnr(target + 0.2, target), torch.tensor([20.0], dtype=torch.float64))
    noisy = (x + 0.05 * video(1)).clamp(-1, 1)
    assert (psnr(noisy, x) > psnr((x + 0.3 * video(1)).clamp(-1, 1), x)).all()


def test_ssim_is_one_for_identical_and_drops_with_noise_and_matches_a_reference_value():
    x = video()
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    small, large = ssim((x + 0.1 * video(1)).clamp(-1, 1), x), ssim((x + 0.6 * video(1)).clamp(-1, 1), x)
    assert (large < small).all() and (small < 1).all()
    # A constant image against a constant image: only the luminance term, (2ab + c1) / (a^2 + b^2 + c1).
    a, b = 0.25, 0.75
    expected = (2 * a * b + 0.01**2) / (a**2 + b**2 + 0.01**2)
    const = ssim(torch.full((1, 1, 1, 16, 16), a * 2 - 1), torch.full((1, 1, 1, 16, 16), b * 2 - 1))
    assert const.item() == pytest.approx(expected)


def test_flicker_ignores_constant_errors_and_sees_frame_to_frame_ones():
    x = video()
    assert temporal_flicker(x * 0.5 + 0.2, x * 0.5 + 0.2).max() == 0
    # a constant colour shift changes every frame alike: no flicker
    shifted = x * 0.5 + 0.1
    assert temporal_flicker(shifted, x * 0.5).max() < 1e-6  # float32 rounding of the shift only
    # alternating +-e per frame: every frame difference is off by 2e (e on the [0, 1] scale after /2)
    e = 0.1
    sign = torch.tensor([(-1) ** t for t in range(5)], dtype=torch.float32).reshape(1, 1, -1, 1, 1)
    flickering = x * 0.5 + e * sign
    torch.testing.assert_close(
        temporal_flicker(flickering, x * 0.5), torch.full((2,), e, dtype=torch.float64), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="2 frames"):
        temporal_flicker(x[:, :, :1], x[:, :, :1])
    assert math.isfinite(psnr(flickering, x * 0.5)[0].item())


def test_static_flicker_is_the_part_of_the_flicker_where_the_video_stands_still():
    from videoldm.autoencoder.metrics import static_flicker

    g = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn(1, 3, 5, 8, 8, generator=g)
    video = -torch.ones(1, 3, 5, 8, 8)
    video[:, :, :, :, 4:] = 0.5  # still: two flat halves
    # On a still video every bit of flicker is static flicker.
    torch.testing.assert_close(static_flicker(video + noise, video), temporal_flicker(video + noise, video))
    # On a video whose left half blinks every frame, only the right half's flicker counts.
    blinking = video.clone()
    blinking[:, :, 1::2, :, :4] = 1.0
    total, still = temporal_flicker(blinking + noise, blinking), static_flicker(blinking + noise, blinking)
    right_half = temporal_flicker(blinking[..., 4:] + noise[..., 4:], blinking[..., 4:]) / 2  # half the pixels
    torch.testing.assert_close(still, right_half)
    assert 0 < still < total


def test_decoder_quality_script_compares_the_two_decoders_on_held_out_shapes():
    videos = held_out_shapes(2, frames=4, size=24)
    assert videos.shape == (2, 3, 4, 24, 24) and videos.min() >= -1 and videos.max() <= 1
    fresh = VideoAutoencoder.from_vae(tiny_vae())
    same = compare_decoders(fresh, videos, batch_size=1)
    for metric in ("psnr", "ssim", "flicker", "flicker_static"):  # a fresh temporal decoder is the image decoder
        assert same["temporal"][metric] == pytest.approx(same["image"][metric], rel=1e-4)
    perturb_temporal(fresh)
    results = compare_decoders(fresh, videos, batch_size=2, chunk_size=2)
    assert results["temporal"]["flicker"] != pytest.approx(results["image"]["flicker"], rel=1e-4)
    text = report(results, model="m", videos="v", header="h")
    assert "flicker ratio temporal / image" in text and "| temporal |" in text


def test_decoder_floor_shift_is_exact_for_whole_pixels_and_the_static_floor_is_zero():
    from benchmarks.decoder_floor import floor_scores, shift

    frames = video(3, shape=(1, 3, 2, 16, 16))
    # out(x, y) = frames(x + dx, y + dy): a whole-pixel shift is the frame moved, exactly, where it is defined.
    torch.testing.assert_close(shift(frames, 2, 1)[..., :-1, :-2], frames[..., 1:, 2:].double())
    ae = VideoAutoencoder.from_vae(tiny_vae())
    static = floor_scores(ae, num_videos=2, texture="static", frames=3, size=32)["decoders"]
    panned = floor_scores(ae, num_videos=2, texture="pan", frames=3, size=32)["decoders"]
    assert set(static) == {"image", "temporal"}
    assert static["image"]["floor"] < 1e-9 < static["image"]["flicker"]  # a still background: all removable
    assert panned["image"]["floor"] > 0  # errors that move with the camera still change from frame to frame
