"""VideoAutoencoder: a diffusers AutoencoderKL whose decoder gains temporal layers (PAPER.md section 3).

The image VAE is kept untouched as `video_ae.vae` -- encoder, quant convs, latent space and every decoder
parameter keep their exact diffusers names, so Stable Diffusion VAE weights load as they are -- and the
temporal layers live in `video_ae.temporal` (a `TemporalDecoderAdapter`). The hooks of
`videoldm.temporal.hooks.VideoBackbone` (the same as `VideoUNet`'s) on the decoder's ResNet blocks, mid
attention and `conv_out` apply the temporal layer right after its spatial twin during a video decode, and do
nothing otherwise, so `video_ae.vae` still works as the image VAE. Without temporal layers (`image_only=True`)
it is the image decoder on videos: what pipelines use when asked for the image decoder.

Latents: `encode` returns the posterior mean (deterministic; `sample=True` draws from the posterior instead),
shifted by `vae.config.shift_factor` when the VAE has one and multiplied by `vae.config.scaling_factor` --
the latents the diffusion model sees. `decode` undoes that scaling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from videoldm.autoencoder.chunked_decode import decode_in_chunks, default_overlap
from videoldm.autoencoder.scaling import scale_latents, unscale_latents
from videoldm.autoencoder.temporal_decoder import CONV_OUT_NAME, TemporalDecoderAdapter, decoder_layer_specs
from videoldm.layout import TEMPORAL_DECODER, VAE
from videoldm.temporal.adapter import layer_key
from videoldm.temporal.hooks import FrameState, VideoBackbone
from videoldm.temporal.layers import frames_to_video, video_to_frames


class VideoAutoencoder(VideoBackbone):
    """An image `AutoencoderKL` plus decoder temporal layers, run on videos (B, C, T, H, W).

    Build with `VideoAutoencoder.from_vae(vae, **options)` (fresh, zero-initialised temporal layers: the video
    decoder equals the image decoder frame by frame), `from_vae(vae, temporal=dir)` (trained temporal layers),
    or `from_vae(vae, temporal=None, image_only=True)` (no temporal layers: the image decoder on videos).
    Freezing (the whole image VAE), gradient checkpointing, alphas and `save_temporal` come from `VideoBackbone`.
    """

    vae: AutoencoderKL
    temporal: TemporalDecoderAdapter | None

    def __init__(self, vae: AutoencoderKL, temporal: TemporalDecoderAdapter | None) -> None:
        super().__init__(backbone_name=VAE, backbone=vae, temporal=temporal)

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
            return cls(vae, None if image_only else _on_vae(TemporalDecoderAdapter.load_onto(vae, temporal), vae))
        specs = decoder_layer_specs(vae, temporal_attention=bool(temporal_config.get("temporal_attention")))
        adapter = TemporalDecoderAdapter(layer_specs=specs, **temporal_config)
        return cls(vae, _on_vae(adapter, vae))

    @classmethod
    def from_model_dir(cls, directory: str | Path, *, image_decoder: bool = False) -> VideoAutoencoder:
        """A model folder's autoencoder: `vae/` (diffusers AutoencoderKL) plus `temporal_decoder/` when present
        and `image_decoder` is False."""
        directory = Path(directory)
        if not (directory / VAE).is_dir():
            raise FileNotFoundError(f"{directory} has no {VAE}/ folder (a diffusers AutoencoderKL)")
        vae = AutoencoderKL.from_pretrained(directory / VAE, local_files_only=True).eval()
        temporal = directory / TEMPORAL_DECODER
        if image_decoder or not temporal.is_dir():
            return cls.from_vae(vae, image_only=True)
        return cls.from_vae(vae, temporal=temporal)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `vae/` (unchanged diffusers layout) and, if there are temporal layers, `temporal_decoder/`."""
        directory = Path(directory)
        self.vae.save_pretrained(directory / VAE)
        if self.temporal is not None:
            self.save_temporal(directory / TEMPORAL_DECODER)

    # ------------------------------------------------------------------ training helpers
    @property
    def last_layer(self) -> torch.Tensor:
        """The weight of the decoder's last trainable layer (the temporal conv after `conv_out`), for the
        adaptive weight of the adversarial loss. `conv_out` itself is frozen, so its weight has no gradient."""
        self._require_temporal("last_layer")
        return self.temporal.layers[layer_key(CONV_OUT_NAME)].block.conv.weight

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
        return frames_to_video(scale_latents(torch.cat(parts), self.vae.config), t).contiguous()

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
        t = latents.shape[2]
        # contiguous: torch 2.13 CPU segfaults in the backward pass of this decoder for channels-last-strided
        # latents (as `encode` can produce); a plain layout avoids it.
        z = unscale_latents(video_to_frames(latents.to(self.device, self.dtype)).contiguous(), self.vae.config)
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        with self.frames(None if image_decoder else FrameState(num_frames=t)):
            frames = self.vae.decoder(z)
        return frames_to_video(frames, t)


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
