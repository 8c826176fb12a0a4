"""Reading and writing Video LDM model folders (the layout `VideoLDMPipeline.from_pretrained` reads).

unet/              the image UNet (diffusers UNet2DConditionModel)
temporal/          the temporal adapter (safetensors + config.json)
vae/               the image AutoencoderKL
text_encoder/      a transformers encoder, or builtin.json naming a packaged one
tokenizer/         its tokenizer (or the same builtin.json)
scheduler/         the noise schedule (any diffusers scheduler config)
temporal_decoder/  optional: temporal layers of the VAE decoder
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import AutoencoderKL

from videoldm.loading import (
    check_model_dir,
    load_scheduler,
    load_stable_diffusion,
    load_text_encoder,
    read_builtin_marker,
    write_builtin_marker,
)
from videoldm.video_unet import VideoUNet

if TYPE_CHECKING:
    from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline

PIPELINE_PARTS = ("unet", "temporal", "vae", "text_encoder", "tokenizer", "scheduler")
TEMPORAL_DECODER_DIR = "temporal_decoder"


def load_components(directory: str | Path, *, torch_dtype: torch.dtype, image_decoder: bool) -> dict[str, Any]:
    """The pipeline's constructor arguments from a Video LDM folder (local files only)."""
    folder = check_model_dir(directory, PIPELINE_PARTS)
    unet = VideoUNet.from_pretrained(folder, torch_dtype=torch_dtype).to(dtype=torch_dtype)
    vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True, torch_dtype=torch_dtype).eval()
    text_encoder = load_text_encoder(folder / "text_encoder", folder / "tokenizer")
    text_encoder.model.to(torch_dtype)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "scheduler": load_scheduler(folder / "scheduler"),
        "temporal_decoder": None if image_decoder else _load_temporal_decoder(vae, folder / TEMPORAL_DECODER_DIR),
        "text_encoder_marker": read_builtin_marker(folder / "text_encoder"),
    }


def _load_temporal_decoder(vae: AutoencoderKL, directory: Path) -> Any | None:
    """The video autoencoder on `vae` when the folder has trained decoder layers; imported only then."""
    if not directory.is_dir():
        return None
    from videoldm.autoencoder import load_video_autoencoder

    return load_video_autoencoder(vae, directory)


def stable_diffusion_components(
    directory: str | Path, *, torch_dtype: torch.dtype, **temporal_config: Any
) -> dict[str, Any]:
    """An image LDM folder's parts with a fresh (identity-initialised) VideoUNet around its UNet."""
    sd = load_stable_diffusion(directory, torch_dtype=torch_dtype)
    return {
        "unet": VideoUNet.from_image_unet(sd.unet, **temporal_config),
        "vae": sd.vae,
        "text_encoder": sd.text_encoder,
        "scheduler": sd.scheduler,
        "text_encoder_marker": read_builtin_marker(sd.folder / "text_encoder"),
    }


def save_components(pipe: VideoLDMPipeline, directory: str | Path) -> Path:
    """Write `pipe` as a model folder: into a temporary sibling first, then renamed into place."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        pipe.unet.save_pretrained(tmp)  # unet/ + temporal/
        pipe.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        _save_text_encoder(pipe, tmp)
        pipe.scheduler.save_pretrained(tmp / "scheduler")
        decoder = pipe.temporal_decoder
        if decoder is not None and getattr(decoder, "temporal", None) is not None:
            decoder.save_temporal(tmp / TEMPORAL_DECODER_DIR)
        _replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _save_text_encoder(pipe: VideoLDMPipeline, folder: Path) -> None:
    """A packaged encoder as its builtin.json marker (with max_length); otherwise weights + tokenizer, with the
    tokenizer's model_max_length set to the encoder's max_length so that loading gives the same (B, L, D)."""
    encoder = pipe.text_encoder
    if pipe.text_encoder_marker is not None:
        write_builtin_marker(folder, {**pipe.text_encoder_marker, "max_length": encoder.max_length})
        return
    saved_length = encoder.tokenizer.model_max_length
    encoder.tokenizer.model_max_length = encoder.max_length
    try:
        encoder.save_pretrained(folder / "text_encoder", folder / "tokenizer")
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
