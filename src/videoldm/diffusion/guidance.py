"""Guidance: how the conditional and unconditional branches of one denoising step are batched and combined.

In the spirit of sgm's guiders, each guider is a tiny class with two halves that compose with any model and
sampler: `prepare` stacks the branches into ONE batch (one UNet call per step, however many branches), and
`combine` mixes the stacked predictions back into one. `guided_prediction(model, guider, ...)` runs both.

Branches are stacked on the batch axis in the order the guider names them, each of size B.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Conditioning:
    """What one denoising step is conditioned on.

    text: (B, L, D) prompt embeddings. negative_text: (B, L, D) embeddings of the negative (or empty) prompt,
    needed by text guidance. context: (B, C+1, T, h, w) = (mask * clean latents, mask) for prediction models.
    """

    text: torch.Tensor | None
    negative_text: torch.Tensor | None = None
    context: torch.Tensor | None = None


@dataclass
class ModelInputs:
    """The stacked batch a guider feeds the model: sample (N*B, C, T, h, w), text (N*B, L, D), context or None;
    temporal_text (N*B, L, D): the temporal layers' own text where it differs from `encoder_hidden_states`."""

    sample: torch.Tensor
    encoder_hidden_states: torch.Tensor | None
    context: torch.Tensor | None
    temporal_text: torch.Tensor | None = None


class Guider(Protocol):
    """Stack branches into one batch, and combine the model's stacked output (N*B, ...) into (B, ...)."""

    num_branches: int

    def prepare(self, sample: torch.Tensor, cond: Conditioning) -> ModelInputs: ...

    def combine(self, output: torch.Tensor) -> torch.Tensor: ...


def _stack(*parts: torch.Tensor | None) -> torch.Tensor | None:
    return None if parts[0] is None else torch.cat(parts, dim=0)


def _require(tensor: torch.Tensor | None, what: str, guider: str) -> torch.Tensor:
    if tensor is None:
        raise ValueError(f"{guider} needs {what}; got None")
    return tensor


class NoGuidance:
    """One branch, the conditional prediction as is."""

    num_branches = 1

    def prepare(self, sample: torch.Tensor, cond: Conditioning) -> ModelInputs:
        return ModelInputs(sample=sample, encoder_hidden_states=cond.text, context=cond.context)

    def combine(self, output: torch.Tensor) -> torch.Tensor:
        return output


class ClassifierFreeGuidance:
    """Text classifier-free guidance: f = f(z; neg) + scale * (f(z; text) - f(z; neg)).

    Branches: [negative text, text]; any context is given to both. scale = 1 gives the conditional prediction.
    """

    num_branches = 2

    def __init__(self, scale: float) -> None:
        self.scale = float(scale)

    def prepare(self, sample: torch.Tensor, cond: Conditioning) -> ModelInputs:
        text = _require(cond.text, "text embeddings", "ClassifierFreeGuidance")
        negative = _require(cond.negative_text, "negative_text embeddings", "ClassifierFreeGuidance")
        return ModelInputs(
            sample=torch.cat([sample, sample]),
            encoder_hidden_states=torch.cat([negative, text]),
            context=_stack(cond.context, cond.context),
        )

    def combine(self, output: torch.Tensor) -> torch.Tensor:
        uncond, cond = output.chunk(2)
        return uncond + self.scale * (cond - uncond)


class ContextGuidance:
    """Context guidance for prediction models (PAPER.md section 4): f = f(z) + scale * (f(z; c_S) - f(z)).

    The unconditional branch has no context frames. It is fed an all-zero context, which the bias-free context
    encoder maps to all-zero features -- the same input as `context=None` (S = 0 in training) -- so both
    branches share one UNet call.

    With `text_scale`, text guidance composes (three branches [neg text, no context], [text, no context],
    [text, context]):  f = f_u + text_scale * (f_t - f_u) + scale * (f_tc - f_t).
    """

    def __init__(self, scale: float, *, text_scale: float | None = None) -> None:
        self.scale = float(scale)
        self.text_scale = None if text_scale is None else float(text_scale)

    @property
    def num_branches(self) -> int:
        return 2 if self.text_scale is None else 3

    def prepare(self, sample: torch.Tensor, cond: Conditioning) -> ModelInputs:
        context = _require(cond.context, "a context (B, C+1, T, h, w)", "ContextGuidance")
        empty = torch.zeros_like(context)
        if self.text_scale is None:
            return ModelInputs(
                sample=torch.cat([sample, sample]),
                encoder_hidden_states=_stack(cond.text, cond.text),
                context=torch.cat([empty, context]),
            )
        text = _require(cond.text, "text embeddings", "ContextGuidance with text_scale")
        negative = _require(cond.negative_text, "negative_text embeddings", "ContextGuidance with text_scale")
        return ModelInputs(
            sample=torch.cat([sample, sample, sample]),
            encoder_hidden_states=torch.cat([negative, text, text]),
            context=torch.cat([empty, empty, context]),
        )

    def combine(self, output: torch.Tensor) -> torch.Tensor:
        if self.text_scale is None:
            no_context, with_context = output.chunk(2)
            return no_context + self.scale * (with_context - no_context)
        uncond, text, text_context = output.chunk(3)
        return uncond + self.text_scale * (text - uncond) + self.scale * (text_context - text)


class MotionGuidance:
    """Text guidance with its own scale for what the temporal layers take from the prompt (the motion).

    Three branches: [negative text everywhere], [text in the spatial layers, negative text in the temporal
    ones], [text everywhere]:  f = f_u + scale * (f_s - f_u) + motion_scale * (f_st - f_s). The last difference
    is what the prompt changes through the temporal layers alone -- in the shapes world, the direction word;
    in plain text guidance it is a small part of (f_st - f_u) beside what the words change in every frame (colour,
    shape). motion_scale = scale is plain `ClassifierFreeGuidance(scale)` (at 1.5x the compute). The same
    composition as `ContextGuidance` with `text_scale`, and as InstructPix2Pix's image and text scales.
    """

    num_branches = 3

    def __init__(self, scale: float, motion_scale: float) -> None:
        self.scale = float(scale)
        self.motion_scale = float(motion_scale)

    def prepare(self, sample: torch.Tensor, cond: Conditioning) -> ModelInputs:
        text = _require(cond.text, "text embeddings", "MotionGuidance")
        negative = _require(cond.negative_text, "negative_text embeddings", "MotionGuidance")
        return ModelInputs(
            sample=torch.cat([sample, sample, sample]),
            encoder_hidden_states=torch.cat([negative, text, text]),
            context=_stack(cond.context, cond.context, cond.context),
            temporal_text=torch.cat([negative, negative, text]),
        )

    def combine(self, output: torch.Tensor) -> torch.Tensor:
        uncond, spatial, both = output.chunk(3)
        return uncond + self.scale * (spatial - uncond) + self.motion_scale * (both - spatial)


def text_guidance(scale: float) -> Guider:
    """ClassifierFreeGuidance(scale) when it changes anything (scale > 1), else NoGuidance (half the compute)."""
    return ClassifierFreeGuidance(scale) if scale > 1.0 else NoGuidance()


def context_guider(context_scale: float, text_scale: float | None = None) -> Guider:
    """The guider of a model given context frames: `ContextGuidance` when context_scale != 1 (text guidance
    composed when `text_scale` > 1), else text guidance or none -- the context then goes to every branch."""
    text_scale = text_scale if text_scale is not None and text_scale > 1 else None
    if context_scale != 1:
        return ContextGuidance(context_scale, text_scale=text_scale)
    return NoGuidance() if text_scale is None else ClassifierFreeGuidance(text_scale)


def guided_prediction(
    model: Callable[..., torch.Tensor],
    guider: Guider,
    sample: torch.Tensor,
    timestep: torch.Tensor | float | int,
    cond: Conditioning,
) -> torch.Tensor:
    """One guided model prediction. sample: (B, C, T, h, w) -> (B, C_out, T, h, w).

    `model(sample, timestep, encoder_hidden_states=..., context=...)` returns a tensor; it is called once on
    the guider's stacked batch (N*B, ...).
    """
    inputs = guider.prepare(sample, cond)
    extra = {} if inputs.temporal_text is None else {"temporal_encoder_hidden_states": inputs.temporal_text}
    output = model(
        inputs.sample, timestep, encoder_hidden_states=inputs.encoder_hidden_states, context=inputs.context, **extra
    )
    if output.shape[0] != sample.shape[0] * guider.num_branches:
        raise ValueError(
            f"the model returned batch {output.shape[0]}, expected {guider.num_branches} branches x {sample.shape[0]}"
        )
    return guider.combine(output)
