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
# The video upsampler (PAPER.md section 6), a model of its own inside a model folder: upsampler/unet/,
# upsampler/temporal/ (absent for an image upsampler), upsampler/scheduler/, upsampler/low_res_scheduler/.
UPSAMPLER = "upsampler"
LOW_RES_SCHEDULER = "low_res_scheduler"
# The interpolation model (PAPER.md section 5): interpolation/temporal/ (its temporal layers, context encoder and
# task condition on the folder's unet/, which it shares), interpolation/scheduler/, interpolation/config.json.
INTERPOLATION = "interpolation"
OPTIONAL_PARTS: tuple[str, ...] = (TEMPORAL_DECODER, UPSAMPLER, INTERPOLATION)
# A personalised folder (the dreambooth stage's export) says what it learned: {"instance_prompt": ..., ...}.
PERSONALISATION = "personalisation.json"
# A Video LDM folder whose temporal/ layers also predict (continue a clip from its last frames): the rollout's clip.
PREDICTION = "prediction.json"

# Inside each part: diffusers' file names, shared by the backbones and the temporal adapters.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
