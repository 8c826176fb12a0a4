"""The temporal decoder's losses: video discriminator, hinge losses, adaptive weight, LPIPS, training steps."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from autoencoder_fixtures import tiny_vae, tiny_video
from videoldm.autoencoder import LPIPS, DecoderLoss, VideoAutoencoder, VideoDiscriminator
from videoldm.autoencoder.discriminator import hinge_d_loss, hinge_g_loss
from videoldm.autoencoder.lpips import _TAP_CHANNELS


def small_discriminator() -> VideoDiscriminator:
    torch.manual_seed(0)
    return VideoDiscriminator(channels=8, num_layers=2)


@pytest.mark.parametrize(
    ("shape", "temporal_stride", "expected"),
    [
        ((2, 3, 8, 16, 16), True, (2, 1, 2, 4, 4)),
        ((2, 3, 8, 16, 16), False, (2, 1, 8, 4, 4)),
        ((1, 3, 1, 8, 8), True, (1, 1, 1, 2, 2)),
    ],
)
def test_discriminator_gives_space_time_patch_logits(shape, temporal_stride, expected):
    torch.manual_seed(0)
    disc = VideoDiscriminator(channels=8, num_layers=2, temporal_stride=temporal_stride)
    logits = disc(torch.randn(shape))
    assert logits.shape == expected
    # One logit per space-time patch: a longer, larger video gets more logits (strided in time and space).
    longer = disc(torch.randn(shape[0], 3, shape[2] * 4, shape[3] * 2, shape[4] * 2))
    assert longer.shape[3:] == (expected[3] * 2, expected[4] * 2)
    assert longer.shape[2] == (expected[2] * 4 if not temporal_stride else (shape[2] * 4 + 3) // 4)


def test_hinge_losses():
    ones = torch.ones(4)
    assert hinge_d_loss(ones * 2, -ones * 2) == 0  # confident and right: no loss
    assert hinge_d_loss(-ones, ones) == 2.0  # wrong by a margin of 2 on both sides
    torch.testing.assert_close(hinge_d_loss(torch.tensor([0.5]), torch.tensor([0.0])), torch.tensor(0.75))
    assert hinge_g_loss(torch.tensor([1.0, 3.0])) == -2.0


def setup(*, disc_start_step: int = 0, lpips_weights=None):
    vae = tiny_vae()
    video_ae = VideoAutoencoder.from_vae(vae)
    video_ae.freeze_spatial()
    loss = DecoderLoss(
        discriminator=small_discriminator(), disc_start_step=disc_start_step, lpips_weights=lpips_weights
    )
    return video_ae, loss, tiny_video(batch=2, frames=4)


def test_adaptive_weight_is_finite_and_positive_and_scales_with_disc_weight():
    video_ae, loss, video = setup()
    recon = video_ae(video)
    total, logs = loss.generator_loss(video, recon, step=0, last_layer=video_ae.last_layer)
    assert torch.isfinite(total) and 0 < logs["disc/weight"] < 1e4
    expected = logs["loss/rec"] + logs["disc/weight"] * logs["loss/g"]
    assert abs(logs["loss/total"] - expected) < 1e-5
    loss.disc_weight = 1.0
    _, logs_double = loss.generator_loss(video, recon, step=0, last_layer=video_ae.last_layer)
    assert logs_double["disc/weight"] == pytest.approx(2 * logs["disc/weight"], rel=1e-5)


def test_adversarial_term_waits_for_its_start_step():
    video_ae, loss, video = setup(disc_start_step=5)
    recon = video_ae(video)
    total, logs = loss.generator_loss(video, recon, step=4, last_layer=video_ae.last_layer)
    assert "loss/g" not in logs and total.item() == pytest.approx(logs["loss/rec"])
    d_loss, _ = loss.discriminator_loss(video, recon.detach(), step=4)
    assert d_loss.item() == 0 and not loss.discriminator_active(4) and loss.discriminator_active(5)
    d_loss.backward()  # connected to the discriminator, zero gradients
    assert all(p.grad is not None and not p.grad.any() for p in loss.discriminator.parameters())
    _, logs = loss.generator_loss(video, recon, step=5, last_layer=video_ae.last_layer)
    assert "loss/g" in logs


def test_validation_without_gradients_has_zero_adversarial_weight():
    video_ae, loss, video = setup()
    with torch.no_grad():
        recon = video_ae(video)
        total, logs = loss.generator_loss(video, recon, step=0, last_layer=video_ae.last_layer)
    assert logs["disc/weight"] == 0 and total.item() == pytest.approx(logs["loss/rec"])


def test_generator_and_discriminator_steps_change_only_what_they_should():
    video_ae, loss, video = setup()
    g_opt = torch.optim.Adam(video_ae.temporal_parameters(), lr=1e-2)
    d_opt = torch.optim.Adam(loss.discriminator.parameters(), lr=1e-2)
    vae_before = {k: v.clone() for k, v in video_ae.vae.state_dict().items()}
    temporal_before = {k: v.clone() for k, v in video_ae.temporal.state_dict().items()}
    disc_before = {k: v.clone() for k, v in loss.discriminator.state_dict().items()}
    for step in range(2):
        recon = video_ae(video)
        g_loss, _ = loss.generator_loss(video, recon, step=step, last_layer=video_ae.last_layer)
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        temporal_after_g = {k: v.clone() for k, v in video_ae.temporal.state_dict().items()}
        disc_after_g = {k: v.clone() for k, v in loss.discriminator.state_dict().items()}
        d_loss, d_logs = loss.discriminator_loss(video, recon.detach(), step=step)
        assert d_loss.item() == pytest.approx(d_logs["loss/disc"]) and d_loss >= 0
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        # the generator step moved no discriminator weight; the discriminator step no decoder weight
        assert all(torch.equal(disc_after_g[k], v) for k, v in (disc_before if step == 0 else disc_after_g).items())
        assert all(torch.equal(temporal_after_g[k], v) for k, v in video_ae.temporal.state_dict().items())
    assert all(torch.equal(vae_before[k], v) for k, v in video_ae.vae.state_dict().items())
    assert any(not torch.equal(temporal_before[k], v) for k, v in video_ae.temporal.state_dict().items())
    assert any(not torch.equal(disc_before[k], v) for k, v in loss.discriminator.state_dict().items())


def test_discriminator_state_dict_round_trip():
    _, loss, video = setup()
    restored = DecoderLoss(discriminator=VideoDiscriminator(channels=8, num_layers=2))
    restored.discriminator.load_state_dict(loss.discriminator.state_dict())
    torch.testing.assert_close(restored.discriminator(video), loss.discriminator(video))


def random_lpips_file(path) -> None:
    """A safetensors file in the documented layout, with random (non-negative head) weights."""
    torch.manual_seed(0)
    state = {f"features.{k}": v.clone() for k, v in LPIPS().features.state_dict().items()}
    state |= {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(_TAP_CHANNELS)}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's extra keys are ignored
    save_file(state, str(path))


def test_lpips_from_local_weights_is_non_negative_and_zero_for_identical_inputs(tmp_path):
    random_lpips_file(tmp_path / "lpips.safetensors")
    lpips = LPIPS.from_file(tmp_path / "lpips.safetensors")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    d = lpips(x, y)
    assert d.shape == (3,) and (d >= 0).all() and (d > 0).all()
    assert lpips(x, x).abs().max() == 0
    assert not any(p.requires_grad for p in lpips.parameters())
    video_ae, loss, video = setup(lpips_weights=tmp_path / "lpips.safetensors")
    recon = video_ae(video)
    total, logs = loss.generator_loss(video, recon, step=0, last_layer=video_ae.last_layer)
    assert logs["loss/lpips"] > 0 and logs["loss/rec"] == pytest.approx(logs["loss/l1"] + logs["loss/lpips"], rel=1e-5)
    total.backward()
    assert video_ae.last_layer.grad is not None


def test_lpips_weights_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors"):
        DecoderLoss(lpips_weights=tmp_path / "missing.safetensors")
    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match=r"partial\.safetensors.*features\.0\.bias"):
        LPIPS.from_file(tmp_path / "partial.safetensors")


def test_loss_inputs_must_match():
    _, loss, video = setup()
    with pytest.raises(ValueError, match="same shape"):
        loss.generator_loss(video, video[:, :, :2], step=0, last_layer=torch.zeros(1))


def test_flicker_term_is_the_flicker_metric_and_ignores_errors_that_agree_across_frames():
    from videoldm.autoencoder.losses import flicker_l1
    from videoldm.autoencoder.metrics import temporal_flicker

    video = tiny_video(batch=2, frames=4)
    g = torch.Generator().manual_seed(0)
    noisy = (video + 0.1 * torch.randn(video.shape, generator=g)).clamp(-1, 1)  # the metric clamps to [-1, 1]
    # The loss on [-1, 1] is twice the metric on [0, 1] (every pixel difference doubles).
    torch.testing.assert_close(flicker_l1(video, noisy).double(), 2 * temporal_flicker(noisy, video).mean())
    # An error that is the same in every frame is not flicker: zero, while the per-frame L1 sees it.
    steady = video + 0.1 * torch.randn(video[:, :, :1].shape, generator=g)
    assert flicker_l1(video, steady) < 1e-6

    weighted = DecoderLoss(discriminator=small_discriminator(), flicker_weight=2.0)
    plain = DecoderLoss(discriminator=small_discriminator())
    losses, base = weighted.reconstruction_loss(video, noisy), plain.reconstruction_loss(video, noisy)
    assert "flicker" not in base
    torch.testing.assert_close(losses["rec"], base["rec"] + 2.0 * flicker_l1(video, noisy))
    with pytest.raises(ValueError, match="flicker_weight"):
        DecoderLoss(flicker_weight=-1.0)
