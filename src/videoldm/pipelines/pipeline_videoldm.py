"""VideoLDMPipeline: text-to-video sampling with a VideoUNet, an image VAE and a frozen text encoder.

Seams as in diffusers' Stable Video Diffusion pipeline: `check_inputs`, `encode_prompt`, `prepare_latents`,
the denoising loop (`videoldm.diffusion.sampling.sample_latents`, with batched guidance from
`videoldm.diffusion.guidance`), `decode_latents` (always through a `VideoAutoencoder`). A plain class rather
than a `diffusers.DiffusionPipeline`: the VideoUNet is saved as two folders (`unet/` + `temporal/`) and the
text encoder may be a `builtin.json` marker, neither of which DiffusionPipeline's component registry models.
The parts are a `VideoLDMComponents`; loading and saving model folders live in `videoldm.pipelines.folders`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from videoldm.autoencoder import VideoAutoencoder
from videoldm.autoencoder.chunked_decode import DEFAULT_DECODE_CHUNK
from videoldm.defaults import DEFAULT_STEPS
from videoldm.diffusion.guidance import Conditioning, Guider, text_guidance
from videoldm.diffusion.noise import correlate_frames, sampling_correlation
from videoldm.diffusion.sampling import Generator, sample_latents
from videoldm.loading import ModelGeometry
from videoldm.pipelines import folders
from videoldm.pipelines.components import VideoLDMComponents
from videoldm.text import TextEncoder
from videoldm.video_unet import VideoUNet

OUTPUT_TYPES = ("pt", "np", "latent")
StepCallback = Callable[["VideoLDMPipeline", int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class VideoLDMPipelineOutput(BaseOutput):
    """frames: (B, C, T, H, W) float in [-1, 1] ("pt"), (B, T, H, W, C) uint8 ("np"), or the final latents
    (B, c, T, h, w) ("latent")."""

    frames: torch.Tensor | np.ndarray


class VideoLDMPipeline:
    """Text-to-video with a Video LDM.

    Built from the fields of a `VideoLDMComponents` (see there): `unet`, `autoencoder` (a `VideoAutoencoder`,
    with decoder temporal layers or without: the image decoder), `text_encoder`, `scheduler`,
    `text_encoder_marker`.
    """

    def __init__(
        self,
        *,
        unet: VideoUNet,
        autoencoder: VideoAutoencoder,
        text_encoder: TextEncoder,
        scheduler: SchedulerMixin,
        text_encoder_marker: dict[str, Any] | None = None,
    ) -> None:
        self.unet = unet.eval()
        self.autoencoder = autoencoder.eval()
        self.text_encoder = text_encoder
        self.scheduler = scheduler
        self.text_encoder_marker = text_encoder_marker
        self._progress_bar_config: dict[str, Any] = {}

    @classmethod
    def from_components(cls, components: VideoLDMComponents) -> VideoLDMPipeline:
        return cls(**vars(components))

    @property
    def components(self) -> VideoLDMComponents:
        return VideoLDMComponents(
            unet=self.unet,
            autoencoder=self.autoencoder,
            text_encoder=self.text_encoder,
            scheduler=self.scheduler,
            text_encoder_marker=self.text_encoder_marker,
        )

    @property
    def vae(self) -> AutoencoderKL:
        """The image VAE (the autoencoder's; its latent space is the one the UNet samples in)."""
        return self.autoencoder.vae

    # ------------------------------------------------------------------ folders
    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, torch_dtype: torch.dtype = torch.float32, image_decoder: bool = False
    ) -> VideoLDMPipeline:
        """Load a Video LDM folder: `unet/`, `temporal/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`
        and optionally `temporal_decoder/` (not loaded when `image_decoder` is True). Local files only."""
        return cls.from_components(
            folders.load_components(directory, torch_dtype=torch_dtype, image_decoder=image_decoder)
        )

    @classmethod
    def from_stable_diffusion(
        cls, directory: str | Path, *, torch_dtype: torch.dtype = torch.float32, **temporal_config: Any
    ) -> VideoLDMPipeline:
        """An image LDM folder (diffusers layout) with fresh temporal layers (`TemporalAdapter` options):
        before training it samples exactly what the image model samples, frame by frame."""
        return cls.from_components(
            folders.stable_diffusion_components(directory, torch_dtype=torch_dtype, **temporal_config)
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the folder `from_pretrained` reads, atomically (a temporary folder renamed into place)."""
        return folders.save_components(self.components, directory)

    # ------------------------------------------------------------------ device and progress bar
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def latents_dtype(self) -> torch.dtype:
        """The dtype of the latents and the scheduler's arithmetic: the weights' dtype, at least float32."""
        return torch.promote_types(self.dtype, torch.float32)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> VideoLDMPipeline:
        """Move (and cast) every model; returns self."""
        # dtype only when given: diffusers' ModelMixin.to warns whenever a dtype keyword is present
        target = {k: v for k, v in {"device": device, "dtype": dtype}.items() if v is not None}
        for module in (self.unet, self.autoencoder, self.text_encoder):
            module.to(**target)
        return self

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for the tqdm bar of the denoising loop (e.g. disable=True, desc="sampling")."""
        self._progress_bar_config = kwargs

    def progress_bar(self, total: int) -> tqdm:
        return tqdm(total=total, **{"desc": "denoising", **self._progress_bar_config})

    @property
    def geometry(self) -> ModelGeometry:
        return ModelGeometry.of(self.unet.config, self.vae.config)

    @property
    def vae_scale_factor(self) -> int:
        return self.geometry.vae_scale_factor

    # ------------------------------------------------------------------ seams
    def check_inputs(
        self,
        prompt: str | list[str],
        *,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        negative_prompt: str | list[str] | None,
        output_type: str,
        decode_chunk_size: int | None,
        num_videos_per_prompt: int = 1,
    ) -> None:
        """Raise a ValueError naming the first bad argument."""
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        if any(not p.strip() for p in prompts):
            raise ValueError("prompt must not be empty")
        if negative_prompt is not None:
            negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            if len(negatives) not in (1, len(prompts)):
                raise ValueError(f"negative_prompt has {len(negatives)} entries, prompt has {len(prompts)}")
        for name, value in (("num_frames", num_frames), ("num_inference_steps", num_inference_steps)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.geometry.check_size("height", height)
        self.geometry.check_size("width", width)
        if not guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be an integer >= 1, got {num_videos_per_prompt!r}")
        if decode_chunk_size is not None and decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be >= 1 or None, got {decode_chunk_size}")

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str],
        *,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        num_videos_per_prompt: int = 1,
    ) -> Conditioning:
        """Text embeddings, computed once per call: text (B, L, D) and, for guidance, negative_text (B, L, D)
        (the negative prompt, or the empty prompt as in training). B = len(prompts) * num_videos_per_prompt."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        text = self.text_encoder(prompts)
        negative = None
        if do_classifier_free_guidance:
            if negative_prompt is None or isinstance(negative_prompt, str):
                negatives = [negative_prompt or ""] * len(prompts)  # the empty prompt, as dropped in training
            else:
                negatives = list(negative_prompt) * (len(prompts) // len(negative_prompt))
            negative = self.text_encoder(negatives)
        repeat = _repeater(num_videos_per_prompt, self.device, self.dtype)
        return Conditioning(text=repeat(text), negative_text=repeat(negative))

    def prepare_latents(
        self,
        batch_size: int,
        *,
        num_frames: int,
        height: int,
        width: int,
        generator: Generator = None,
        latents: torch.Tensor | None = None,
        noise_correlation: float = 0.0,
    ) -> torch.Tensor:
        """Initial noise (B, c, T, h, w) (c: latent channels, h = height / vae_scale_factor) from `generator` (one,
        or a list of B: video i's from generator i), frames correlated by `noise_correlation` (`correlate_frames`),
        scaled by `init_noise_sigma`. Drawn in float32: a seed gives the same noise on any device and dtype (torch
        draws float16 normals on CPU with other numbers). The latents stay >= float32 whatever the weights' dtype:
        the scheduler's updates are small differences that bf16/fp16 would round away (`_denoise` casts)."""
        factor = self.vae_scale_factor
        shape = (batch_size, self.geometry.latent_channels, num_frames, height // factor, width // factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
            latents = correlate_frames(latents, noise_correlation, generator=generator)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        return latents.to(self.device, self.latents_dtype) * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def decode_latents(
        self, latents: torch.Tensor, *, decode_chunk_size: int | None = None, image_decoder: bool = False
    ) -> torch.Tensor:
        """Scaled latents (B, c, T, h, w) -> videos (B, 3, T, H, W) in [-1, 1], through the autoencoder.

        With decoder temporal layers (and not `image_decoder`) the frames of a clip are decoded together, in
        overlapping chunks of `decode_chunk_size` frames; otherwise the image decoder decodes frame by frame,
        `decode_chunk_size` frames per call (all at once when None): memory only, the frames are independent.
        """
        video = self.autoencoder.decode(latents, chunk_size=decode_chunk_size, image_decoder=image_decoder)
        return video.clamp(-1, 1)

    def _denoise(
        self, sample: torch.Tensor, timestep: torch.Tensor, *, image_only: bool, **kwargs: Any
    ) -> torch.Tensor:
        """The UNet in its dtype; the prediction back in the latents' dtype."""
        return self.unet(sample.to(self.dtype), timestep, **kwargs, image_only=image_only).sample.to(sample.dtype)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        generator: Generator = None,
        latents: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        guider: Guider | None = None,
        output_type: str = "pt",
        decode_chunk_size: int | None = DEFAULT_DECODE_CHUNK,
        image_only: bool = False,
        image_decoder: bool = False,
        callback_on_step_end: StepCallback | None = None,
        noise_correlation: float | None = None,
        return_dict: bool = True,
    ) -> VideoLDMPipelineOutput | tuple:
        """Generate videos from text.

        Args:
            prompt: one prompt or a list (B prompts).
            num_frames: T. height, width: pixels (default: unet sample_size x vae_scale_factor).
            guidance_scale: text classifier-free guidance; <= 1 turns it off (one branch, half the compute).
            negative_prompt: the unconditional branch's prompt (default: the empty prompt).
            generator: seeds the initial noise (and any noise a sampler draws): same seed, same video. A list
                of B generators (B = prompts x num_videos_per_prompt) seeds each video alone: video i is the
                video its prompt gives alone with generator i.
            latents: initial noise (B, c, T, h, w) instead of drawing it.
            context: (B, c+1, T, h, w) = (mask * clean latents, mask) for a prediction model (PAPER.md 4).
            guider: a custom guider (e.g. `ContextGuidance`); overrides guidance_scale.
            output_type: "pt" -> (B, 3, T, H, W) in [-1, 1]; "np" -> (B, T, H, W, 3) uint8; "latent".
            decode_chunk_size: frames per VAE decode call, in overlapping chunks (None: all at once; the default is
                faster on a CPU, `chunked_decode.DEFAULT_DECODE_CHUNK`).
            image_only: run the same UNet with every alpha = 1 (the image model; the "before alignment" baseline).
            image_decoder: decode with the image decoder frame by frame even if decoder temporal layers are loaded.
            callback_on_step_end: called as f(pipe, step_index, timestep, {"latents": latents}) after each step;
                may return {"latents": ...} to replace them.
            noise_correlation: drawn noise's correlation across frames (default: the temporal layers', 0 image-only).
        """
        height, width = (self.geometry.default_size if size is None else size for size in (height, width))
        self.check_inputs(
            prompt,
            num_frames=num_frames,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            negative_prompt=negative_prompt,
            output_type=output_type,
            decode_chunk_size=decode_chunk_size,
            num_videos_per_prompt=num_videos_per_prompt,
        )
        guider = guider or text_guidance(guidance_scale)
        cond = self.encode_prompt(
            prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=guider.num_branches > 1,
            num_videos_per_prompt=num_videos_per_prompt,
        )
        cond.context = None if context is None else context.to(self.device, self.dtype)
        if noise_correlation is None:
            noise_correlation = sampling_correlation(self.unet, image_only=image_only)
        # before prepare_latents: init_noise_sigma depends on the chosen timesteps (Euler)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        latents = self.prepare_latents(
            cond.text.shape[0],
            num_frames=num_frames,
            height=height,
            width=width,
            generator=generator,
            latents=latents,
            noise_correlation=noise_correlation,
        )
        latents = self._sample(
            latents, cond=cond, guider=guider, generator=generator, image_only=image_only, callback=callback_on_step_end
        )
        frames = self.output_frames(
            latents, output_type=output_type, decode_chunk_size=decode_chunk_size, image_decoder=image_decoder
        )
        return VideoLDMPipelineOutput(frames=frames) if return_dict else (frames,)

    def output_frames(
        self, latents: torch.Tensor, *, output_type: str, decode_chunk_size: int | None, image_decoder: bool
    ) -> torch.Tensor | np.ndarray:
        """Clean latents (B, c, T, h, w) -> `output_type`: "latent" (as they are), "pt" (B, 3, T, H, W) in [-1, 1]
        (`decode_latents`) or "np" (B, T, H, W, 3) uint8. The stack (`pipelines.stack`) decodes through it too."""
        if output_type == "latent":
            return latents
        frames = self.decode_latents(latents, decode_chunk_size=decode_chunk_size, image_decoder=image_decoder)
        if output_type == "np":
            return ((frames + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
        return frames

    def _sample(
        self,
        latents: torch.Tensor,
        *,
        cond: Conditioning,
        guider: Guider,
        generator: Generator,
        image_only: bool,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        """The denoising loop (`sample_latents`) over the scheduler's timesteps (already set) with this UNet:
        latents (B, c, T, h, w) at init_noise_sigma -> clean latents (B, c, T, h, w). A method so that
        benchmarks can time the loop as one stage."""

        def step_end(i: int, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
            assert callback is not None
            return (callback(self, i, t, {"latents": z}) or {}).get("latents")

        with self.progress_bar(total=len(self.scheduler.timesteps)) as bar:
            return sample_latents(
                functools.partial(self._denoise, image_only=image_only),
                self.scheduler,
                latents,
                cond=cond,
                guider=guider,
                generator=generator,
                callback=None if callback is None else step_end,
                progress=bar,
            )


def _repeater(times: int, device: torch.device, dtype: torch.dtype) -> Callable[[torch.Tensor | None], Any]:
    """(B, ...) -> (B * times, ...) on the model's device and dtype, each prompt's copies adjacent."""

    def repeat(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.to(device, dtype).repeat_interleave(times, dim=0)

    return repeat
