"""VideoLDMStackPipeline: the paper's text-to-video stack (PAPER.md section 5) -- prompt -> key frames -> x4 -> x4
-> decode once.

The key frames come from the folder's text-to-video model (`unet/` + `temporal/`, a `VideoLDMPipeline`), the two
x4 passes from its interpolation model (`interpolation/`, a `VideoInterpolationPipeline` with its own temporal
layers on the same image UNet). Both pipelines are built from ONE set of loaded components: the image UNet (the
two temporal adapters hook the same module; each acts only inside its own forward), the autoencoder and the text
encoder are loaded once. Latents go from stage to stage (no decode / re-encode: PAPER.md section 9), and the
video is decoded once at the end by the folder's autoencoder (its temporal decoder when present).

Frame counts: K key frames give 16K - 15 frames; `num_frames` N picks the fewest key frames that cover N
(`keyframes_for`) and the video is trimmed to N before decoding. Key frame k lands exactly on frame 16k (the
interpolation pipeline pastes its given frames back), so the written video's frame rate fps puts the key frames at
fps / 16 (the paper: 1.875 -> 7.5 -> 30 fps). One generator seeds every stage in turn: same seed, same video, and
the key frames are those `VideoLDMPipeline` gives alone at that seed, K frames and the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.utils import BaseOutput

from videoldm.autoencoder.chunked_decode import DEFAULT_DECODE_CHUNK
from videoldm.defaults import DEFAULT_STEPS
from videoldm.diffusion.masks import INTERPOLATION_FACTOR
from videoldm.diffusion.sampling import Generator, Strength, pass_strengths
from videoldm.loading import ModelGeometry
from videoldm.pipelines import folders
from videoldm.pipelines.components import VideoLDMComponents
from videoldm.pipelines.interpolate import DEFAULT_STRENGTHS, VideoInterpolationPipeline
from videoldm.pipelines.pipeline_videoldm import OUTPUT_TYPES, VideoLDMPipeline

FACTOR = INTERPOLATION_FACTOR**2  # two x4 passes: key frames 16 output frames apart
DEFAULT_KEYFRAMES = 8  # the paper's: 8 -> 29 -> 113 frames
# Guards, not model limits: the key-frame model samples all key frames as one clip (its temporal attention spans
# them all) and was trained on 8; 64 is 8x that, ~1,000 output frames.
MAX_KEYFRAMES = 64
# The interpolation passes' steps: 5 DDIM steps each (the key frames: DEFAULT_STEPS), of which strength 0.4 runs
# the last 2 in the key-frame pass (4 windows of 9 frames per step for 8 key frames) and the dense pass, at its
# default strength 0, none (it would run 14 windows per step; docs/interpolation.md "The stack", "The dense pass").
DEFAULT_INTERPOLATION_STEPS = 5


def stack_frames(num_keyframes: int) -> int:
    """Frames the stack makes from `num_keyframes` key frames: 16K - 15 (8 -> 113)."""
    return FACTOR * (num_keyframes - 1) + 1


def keyframes_for(num_frames: int, *, max_keyframes: int | None = MAX_KEYFRAMES) -> int:
    """The fewest key frames (>= 2) whose 16K - 15 frames cover `num_frames`; a ValueError outside
    [2, stack_frames(max_keyframes)] (None: no upper bound -- a rollout makes its key frames clip by clip)."""
    most = float("inf") if max_keyframes is None else stack_frames(max_keyframes)
    if not isinstance(num_frames, int) or not 2 <= num_frames <= most:
        raise ValueError(
            f"num_frames must be an integer in [2, {most}] for the stack ({max_keyframes} key frames at most in "
            f"one clip), got {num_frames!r}"
        )
    return -(-(num_frames - 1) // FACTOR) + 1


@dataclass
class VideoLDMStackOutput(BaseOutput):
    """frames: (B, 3, N, H, W) in [-1, 1] ("pt"), (B, N, H, W, 3) uint8 ("np") or latents (B, c, N, h, w)
    ("latent"). num_keyframes: K, the key frames sampled (at frames 0, 16, ..., 16(K - 1) before trimming)."""

    frames: torch.Tensor | np.ndarray
    num_keyframes: int


def interpolation_pipeline(components: VideoLDMComponents, directory: str | Path) -> VideoInterpolationPipeline:
    """The folder's `interpolation/` model on `components`' image UNet, autoencoder and text encoder (nothing
    loaded twice); its scheduler from `interpolation/scheduler/` (else the folder's `scheduler/`)."""
    return VideoInterpolationPipeline.on_parts(
        directory,
        image_unet=components.unet.unet,
        autoencoder=components.autoencoder,
        text_encoder=components.text_encoder,
    )


class VideoLDMStackPipeline:
    """Text -> key frames (`keyframes`, a `VideoLDMPipeline`) -> two x4 passes (`interpolation`, a
    `VideoInterpolationPipeline` sharing its image UNet, autoencoder and text encoder) -> one decode."""

    def __init__(self, *, keyframes: VideoLDMPipeline, interpolation: VideoInterpolationPipeline) -> None:
        if interpolation.unet.unet is not keyframes.unet.unet or interpolation.autoencoder is not keyframes.autoencoder:
            raise ValueError("the stack's pipelines must share one image UNet and one autoencoder")
        if keyframes.unet.spatial_padding != "zeros":
            # A world that wraps: the interpolation pads as the key frames do (its clips are continued from given
            # key frames, so "circular_continued" wraps them), one consistent network on that world.
            interpolation.unet.spatial_padding = keyframes.unet.spatial_padding
        self.keyframes = keyframes
        self.interpolation = interpolation
        self.set_progress_bar_config()

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, torch_dtype: torch.dtype = torch.float32, image_decoder: bool = False
    ) -> VideoLDMStackPipeline:
        """A Video LDM folder with `interpolation/` (local files only): its parts loaded once
        (`folders.load_components`) and shared by both stages; `image_decoder` as in `VideoLDMPipeline`."""
        components = folders.load_components(directory, torch_dtype=torch_dtype, image_decoder=image_decoder)
        return cls(
            keyframes=VideoLDMPipeline.from_components(components),
            interpolation=interpolation_pipeline(components, directory),
        )

    # ------------------------------------------------------------------ device and progress bars
    @property
    def device(self) -> torch.device:
        return self.keyframes.device

    @property
    def geometry(self) -> ModelGeometry:
        return self.keyframes.geometry

    def to(self, device: torch.device | str | None = None) -> VideoLDMStackPipeline:
        """Move every model (the shared ones once); returns self."""
        self.keyframes.to(device)
        self.interpolation.unet.to(device)  # its own temporal layers; the rest is the key-frame pipeline's
        return self

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for each stage's tqdm bar ("key frames", "interpolating x4 (1/2)", "(2/2)"), e.g. disable=True."""
        self.keyframes.set_progress_bar_config(**{"desc": "key frames", **kwargs})
        self.interpolation.set_progress_bar_config(**kwargs)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        interpolation_steps: int = DEFAULT_INTERPOLATION_STEPS,
        interpolation_strength: Strength = None,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        context_guidance_scale: float = 1.0,
        interpolation_guidance_scale: float = 1.0,
        num_videos_per_prompt: int = 1,
        generator: Generator = None,
        output_type: str = "pt",
        decode_chunk_size: int | None = DEFAULT_DECODE_CHUNK,
        image_decoder: bool = False,
        return_dict: bool = True,
    ) -> VideoLDMStackOutput | tuple:
        """Generate videos from text through the whole stack.

        Args:
            prompt: one prompt or a list (B prompts); the key frames' text and the interpolation passes' caption.
            num_frames: N, the output's frames (default 113: 8 key frames); K = `keyframes_for(N)` key frames are
                sampled, 16K - 15 frames interpolated and the first N decoded.
            num_inference_steps, guidance_scale, negative_prompt: the key frames' (as in `VideoLDMPipeline`).
            interpolation_steps: denoising steps of each x4 pass.
            interpolation_strength: the share of them run, from the noised blend of the given frames
                (`VideoInterpolationPipeline`'s `strength`: one number or one per pass; 1: from pure noise; 0: the
                blend itself). Default 0.4 for the key-frame pass and 0 for the dense one (`DEFAULT_STRENGTHS`).
            context_guidance_scale: s of the interpolation passes' context guidance (1: none, one branch).
            interpolation_guidance_scale: text guidance in the interpolation passes (<= 1: off, the default).
            generator: seeds the key frames' noise, then each pass's: same seed, same video.
            output_type: "pt" -> (B, 3, N, H, W) in [-1, 1]; "np" -> (B, N, H, W, 3) uint8; "latent" -> (B, c, N, h, w).
            decode_chunk_size: frames per decode call (overlapping chunks; None: all at once).
            image_decoder: decode frame by frame with the image decoder even if a temporal decoder is loaded.
        """
        num_frames = stack_frames(DEFAULT_KEYFRAMES) if num_frames is None else num_frames
        num_keyframes = keyframes_for(num_frames)
        if not isinstance(interpolation_steps, int) or interpolation_steps < 1:
            raise ValueError(f"interpolation_steps must be an integer >= 1, got {interpolation_steps!r}")
        pass_strengths(interpolation_strength, DEFAULT_STRENGTHS, name="interpolation_strength")
        if output_type not in OUTPUT_TYPES:  # checked before any sampling
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        for name, scale in (
            ("context_guidance_scale", context_guidance_scale),
            ("interpolation_guidance_scale", interpolation_guidance_scale),
        ):
            if not 0 <= scale < float("inf"):
                raise ValueError(f"{name} must be a number >= 0, got {scale}")
        latents = self.keyframes(
            prompt,
            num_frames=num_keyframes,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            negative_prompt=negative_prompt,
            num_videos_per_prompt=num_videos_per_prompt,
            generator=generator,
            output_type="latent",
        ).frames
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        latents = self.interpolation(
            latents=latents,
            factor=FACTOR,
            prompt=[p for p in prompts for _ in range(num_videos_per_prompt)],  # the key frames' order
            num_inference_steps=interpolation_steps,
            strength=interpolation_strength,
            context_guidance_scale=context_guidance_scale,
            guidance_scale=interpolation_guidance_scale,
            generator=generator,
            output_type="latent",
        ).frames
        frames = self.keyframes.output_frames(
            latents[:, :, :num_frames],
            output_type=output_type,
            decode_chunk_size=decode_chunk_size,
            image_decoder=image_decoder,
        )
        return VideoLDMStackOutput(frames=frames, num_keyframes=num_keyframes) if return_dict else (frames,)
