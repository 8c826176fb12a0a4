"""Sampling pieces that compose: guidance (how branches are batched and mixed), the one sampling loop
(`sample_latents`) and samplers by name."""

from videoldm.diffusion.guidance import (
    ClassifierFreeGuidance,
    Conditioning,
    ContextGuidance,
    Guider,
    ModelInputs,
    MotionGuidance,
    NoGuidance,
    context_guider,
    guided_prediction,
    text_guidance,
)
from videoldm.diffusion.sampling import Denoiser, StepCallback, sample_latents
from videoldm.diffusion.schedulers import SAMPLERS, make_scheduler

__all__ = [
    "SAMPLERS",
    "ClassifierFreeGuidance",
    "Conditioning",
    "ContextGuidance",
    "Denoiser",
    "Guider",
    "ModelInputs",
    "MotionGuidance",
    "NoGuidance",
    "StepCallback",
    "context_guider",
    "guided_prediction",
    "make_scheduler",
    "sample_latents",
    "text_guidance",
]
