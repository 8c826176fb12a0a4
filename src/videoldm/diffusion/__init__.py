"""Sampling pieces that compose: guidance (how branches are batched and mixed) and samplers by name."""

from videoldm.diffusion.guidance import (
    ClassifierFreeGuidance,
    Conditioning,
    ContextGuidance,
    Guider,
    ModelInputs,
    NoGuidance,
    guided_prediction,
    text_guidance,
)
from videoldm.diffusion.schedulers import SAMPLERS, make_scheduler

__all__ = [
    "SAMPLERS",
    "ClassifierFreeGuidance",
    "Conditioning",
    "ContextGuidance",
    "Guider",
    "ModelInputs",
    "NoGuidance",
    "guided_prediction",
    "make_scheduler",
    "text_guidance",
]
