"""The sampling loop: one function that every Video LDM pipeline calls (text-to-video now; prediction,
interpolation and upsampling later), as sgm's sampler takes a guider.

What changes between those pipelines is passed in, not written into the loop:
- the conditioning (`Conditioning`: text, negative text, context frames) and how its branches are batched and
  mixed (`Guider`, `videoldm.diffusion.guidance`);
- the model, a callable `model(sample, t, *, encoder_hidden_states, context) -> prediction` that the caller
  builds (a closure or `functools.partial`) around its network -- the place for per-call inputs the loop does
  not know about (see `sample_latents`);
- the scheduler (any diffusers scheduler: `scale_model_input` / `step`), whose timesteps the caller sets.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from videoldm.diffusion.guidance import Conditioning, Guider, guided_prediction

Denoiser = Callable[..., torch.Tensor]
"""model(sample (N*B, C_in, T, h, w), t, *, encoder_hidden_states (N*B, L, D) | None, context | None)
-> prediction (N*B, C, T, h, w), C = the latents' channels."""

Generator = torch.Generator | list[torch.Generator] | None
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]
"""callback(step_index, timestep, latents (B, C, T, h, w)) -> replacement latents, or None to keep them."""


class Progress(Protocol):
    """What the loop needs of a progress bar (tqdm has it): one `update()` per step."""

    def update(self, n: int = 1) -> Any: ...


def step_kwargs(scheduler: SchedulerMixin, generator: Generator) -> dict[str, Any]:
    """The generator (one, or a list of B, one per video) for schedulers whose `step` draws noise, as diffusers'
    `prepare_extra_step_kwargs`: their `randn_tensor` draws video i's noise from generator i, so a video gets
    the same noise in a batch as alone."""
    accepts = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in accepts and generator is not None else {}


def strength_start(num_inference_steps: int, strength: float, *, name: str = "strength") -> int:
    """The first timestep index run for img2img `strength` in [0, 1] (diffusers' `get_timesteps`): the last
    max(1, round(strength * num_inference_steps)) steps run; strength 1 runs them all (start 0), strength 0 none
    (start `num_inference_steps`: the caller's start is its result). A ValueError naming the argument `name`
    otherwise."""
    if not isinstance(strength, int | float) or not 0 <= strength <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {strength!r}")
    if strength == 0:
        return num_inference_steps
    return num_inference_steps - max(1, round(strength * num_inference_steps))


Strength = float | Sequence[float] | None


def pass_strengths(strength: Strength, defaults: Sequence[float], *, name: str = "strength") -> list[float]:
    """The strength of each of len(`defaults`) passes (interpolation's x4 passes): None -> `defaults`, a number ->
    every pass, a sequence -> one per pass; each in [0, 1] (`strength_start`). A ValueError naming `name`."""
    passes = len(defaults)
    if strength is None:
        return list(defaults)
    values = [strength] * passes if isinstance(strength, int | float) else list(strength)
    if len(values) != passes:
        raise ValueError(f"{name} takes one value or {passes} (one per pass), got {values}")
    for value in values:
        strength_start(1, value, name=name)  # the range check
    return [float(value) for value in values]


@torch.no_grad()
def sample_latents(
    model: Denoiser,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    *,
    cond: Conditioning,
    guider: Guider,
    generator: Generator = None,
    callback: StepCallback | None = None,
    progress: Progress | None = None,
    start: int = 0,
) -> torch.Tensor:
    """Denoise `latents` (B, C, T, h, w) over `scheduler.timesteps` -> clean latents (B, C, T, h, w).

    The caller sets the timesteps (`scheduler.set_timesteps`) and draws `latents` already multiplied by
    `scheduler.init_noise_sigma`: that sigma depends on the timesteps (Euler), and the initial noise is the
    caller's (seeded, given, or partly clean frames).

    Each step: `scheduler.scale_model_input`, one call of `model` on the guider's stacked batch (N*B: the N
    branches stacked on the batch axis, each of size B, in the guider's order), `guider.combine`, then
    `scheduler.step` with `generator` when the scheduler draws noise (a list: one generator per video).

    Per-call inputs the loop does not know about go into `model`, built by the caller, which receives the
    stacked batch and so repeats a per-video input N times (`x.repeat(sample.shape[0] // B, ...)`, the order
    of `guider.prepare`), e.g. an upsampler's
        model = lambda z, t, **kw: unet(torch.cat([z, low_res.repeat(z.shape[0] // b, 1, 1, 1, 1)], dim=1),
                                        t, class_labels=noise_level.repeat(z.shape[0] // b), **kw).sample
    (low-resolution latents (B, C', T, h, w) concatenated to the scaled sample, as diffusers' x4 upscaler;
    the model still returns C channels, those of the latents the scheduler steps).

    callback(i, t, latents) runs after step i and may return latents to continue from; `progress.update()`
    runs once per step.

    start > 0 skips the first `start` timesteps: `latents` are already noised to `scheduler.timesteps[start]`
    (diffusers' img2img `strength`); i still counts from the first timestep.
    """
    extra = step_kwargs(scheduler, generator)
    if start and hasattr(scheduler, "set_begin_index"):  # schedulers that keep a step index (Euler) begin there
        scheduler.set_begin_index(start)
    for i, t in enumerate(scheduler.timesteps[start:], start=start):
        model_input = scheduler.scale_model_input(latents, t)
        prediction = guided_prediction(model, guider, model_input, t, cond)
        latents = scheduler.step(prediction, t, latents, **extra).prev_sample
        if callback is not None:
            replaced = callback(i, t, latents)
            latents = latents if replaced is None else replaced
        if progress is not None:
            progress.update()
    return latents


class GivenFrames:
    """Frames a sampler is given (a prediction's first frames, an interpolation's every 4th): held at each step's
    noise level -- what the model saw in training, where the whole clip is noised and the context holds the clean
    frames -- and exactly clean after the last step.

    clean: (B, C, T, h, w) latents (only the given frames are read); mask: (T,) bool, True where given; noise:
    (B, C, T, h, w), the noise the sampler starts from (the given frames are noised with their part of it).
    """

    def __init__(self, scheduler: SchedulerMixin, clean: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> None:
        self.scheduler = scheduler
        self.clean = clean
        self.mask = mask.to(clean.device)[None, None, :, None, None]
        self.noise = noise

    def at(self, latents: torch.Tensor, index: int) -> torch.Tensor:
        """`latents` with the given frames at the noise level of `scheduler.timesteps[index]` (clean past the end)."""
        timesteps = self.scheduler.timesteps
        if index >= len(timesteps):
            given = self.clean
        else:
            given = self.scheduler.add_noise(self.clean, self.noise, timesteps[index].expand(self.clean.shape[0]))
        return torch.where(self.mask, given.to(latents.dtype), latents)

    def callback(self, i: int, _t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The `sample_latents` callback: after step i, the given frames at step i + 1's level."""
        return self.at(latents, i + 1)
