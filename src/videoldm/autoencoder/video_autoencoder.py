"""VideoAutoencoder: a diffusers AutoencoderKL whose decoder gains temporal layers (PAPER.md section 3).

The image VAE is kept untouched as `video_ae.vae` -- encoder, quant convs, latent space and every decoder
parameter keep their exact diffusers names, so Stable Diffusion VAE weights load as they are -- and the
temporal layers live in `video_ae.temporal` (a `TemporalDecoderAdapter`). As in `VideoUNet`, forward hooks on
the decoder's ResNet blocks, mid attention and `conv_out` apply the temporal layer right after its spatial twin
during a video decode, and do nothing otherwise, so `video_ae.vae` still works as the image VAE.

Latents: `encode` returns the posterior mean (deterministic; `sample=True` draws from the posterior instead),
shifted by `vae.config.shift_factor` when the VAE has one and multiplied by `vae.config.scaling_factor` --
the latents the diffusion model sees. `decode` undoes that scaling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from torch import nn
from torch.utils.checkpoint import checkpoint

from videoldm.autoencoder.chunked_decode import decode_in_chunks, default_overlap
from videoldm.autoencoder.temporal_decoder import DecoderTemporalLayer, TemporalDecoderAdapter, decoder_layer_specs
from videoldm.temporal.adapter import layer_key
from videoldm.temporal.layers import frames_to_video, video_to_frames

VAE_DIR = "vae"
TEMPORAL_DIR = "temporal_decoder"


class VideoAutoencoder(nn.Module):
    """An image `AutoencoderKL` plus decoder temporal layers, run on videos (B, C, T, H, W).

    Build with `VideoAutoencoder.from_vae(vae, **options)` (fresh, zero-initialised temporal layers: the video
    decoder equals the image decoder frame by frame), `from_vae(vae, temporal=dir)` (trained temporal layers),
    or `from_vae(vae, temporal=None, image_only=True)` (no temporal layers: the image decoder on videos).
    """

    def __init__(self, vae: AutoencoderKL, temporal: TemporalDecoderAdapter | None) -> None:
        super().__init__()
        self.vae = vae
        self.temporal = temporal
        self.gradient_checkpointing = False
        self._num_frames: int | None = None
        self._hooks = [] if temporal is None else [self._attach(s["name"]) for s in temporal.config.layer_specs]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_vae(
        cls,
        vae: AutoencoderKL,
        *,
        temporal: str | Path | None = None,
        image_only: bool = False,
        **temporal_config: Any,
    ) -> VideoAutoencoder:
        """Wrap `vae`. `temporal=dir`: load the temporal decoder saved there (no other options allowed);
        `image_only=True`: no temporal layers; otherwise fresh ones (see `TemporalDecoderAdapter` for options)."""
        if temporal is not None or image_only:
            if temporal_config or (temporal is not None and image_only):
                raise TypeError("pass temporal=DIR, image_only=True or temporal options, not several")
            return cls(vae, None if image_only else _on_vae(TemporalDecoderAdapter.for_vae(vae, temporal), vae))
        specs = decoder_layer_specs(vae, temporal_attention=bool(temporal_config.get("temporal_attention")))
        adapter = TemporalDecoderAdapter(layer_specs=specs, **temporal_config)
        return cls(vae, _on_vae(adapter, vae))

    @classmethod
    def from_model_dir(cls, directory: str | Path, *, image_decoder: bool = False) -> VideoAutoencoder:
        """A model folder's autoencoder: `vae/` (diffusers AutoencoderKL) plus `temporal_decoder/` when present
        and `image_decoder` is False."""
        directory = Path(directory)
        if not (directory / VAE_DIR).is_dir():
            raise FileNotFoundError(f"{directory} has no {VAE_DIR}/ folder (a diffusers AutoencoderKL)")
        vae = AutoencoderKL.from_pretrained(directory / VAE_DIR, local_files_only=True).eval()
        temporal = directory / TEMPORAL_DIR
        if image_decoder or not temporal.is_dir():
            return cls.from_vae(vae, image_only=True)
        return cls.from_vae(vae, temporal=temporal)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `vae/` (unchanged diffusers layout) and, if there are temporal layers, `temporal_decoder/`."""
        directory = Path(directory)
        self.vae.save_pretrained(directory / VAE_DIR)
        if self.temporal is not None:
            self.save_temporal(directory / TEMPORAL_DIR)

    def save_temporal(self, directory: str | Path) -> None:
        """Write the temporal parameters only: `diffusion_pytorch_model.safetensors` + `config.json`."""
        self._require_temporal("save_temporal")
        self.temporal.save_pretrained(directory, safe_serialization=True)

    # ------------------------------------------------------------------ training helpers
    def freeze_spatial(self) -> None:
        """Freeze the whole image VAE (encoder, quant convs, decoder); only temporal parameters train."""
        self.vae.requires_grad_(False)
        if self.temporal is not None:
            self.temporal.requires_grad_(True)

    def temporal_parameters(self) -> Iterator[nn.Parameter]:
        """The trainable temporal parameters (3D convs, temporal attention, alphas): what the optimiser gets."""
        if self.temporal is None:
            return iter(())
        return (p for p in self.temporal.parameters() if p.requires_grad)

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight of the decoder's last trainable layer (the temporal conv after `conv_out`), for the
        adaptive weight of the adversarial loss. `conv_out` itself is frozen, so its weight has no gradient."""
        self._require_temporal("last_layer")
        return self.temporal.layers[layer_key("decoder.conv_out")].block.conv.weight

    def enable_gradient_checkpointing(self) -> None:
        """Recompute temporal layers in the backward pass instead of storing their activations.

        (The image decoder's own checkpointing must stay off: its recomputation runs outside a video decode,
        where the temporal hooks are inactive.)"""
        self.gradient_checkpointing = True

    def alphas(self) -> dict[str, float]:
        """The current alpha (weight of the spatial branch) of every temporal layer, by spatial module name."""
        if self.temporal is None:
            return {}
        return {
            s["name"]: torch.sigmoid(self.temporal.layers[layer_key(s["name"])].blend.mix_logit).item()
            for s in self.temporal.config.layer_specs
        }

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    @property
    def device(self) -> torch.device:
        return self.vae.device

    # ------------------------------------------------------------------ encode / decode
    @torch.no_grad()
    def encode(
        self,
        video: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Encode videos (B, 3, T, H, W) in [-1, 1] to scaled latents (B, C, T, h, w), frame by frame.

        The posterior mean (or a sample with `sample=True`), shifted by `shift_factor` if set and scaled by
        `scaling_factor`. `chunk_size`: encode that many frames at a time (the encoder is per frame, so this
        changes memory only). Runs without gradients: the encoder is frozen.
        """
        _check_video(video, 3, "video")
        t = video.shape[2]
        frames = video_to_frames(video.to(self.device, self.dtype))
        step = chunk_size or frames.shape[0]
        if step < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        parts = []
        for i in range(0, frames.shape[0], step):
            posterior = self.vae.encode(frames[i : i + step]).latent_dist
            parts.append(posterior.sample(generator) if sample else posterior.mean)
        latents = torch.cat(parts)
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return frames_to_video((latents - shift) * self.vae.config.scaling_factor, t).contiguous()

    def decode(
        self,
        latents: torch.Tensor,
        *,
        chunk_size: int | None = None,
        overlap: int | None = None,
        image_decoder: bool = False,
    ) -> torch.Tensor:
        """Decode scaled latents (B, C, T, h, w) to videos (B, 3, T, H, W) (not clamped).

        chunk_size: decode at most this many frames at once, in overlapping chunks blended across the overlap
            (see `chunked_decode`); None decodes each clip at once.
        overlap: frames shared by consecutive chunks (default chunk_size // 4; 0 with the image decoder,
            which decodes each frame alone).
        image_decoder: skip the temporal layers (alpha = 1): the image decoder frame by frame.
        """
        _check_video(latents, self.vae.config.latent_channels, "latents")
        image_decoder = image_decoder or self.temporal is None
        if chunk_size is None:
            return self._decode_clip(latents, image_decoder=image_decoder)
        if overlap is None:
            overlap = 0 if image_decoder else default_overlap(chunk_size)
        return decode_in_chunks(
            lambda z: self._decode_clip(z, image_decoder=image_decoder),
            latents,
            chunk_size=chunk_size,
            overlap=overlap,
        )

    def forward(self, video: torch.Tensor, *, image_decoder: bool = False) -> torch.Tensor:
        """Reconstruct videos (B, 3, T, H, W): encode (frozen, posterior mean) then decode at once."""
        return self.decode(self.encode(video), image_decoder=image_decoder)

    def _decode_clip(self, latents: torch.Tensor, *, image_decoder: bool) -> torch.Tensor:
        """(B, C, T, h, w) -> (B, 3, T, H, W), all frames of each clip in one pass."""
        if not image_decoder and self.vae.decoder.gradient_checkpointing and torch.is_grad_enabled():
            raise ValueError(
                "the image decoder's gradient checkpointing is on; it recomputes blocks outside the video "
                "decode, without the temporal layers. Use VideoAutoencoder.enable_gradient_checkpointing() instead"
            )
        t = latents.shape[2]
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        # contiguous: torch 2.13 CPU segfaults in the backward pass of this decoder for channels-last-strided
        # latents (as `encode` can produce); a plain layout avoids it.
        z = video_to_frames(latents.to(self.device, self.dtype)).contiguous() / self.vae.config.scaling_factor + shift
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        with self._frames(None if image_decoder else t):
            frames = self.vae.decoder(z)
        return frames_to_video(frames, t)

    # ------------------------------------------------------------------ hooks
    @contextlib.contextmanager
    def _frames(self, num_frames: int | None) -> Iterator[None]:
        self._num_frames = num_frames
        try:
            yield
        finally:
            self._num_frames = None

    def _attach(self, name: str) -> torch.utils.hooks.RemovableHandle:
        return self.vae.get_submodule(name).register_forward_hook(_DecoderHook(self, layer_key(name)))

    def _run_layer(self, layer: DecoderTemporalLayer, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(_call_layer, layer, hidden, num_frames, use_reentrant=False)
        return layer(hidden, num_frames=num_frames)

    def _require_temporal(self, what: str) -> None:
        if self.temporal is None:
            raise ValueError(f"{what}: this VideoAutoencoder has no temporal layers (built with image_only=True)")


class _DecoderHook:
    """The forward hook of one decoder module: during a video decode, run its temporal layer on the output.
    An object, not a closure, so that `copy.deepcopy` of a VideoAutoencoder gives hooks on the copy."""

    def __init__(self, owner: VideoAutoencoder, key: str) -> None:
        self.owner = owner
        self.key = key

    def __call__(self, _module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        num_frames = self.owner._num_frames
        if num_frames is None:
            return None
        return self.owner._run_layer(self.owner.temporal.layers[self.key], output, num_frames)


def _call_layer(layer: DecoderTemporalLayer, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
    return layer(hidden, num_frames=num_frames)


def _check_video(x: torch.Tensor, channels: int, name: str) -> None:
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(f"{name} must be (B, {channels}, T, H, W); got a tensor of shape {tuple(x.shape)}")


def _on_vae(adapter: TemporalDecoderAdapter, vae: AutoencoderKL) -> TemporalDecoderAdapter:
    """The adapter on the VAE's device and dtype (moved only if needed: diffusers warns on every `.to`)."""
    if (adapter.device, adapter.dtype) != (vae.device, vae.dtype):
        adapter = adapter.to(device=vae.device, dtype=vae.dtype)
    return adapter


def load_video_autoencoder(vae: AutoencoderKL, directory: str | Path) -> VideoAutoencoder:
    """`vae` with the trained temporal decoder saved in `directory` (a model folder's `temporal_decoder/`)."""
    return VideoAutoencoder.from_vae(vae, temporal=directory)
