"""The names of a model folder's parts: the one place they are spelled.

A Stable Diffusion folder (diffusers layout) holds `unet/`, `vae/`, `text_encoder/`, `tokenizer/` and
`scheduler/`; a Video LDM folder adds `temporal/` (the UNet's temporal layers) and optionally
`temporal_decoder/` (the VAE decoder's). A leaf module: everything may import it, it imports nothing of ours.
"""

from __future__ import annotations

UNET = "unet"
TEMPORAL = "temporal"
VAE = "vae"
TEMPORAL_DECODER = "temporal_decoder"
TEXT_ENCODER = "text_encoder"
TOKENIZER = "tokenizer"
SCHEDULER = "scheduler"

STABLE_DIFFUSION_PARTS: tuple[str, ...] = (UNET, VAE, TEXT_ENCODER, TOKENIZER, SCHEDULER)
VIDEO_LDM_PARTS: tuple[str, ...] = (UNET, TEMPORAL, VAE, TEXT_ENCODER, TOKENIZER, SCHEDULER)
OPTIONAL_PARTS: tuple[str, ...] = (TEMPORAL_DECODER,)

# Inside each part: diffusers' file names, shared by the backbones and the temporal adapters.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
