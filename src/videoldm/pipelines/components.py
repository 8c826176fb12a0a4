"""The parts a Video LDM pipeline is built from, as one typed record.

`videoldm.pipelines.folders` reads and writes them as a model folder; a pipeline is built from them
(`VideoLDMPipeline.from_components(c)`, or `VideoLDMPipeline(**vars(c))`) and gives them back
(`pipe.components`). Kept apart from the pipeline so that loading and saving need not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusers.schedulers.scheduling_utils import SchedulerMixin

from videoldm.autoencoder import VideoAutoencoder
from videoldm.text import TextEncoder
from videoldm.video_unet import VideoUNet


@dataclass
class VideoLDMComponents:
    """unet: the `VideoUNet` (image UNet + temporal layers).
    autoencoder: the `VideoAutoencoder` that decodes scaled latents (B, c, T, h, w) to videos (B, 3, T, H, W):
        with trained decoder temporal layers, or without (`VideoAutoencoder.from_vae(vae, image_only=True)`:
        the image VAE frame by frame). Its `.vae` is the image `AutoencoderKL`.
    text_encoder: prompts (B strings) -> (B, L, D); a `TextEncoder` (or anything with that call and `.to`).
    scheduler: any diffusers scheduler with `set_timesteps` / `scale_model_input` / `step`.
    text_encoder_marker: the `builtin.json` contents when the text encoder ships inside a package, so that
        saving writes the marker instead of the weights; None otherwise.
    """

    unet: VideoUNet
    autoencoder: VideoAutoencoder
    text_encoder: TextEncoder
    scheduler: SchedulerMixin
    text_encoder_marker: dict[str, Any] | None = None
