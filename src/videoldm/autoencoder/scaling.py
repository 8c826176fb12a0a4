"""The latent scale: VAE posterior latents <-> the latents the diffusion model sees, in one place.

latents = (z - shift_factor) * scaling_factor, as diffusers' pipelines do (shift_factor only where the VAE's
config has one). A leaf module: the autoencoder, the pipelines and the training cache all use it.
"""

from __future__ import annotations

from typing import Any

import torch


def _shift(vae_config: Any) -> float:
    return getattr(vae_config, "shift_factor", None) or 0.0


def scale_latents(z: torch.Tensor, vae_config: Any) -> torch.Tensor:
    """VAE latents (any shape) -> diffusion latents."""
    return (z - _shift(vae_config)) * vae_config.scaling_factor


def unscale_latents(latents: torch.Tensor, vae_config: Any) -> torch.Tensor:
    """Diffusion latents (any shape) -> what the VAE's decoder (post_quant_conv) takes."""
    return latents / vae_config.scaling_factor + _shift(vae_config)
