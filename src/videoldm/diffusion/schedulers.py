"""Samplers by name: the diffusers schedulers a model folder's noise schedule can be sampled with."""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# name -> (class, options that make it the named sampler)
SAMPLERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": (EulerDiscreteScheduler, {}),
}

# Options of one scheduler class that another does not take; dropped so from_config stays quiet and exact.
_NOISE_SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "timestep_spacing",
    "steps_offset",
)


def make_scheduler(name: str, config: Any) -> SchedulerMixin:
    """The sampler `name` (one of SAMPLERS) on the noise schedule of `config` (any diffusers scheduler config)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {sorted(SAMPLERS)}")
    cls, options = SAMPLERS[name]
    schedule = {k: config[k] for k in _NOISE_SCHEDULE_KEYS if k in config}
    return cls(**{**schedule, **options})
