"""Samplers by name: the diffusers schedulers a model folder's noise schedule can be sampled with."""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin


class Sampler:
    """A diffusers scheduler class, the options that make it this sampler, and defaults for options a
    config of another scheduler class lacks (latent diffusion's: no clipping of the predicted x0)."""

    def __init__(self, cls: type[SchedulerMixin], options: dict[str, Any], defaults: dict[str, Any]) -> None:
        self.cls = cls
        self.options = options
        self.defaults = defaults


SAMPLERS: dict[str, Sampler] = {
    "ddim": Sampler(DDIMScheduler, {}, {"clip_sample": False, "set_alpha_to_one": False}),
    "dpm++": Sampler(DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, {}),
    "euler": Sampler(EulerDiscreteScheduler, {}, {}),
}


def make_scheduler(name: str, config: Any) -> SchedulerMixin:
    """The sampler `name` (one of SAMPLERS) on the noise schedule of `config` (any diffusers scheduler config:
    betas, prediction type, timestep spacing carry over, as when swapping schedulers in diffusers)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {sorted(SAMPLERS)}")
    sampler = SAMPLERS[name]
    return sampler.cls.from_config({**sampler.defaults, **dict(config)}, **sampler.options)
