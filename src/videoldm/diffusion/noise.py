"""Noise shared by the frames of a clip: the mixed noise prior of PYoCo (Ge et al., "Preserve Your Own
Correlation", 2023).

A video model trained on i.i.d. noise starts each frame from an unrelated sample; at the highest noise levels the
frames' denoised guesses then put the object in different places, and the temporal layers, asked to reconcile
them, can keep both (`docs/keyframes-identity.md`, session 21: the key frames' second copies are decided in the
first three of 15 steps). A shared component makes the frames' starting points agree. Training and sampling must
use the same correlation: it changes the noise the model learns to predict.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

from videoldm.diffusion.sampling import Generator


def check_noise_correlation(value: float, *, name: str = "noise_correlation") -> float:
    """`value` as a float if the prior can take it, in [0, 1) (at 1 every frame would start from the same noise), else
    a ValueError naming `name`: the one range check of every entry point (layers' config, CLI, ship script)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def sampling_correlation(unet: object, *, image_only: bool = False) -> float:
    """The correlation a sampler draws a clip's noise with unless told otherwise: the temporal layers' recorded prior
    (`VideoUNet.noise_correlation`); 0 for the image-only baseline (frame by frame) and for a model without one."""
    return 0.0 if image_only else float(getattr(unet, "noise_correlation", 0.0))


def correlate_frames(noise: torch.Tensor, correlation: float, *, generator: Generator = None) -> torch.Tensor:
    """i.i.d. N(0, 1) noise (B, C, T, h, w) -> sqrt(a) * shared + sqrt(1 - a) * noise, a = `correlation`, with
    shared (B, C, 1, h, w) drawn from `generator` (one, or a list of B as in diffusers' `randn_tensor`).

    Every element stays N(0, 1) and two frames' noise correlate by a. a = 0 returns `noise` itself and draws
    nothing, so runs without the prior keep their random streams bit for bit."""
    if check_noise_correlation(correlation, name="noise correlation") == 0.0:
        return noise
    if noise.ndim != 5:
        raise ValueError(f"noise must be (B, C, T, h, w), got shape {tuple(noise.shape)}")
    b, c, _, h, w = noise.shape
    shared = randn_tensor((b, c, 1, h, w), generator=generator, device=noise.device, dtype=noise.dtype)
    return correlation**0.5 * shared + (1.0 - correlation) ** 0.5 * noise
