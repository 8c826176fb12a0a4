"""Reading and writing Video LDM model folders (the layout `VideoLDMPipeline.from_pretrained` reads).

unet/              the image UNet (diffusers UNet2DConditionModel)
temporal/          the temporal adapter (safetensors + config.json)
vae/               the image AutoencoderKL
text_encoder/      a transformers encoder, or builtin.json naming a packaged one
tokenizer/         its tokenizer (or the same builtin.json)
scheduler/         the noise schedule (any diffusers scheduler config)
temporal_decoder/  optional: temporal layers of the VAE decoder
interpolation/     optional: the interpolation model (`interpolation_part`, `pipelines.interpolate`)

The folder's parts are read into, and written from, a `VideoLDMComponents` (names from `videoldm.layout`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from videoldm import layout
from videoldm.autoencoder import VideoAutoencoder
from videoldm.loading import (
    check_model_dir,
    load_scheduler,
    load_stable_diffusion,
    load_text_encoder,
    read_builtin_marker,
    write_builtin_marker,
)
from videoldm.pipelines.components import VideoLDMComponents
from videoldm.video_unet import VideoUNet


def load_components(directory: str | Path, *, torch_dtype: torch.dtype, image_decoder: bool) -> VideoLDMComponents:
    """A Video LDM folder's parts (local files only). The autoencoder has the folder's decoder temporal layers
    when it has `temporal_decoder/` and `image_decoder` is False; otherwise none (the image decoder)."""
    folder = check_model_dir(directory, layout.VIDEO_LDM_PARTS)
    unet = VideoUNet.from_pretrained(folder, torch_dtype=torch_dtype).to(dtype=torch_dtype)
    vae = AutoencoderKL.from_pretrained(folder / layout.VAE, local_files_only=True, torch_dtype=torch_dtype).eval()
    text_encoder = load_text_encoder(folder / layout.TEXT_ENCODER, folder / layout.TOKENIZER)
    text_encoder.model.to(torch_dtype)
    return VideoLDMComponents(
        unet=unet,
        autoencoder=_autoencoder(vae, folder / layout.TEMPORAL_DECODER, image_decoder=image_decoder),
        text_encoder=text_encoder,
        scheduler=load_scheduler(folder / layout.SCHEDULER),
        text_encoder_marker=read_builtin_marker(folder / layout.TEXT_ENCODER),
    )


def _autoencoder(vae: AutoencoderKL, temporal: Path, *, image_decoder: bool) -> VideoAutoencoder:
    if image_decoder or not temporal.is_dir():
        return VideoAutoencoder.from_vae(vae, image_only=True)
    return VideoAutoencoder.from_vae(vae, temporal=temporal)


def stable_diffusion_components(
    directory: str | Path, *, torch_dtype: torch.dtype, **temporal_config: Any
) -> VideoLDMComponents:
    """An image LDM folder's parts with a fresh (identity-initialised) VideoUNet around its UNet and the image
    decoder (no decoder temporal layers)."""
    sd = load_stable_diffusion(directory, torch_dtype=torch_dtype)
    return VideoLDMComponents(
        unet=VideoUNet.from_image_unet(sd.unet, **temporal_config),
        autoencoder=VideoAutoencoder.from_vae(sd.vae, image_only=True),
        text_encoder=sd.text_encoder,
        scheduler=sd.scheduler,
        text_encoder_marker=read_builtin_marker(sd.folder / layout.TEXT_ENCODER),
    )


def save_components(components: VideoLDMComponents, directory: str | Path) -> Path:
    """Write `components` as a model folder: into a temporary sibling first, then renamed into place.
    `temporal_decoder/` only when the autoencoder has temporal layers."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        components.unet.save_pretrained(tmp)  # unet/ + temporal/
        components.autoencoder.vae.save_pretrained(tmp / layout.VAE, safe_serialization=True)
        _save_text_encoder(components, tmp)
        components.scheduler.save_pretrained(tmp / layout.SCHEDULER)
        if components.autoencoder.temporal is not None:
            components.autoencoder.save_temporal(tmp / layout.TEMPORAL_DECODER)
        _replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _save_text_encoder(components: VideoLDMComponents, folder: Path) -> None:
    """A packaged encoder as its builtin.json marker (with max_length); otherwise weights + tokenizer, with the
    tokenizer's model_max_length set to the encoder's max_length so that loading gives the same (B, L, D)."""
    encoder = components.text_encoder
    if components.text_encoder_marker is not None:
        write_builtin_marker(folder, {**components.text_encoder_marker, "max_length": encoder.max_length})
        return
    saved_length = encoder.tokenizer.model_max_length
    encoder.tokenizer.model_max_length = encoder.max_length
    try:
        encoder.save_pretrained(folder / layout.TEXT_ENCODER, folder / layout.TOKENIZER)
    finally:
        encoder.tokenizer.model_max_length = saved_length


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place, replacing an older one (the old one is removed last)."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def read_interpolation_config(part: Path) -> dict[str, Any]:
    """`interpolation/config.json` ({"num_frames": ..., "frame_strides": [...]}), or {} when absent."""
    path = part / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def interpolation_part(folder: Path) -> Path:
    """`folder / interpolation`, or a FileNotFoundError when it holds no interpolation model."""
    part = folder / layout.INTERPOLATION
    if not (part / layout.TEMPORAL).is_dir():
        raise FileNotFoundError(f"{folder} has no {layout.INTERPOLATION}/{layout.TEMPORAL}/ (no interpolation model)")
    return part
