"""Loading model folders in diffusers layout from disk (local files only, never a hub download).

A Stable Diffusion folder holds `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`; a Video LDM
folder adds `temporal/` (the temporal adapter) and optionally `temporal_decoder/`. The text encoder folder may
hold a `builtin.json` ({"builtin": NAME, "max_length": L}) instead of weights, naming an encoder shipped inside
an installed package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from videoldm import layout
from videoldm.layout import STABLE_DIFFUSION_PARTS
from videoldm.text import BUILTIN_FILE, BUILTIN_MAX_LENGTH, TextEncoder

SCHEDULER_CONFIG = "scheduler_config.json"


@dataclass
class StableDiffusionComponents:
    """The parts of an image LDM folder: UNet, VAE, text encoder (with its tokenizer) and noise scheduler."""

    folder: Path
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: TextEncoder
    scheduler: SchedulerMixin


def check_model_dir(path: str | Path, parts: tuple[str, ...] = STABLE_DIFFUSION_PARTS) -> Path:
    """`path` as a Path; a FileNotFoundError naming the folder and the first missing subfolder otherwise."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    for part in parts:
        if not (folder / part).is_dir():
            raise FileNotFoundError(f"model folder {folder} has no {part}/ subfolder (expected {', '.join(parts)})")
    return folder


def read_config(folder: Path, name: str = "config.json") -> dict[str, Any]:
    """A JSON config of a model subfolder, with a clear error when missing or malformed."""
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"missing config file {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def load_scheduler(folder: str | Path) -> SchedulerMixin:
    """The diffusers scheduler saved in `folder` (its `_class_name`; DDIM when the config names none)."""
    folder = Path(folder)
    name = read_config(folder, SCHEDULER_CONFIG).get("_class_name", "DDIMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(f"{folder / SCHEDULER_CONFIG}: unknown scheduler class {name!r}")
    return cls.from_pretrained(folder)


def read_builtin_marker(folder: str | Path) -> dict[str, Any] | None:
    """The `builtin.json` of a text encoder folder ({"builtin": NAME, "max_length": L}), or None."""
    marker = Path(folder) / BUILTIN_FILE
    if not marker.is_file():
        return None
    data = json.loads(marker.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("builtin"), str):
        raise ValueError(f'{marker}: expected {{"builtin": NAME}}, got {data!r}')
    return data


def write_builtin_marker(model_dir: str | Path, marker: dict[str, Any]) -> None:
    """`text_encoder/` and `tokenizer/` holding `builtin.json` ({"builtin": NAME, "max_length": L})."""
    for sub in (layout.TEXT_ENCODER, layout.TOKENIZER):
        (Path(model_dir) / sub).mkdir(parents=True, exist_ok=True)
        (Path(model_dir) / sub / BUILTIN_FILE).write_text(json.dumps(marker) + "\n")


def load_text_encoder(text_encoder_dir: str | Path, tokenizer_dir: str | Path | None = None) -> TextEncoder:
    """A `TextEncoder` from a folder with weights (+ tokenizer folder), or from a `builtin.json` marker.

    A builtin encoder runs at the marker's `max_length` (default `BUILTIN_MAX_LENGTH`); a folder with weights at
    its tokenizer's `model_max_length`, capped at 77 (CLIP's length in Stable Diffusion).
    """
    marker = read_builtin_marker(text_encoder_dir)
    if marker is not None:
        return TextEncoder.builtin(marker["builtin"], max_length=int(marker.get("max_length", BUILTIN_MAX_LENGTH)))
    return TextEncoder.from_pretrained(text_encoder_dir, tokenizer_dir)


def load_stable_diffusion(path: str | Path, *, torch_dtype: torch.dtype = torch.float32) -> StableDiffusionComponents:
    """Load a Stable Diffusion folder in diffusers layout from disk (local files only).

    Weights are cast to `torch_dtype` (float32 by default: fp16 files run on CPU too).
    """
    folder = check_model_dir(path)
    unet = UNet2DConditionModel.from_pretrained(folder / layout.UNET, local_files_only=True, torch_dtype=torch_dtype)
    vae = AutoencoderKL.from_pretrained(folder / layout.VAE, local_files_only=True, torch_dtype=torch_dtype)
    text_encoder = load_text_encoder(folder / layout.TEXT_ENCODER, folder / layout.TOKENIZER)
    text_encoder.model.to(torch_dtype)
    return StableDiffusionComponents(
        folder=folder,
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder,
        scheduler=load_scheduler(folder / layout.SCHEDULER),
    )


@dataclass(frozen=True)
class ModelGeometry:
    """Sizes read from a model folder's configs without loading weights.

    vae_scale_factor: pixels per latent pixel; num_down_blocks: UNet resolution levels; sample_size: the UNet's
    default latent size; latent_channels: C of the latents (B, C, T, h, w) -- the VAE's, which the sampler's
    noise has and the UNet predicts (its out_channels); a UNet may take more input channels (an upsampler's
    low-resolution frames concatenated to the latents).
    """

    vae_scale_factor: int
    num_down_blocks: int
    sample_size: int
    latent_channels: int

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: every UNet level halves the latents."""
        return self.vae_scale_factor * 2 ** (self.num_down_blocks - 1)

    @property
    def default_size(self) -> int:
        return self.sample_size * self.vae_scale_factor

    def check_size(self, name: str, value: int) -> None:
        """A ValueError naming `name` unless `value` (a height or width in pixels) is a positive multiple of
        `size_multiple`: what the pipeline and the CLI both check before sampling."""
        multiple = self.size_multiple
        if not isinstance(value, int) or value < multiple or value % multiple:
            raise ValueError(
                f"{name} must be a positive multiple of {multiple} for this model (VAE factor "
                f"{self.vae_scale_factor} x 2^{self.num_down_blocks - 1} UNet downsamplings), got {value!r}"
            )

    @classmethod
    def of(cls, unet_config: Any, vae_config: Any) -> ModelGeometry:
        """From the (dict-like) configs of a UNet2DConditionModel and an AutoencoderKL."""
        sample_size = unet_config["sample_size"]
        return cls(
            vae_scale_factor=2 ** (len(vae_config["block_out_channels"]) - 1),
            num_down_blocks=len(unet_config["down_block_types"]),
            sample_size=int(sample_size[0] if isinstance(sample_size, list | tuple) else sample_size),
            latent_channels=int(vae_config["latent_channels"]),
        )

    @classmethod
    def read(cls, path: str | Path) -> ModelGeometry:
        """From the JSON configs of `path/unet/` and `path/vae/` (cheap: validate sizes before loading)."""
        folder = Path(path)
        return cls.of(read_config(folder / layout.UNET), read_config(folder / layout.VAE))
