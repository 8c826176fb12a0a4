"""The diffusion objective of the image and temporal stages: loss weighting and the range of diffusion times."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from torch import nn

from videoldm.training.config import ConfigError
from videoldm.training.stages import DiffusionLoss, DiffusionStage, load_config, noise_scheduler_config


class Affine(nn.Module):
    """A stand-in denoiser: any fixed function of the noisy input that is not the true target."""

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, encoder_hidden_states=None):
        return SimpleNamespace(sample=0.7 * noisy + 0.1)


def config_file(tmp_path: Path, **train) -> Path:
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    (videos / "captions.csv").write_text("path,caption\n")
    path = tmp_path / "run.yaml"
    sections = {"stage": "temporal", "output_dir": str(tmp_path / "out"), "data": {"videos": str(videos)}}
    path.write_text(yaml.safe_dump({**sections, "model": {"pretrained": str(tmp_path)}, "train": train}))
    return path


def scheduler(prediction_type: str) -> DDPMScheduler:
    """The noise schedule the stages train with."""
    config = SimpleNamespace(model=SimpleNamespace(num_train_timesteps=1000, prediction_type=prediction_type))
    return DDPMScheduler(**noise_scheduler_config(config))


def clips(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(6, 4, 3, 5, 5, generator=g)  # (B, C, T, H, W)
    noise = torch.randn(latents.shape, generator=g)
    return latents, noise, torch.tensor([0, 10, 300, 600, 900, 999])


def test_edm_weighting_of_an_eps_model_is_the_v_objective():
    sched = scheduler("epsilon")
    latents, noise, timesteps = clips()
    loss = DiffusionLoss(Affine(), sched, weighting="edm")(latents, None, noise, timesteps)

    # The same prediction read as v: x0 from (noisy, eps_hat), then v_hat = sqrt(ab) eps_hat - sqrt(1 - ab) x0_hat.
    noisy = sched.add_noise(latents, noise, timesteps)
    eps_hat = Affine()(noisy, timesteps).sample
    ab = sched.alphas_cumprod[timesteps].reshape(-1, 1, 1, 1, 1)
    x0_hat = (noisy - (1 - ab).sqrt() * eps_hat) / ab.sqrt()
    v_hat = ab.sqrt() * eps_hat - (1 - ab).sqrt() * x0_hat
    v = sched.get_velocity(latents, noise, timesteps)
    per_clip = (v_hat - v).pow(2).flatten(1).mean(dim=1)
    torch.testing.assert_close(loss, per_clip.mean(), rtol=1e-4, atol=0)
    # ... which weights the noisiest clips far above the plain eps-MSE (alpha_bar(999) is ~0.005).
    noisiest = (latents[-1:], None, noise[-1:], timesteps[-1:])
    weighted, plain = (DiffusionLoss(Affine(), sched, weighting=w)(*noisiest) for w in ("edm", "epsilon"))
    assert weighted > 100 * plain


def test_edm_weighting_of_a_v_model_is_its_plain_loss():
    sched = scheduler("v_prediction")
    latents, noise, timesteps = clips(1)
    weighted = DiffusionLoss(Affine(), sched, weighting="edm")(latents, None, noise, timesteps)
    plain = DiffusionLoss(Affine(), sched)(latents, None, noise, timesteps)
    torch.testing.assert_close(weighted, plain)


def test_unknown_weighting_is_an_error():
    with pytest.raises(ValueError, match="weighting must be"):
        DiffusionLoss(Affine(), scheduler("epsilon"), weighting="snr")


def test_timestep_range_bounds_the_drawn_diffusion_times(tmp_path):
    stage = DiffusionStage(load_config(config_file(tmp_path, timestep_range=[600, 999])))
    times = torch.cat(
        [
            stage._diffusion_batch(torch.zeros(64, 4), None, torch.Generator().manual_seed(s))["timesteps"]
            for s in range(8)
        ]
    )
    assert times.min() >= 600 and times.max() <= 999
    assert len(times.unique()) > 100  # drawn over the range, not one value


def test_default_range_draws_what_earlier_runs_drew(tmp_path):
    # Configs without timestep_range must reproduce the batches of runs made before the option existed.
    stage = DiffusionStage(load_config(config_file(tmp_path)))
    drawn = stage._diffusion_batch(torch.zeros(32, 4), None, torch.Generator().manual_seed(3))["timesteps"]
    g = torch.Generator().manual_seed(3)
    torch.randn((32, 4), generator=g)
    assert torch.equal(drawn, torch.randint(1000, (32,), generator=g))


@pytest.mark.parametrize("bad", [[500, 400], [-1, 10], [0, 1000]])
def test_bad_timestep_range_names_the_key(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"train\.timestep_range: expected \[first, last\]"):
        load_config(config_file(tmp_path, timestep_range=bad))
