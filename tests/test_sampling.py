"""sample_latents: the one sampling loop -- per-video generators, callbacks, and the seam for per-call inputs."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from conftest import tiny_unet
from videoldm import VideoUNet
from videoldm.diffusion import ClassifierFreeGuidance, Conditioning, NoGuidance, sample_latents
from videoldm.diffusion.sampling import strength_start

SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def _toy_model(sample: torch.Tensor, t: torch.Tensor, *, encoder_hidden_states: torch.Tensor, context=None):
    """A batch-independent noise prediction that depends on the sample, the timestep and the text."""
    return 0.1 * sample + 0.01 * encoder_hidden_states.mean(dim=(1, 2)).reshape(-1, 1, 1, 1, 1) + t.float() * 1e-4


def _ddpm(steps: int = 4) -> DDPMScheduler:
    scheduler = DDPMScheduler(**SCHEDULE)  # its step draws fresh noise: a stochastic sampler
    scheduler.set_timesteps(steps)
    return scheduler


def test_a_list_of_generators_gives_each_video_its_own_noise_stream() -> None:
    text = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0))
    start = torch.randn(2, 4, 2, 4, 4, generator=torch.Generator().manual_seed(1))

    def run(rows: slice, seeds: list[int]) -> torch.Tensor:
        return sample_latents(
            _toy_model,
            _ddpm(),
            start[rows].clone(),
            cond=Conditioning(text=text[rows]),
            guider=NoGuidance(),
            generator=[torch.Generator().manual_seed(s) for s in seeds],
        )

    both = run(slice(0, 2), [10, 11])
    torch.testing.assert_close(both[0:1], run(slice(0, 1), [10]), atol=1e-6, rtol=0)
    torch.testing.assert_close(both[1:2], run(slice(1, 2), [11]), atol=1e-6, rtol=0)
    assert (run(slice(0, 2), [10, 12])[1] - both[1]).abs().max() > 1e-2  # the generator drives the step noise


def test_callback_can_replace_the_latents_and_progress_counts_steps() -> None:
    seen: list[int] = []

    class Bar:
        count = 0

        def update(self, n: int = 1) -> None:
            self.count += n

    def callback(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
        seen.append(i)
        return torch.zeros_like(latents) if i == 2 else None  # None keeps them

    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(3)
    bar = Bar()
    out = sample_latents(
        lambda z, t, **kw: torch.zeros_like(z),
        scheduler,
        torch.ones(1, 4, 2, 4, 4),
        cond=Conditioning(text=torch.zeros(1, 3, 8)),
        guider=NoGuidance(),
        callback=callback,
        progress=bar,
    )
    assert seen == [0, 1, 2] and bar.count == 3
    assert torch.equal(out, torch.zeros_like(out))


def test_per_call_inputs_go_through_a_closure_over_the_stacked_batch() -> None:
    """The upsampler's seam as the docstring shows it: low-resolution latents concatenated to the sample and a
    noise level as class labels, repeated over the guider's branches; the loop steps the VAE's 4 channels."""
    unet = VideoUNet.from_image_unet(tiny_unet(class_labels=True, extra_channels=4))
    b, n = 2, 2
    text = torch.randn(b, 5, 32, generator=torch.Generator().manual_seed(0))
    cond = Conditioning(text=text, negative_text=torch.zeros_like(text))
    noise = torch.randn(b, 4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    noise_level = torch.tensor([3, 7])
    batches: list[int] = []

    def upsample(low_res: torch.Tensor) -> torch.Tensor:
        def model(z: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
            repeats = z.shape[0] // b
            batches.append(z.shape[0])
            z = torch.cat([z, low_res.repeat(repeats, 1, 1, 1, 1)], dim=1)
            return unet(z, t, class_labels=noise_level.repeat(repeats), **kwargs).sample

        scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False)
        scheduler.set_timesteps(2)
        return sample_latents(model, scheduler, noise.clone(), cond=cond, guider=ClassifierFreeGuidance(3.0))

    low_res = torch.randn(b, 4, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    out = upsample(low_res)
    assert out.shape == noise.shape and batches == [n * b, n * b]
    assert (upsample(torch.zeros_like(low_res)) - out).abs().max() > 1e-4  # the low-res frames condition it


def test_start_runs_only_the_last_timesteps_and_strength_picks_them() -> None:
    """start = k: the same loop from timesteps[k] on (i counting from the first timestep) -- what running the
    whole schedule does from the state it reaches before step k, for a deterministic sampler."""
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(4)
    text = torch.zeros(1, 3, 8)
    states: dict[int, torch.Tensor] = {}

    def record(i: int, t: torch.Tensor, latents: torch.Tensor) -> None:
        states[i] = latents.clone()

    noise = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    kwargs = {"cond": Conditioning(text=text), "guider": NoGuidance()}
    full = sample_latents(_toy_model, scheduler, noise.clone(), callback=record, **kwargs)
    seen: list[int] = []
    late = sample_latents(_toy_model, scheduler, states[1], start=2, callback=lambda i, t, z: seen.append(i), **kwargs)
    assert seen == [2, 3] and torch.allclose(late, full, atol=1e-6)
    assert [strength_start(10, s) for s in (1.0, 0.5, 0.3, 0.01, 0.0)] == [0, 5, 7, 9, 10]  # 0: no step runs
    none = sample_latents(_toy_model, scheduler, states[1], start=4, **kwargs)
    assert torch.equal(none, states[1])
    for bad in (1.5, -1, -0.01, "0.5"):
        with pytest.raises(ValueError, match="strength must be in"):
            strength_start(10, bad)
