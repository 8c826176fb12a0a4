"""Frame-correlated noise (PYoCo's mixed prior): the statistics it promises, and the training batches it changes
only when asked for."""

from __future__ import annotations

import json

import pytest
import torch

from test_diffusion_loss import config_file
from videoldm.diffusion.noise import correlate_frames
from videoldm.training.config import ConfigError
from videoldm.training.stages import DiffusionStage, load_config


def frame_correlation(noise: torch.Tensor, a: int, b: int) -> float:
    x, y = noise[:, :, a].flatten(), noise[:, :, b].flatten()
    return torch.corrcoef(torch.stack([x, y]))[0, 1].item()


def test_frames_share_the_asked_correlation_and_stay_unit_normal():
    noise = torch.randn(64, 4, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    mixed = correlate_frames(noise, 0.75, generator=torch.Generator().manual_seed(1))
    assert abs(mixed.std().item() - 1.0) < 0.01 and abs(mixed.mean().item()) < 0.01
    for a, b in [(0, 1), (1, 4), (2, 3)]:
        assert abs(frame_correlation(mixed, a, b) - 0.75) < 0.02
        assert abs(frame_correlation(noise, a, b)) < 0.02  # the input was i.i.d.
    # Neighbouring pixels of one frame stay uncorrelated: the shared part is per pixel, not a constant.
    x = mixed[:, :, 0]
    assert abs(torch.corrcoef(torch.stack([x[..., :-1].flatten(), x[..., 1:].flatten()]))[0, 1].item()) < 0.02


def test_zero_correlation_is_the_noise_itself_and_draws_nothing():
    noise = torch.randn(2, 4, 3, 8, 8)
    g = torch.Generator().manual_seed(5)
    assert correlate_frames(noise, 0.0, generator=g) is noise
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_correlation_outside_zero_one_is_an_error(bad):
    with pytest.raises(ValueError, match=r"noise correlation must be in \[0, 1\)"):
        correlate_frames(torch.randn(1, 4, 2, 4, 4), bad)


def test_frames_need_a_time_axis():
    with pytest.raises(ValueError, match=r"\(B, C, T, h, w\)"):
        correlate_frames(torch.randn(1, 4, 4, 4), 0.5)


def test_training_batches_correlate_only_when_configured(tmp_path):
    latents = torch.zeros(32, 4, 4, 8, 8)
    plain = DiffusionStage(load_config(config_file(tmp_path)))
    noise = plain._diffusion_batch(latents, None, torch.Generator().manual_seed(3))["noise"]
    # Without the option: exactly the draws of runs made before it existed.
    assert torch.equal(noise, torch.randn(latents.shape, generator=torch.Generator().manual_seed(3)))
    mixed = DiffusionStage(load_config(config_file(tmp_path, noise_correlation=0.5)))
    noise = mixed._diffusion_batch(latents, None, torch.Generator().manual_seed(3))["noise"]
    assert abs(frame_correlation(noise, 0, 3) - 0.5) < 0.03
    # Image batches (B, c, h, w) have no frames to share noise between: unchanged.
    image = mixed._diffusion_batch(torch.zeros(8, 4, 8, 8), None, torch.Generator().manual_seed(3))["noise"]
    assert torch.equal(image, torch.randn((8, 4, 8, 8), generator=torch.Generator().manual_seed(3)))


def test_bad_noise_correlation_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.noise_correlation: must be in \[0, 1\), got 1.0"):
        load_config(config_file(tmp_path, noise_correlation=1.0))


def test_shipping_writes_the_chosen_prior_into_the_temporal_config(tmp_path):
    from scripts.ship_model import ship

    from test_pipeline_fixtures import write_tiny_video_ldm
    from videoldm import VideoLDMPipeline

    folder = write_tiny_video_ldm(tmp_path / "run")
    ship(folder, tmp_path / "shipped", noise_correlation=0.9)
    shipped = VideoLDMPipeline.from_pretrained(tmp_path / "shipped")
    assert shipped.unet.noise_correlation == 0.9  # the pipelines' default draw
    ship(folder / "temporal", tmp_path / "temporal", noise_correlation=0.25)  # a temporal folder alone
    assert json.loads((tmp_path / "temporal" / "config.json").read_text())["noise_correlation"] == 0.25
    with pytest.raises(SystemExit, match="no temporal layers"):
        ship(folder / "unet", tmp_path / "unet", noise_correlation=0.5)
    assert not (tmp_path / "unet").exists()  # nothing half-written


def test_video_unet_prior_is_checked_when_set():
    from test_pipeline_fixtures import tiny_pipeline

    unet = tiny_pipeline().unet
    unet.noise_correlation = 0.5
    assert unet.noise_correlation == 0.5 and unet.temporal.config.noise_correlation == 0.5
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got 1.0"):
        unet.noise_correlation = 1.0
