"""VideoInterpolationPipeline: T frames -> 4T - 3 (factor 4) or 16T - 15 (factor 16) (PAPER.md section 5).

Each x4 pass puts the given latents at every 4th position of 4T - 3 frames (`diffusion.masks`), conditions the
model on them through the context c = (mask * z, mask) and the pass's task condition, and runs the one sampling
loop (`diffusion.sampling.sample_latents`). After every step the given frames are set to their clean latents
noised to the next step's level -- what the model saw in training -- and after the last step to the clean latents
themselves: the given frames come back exactly (in latent space). Long inputs run in overlapping windows of frames
(`diffusion.windows`, in the model closure, blended each step) that start and end on given frames, so windows
share their boundary frames. Context guidance (`ContextGuidance`, scale s; s = 1: none) and, with a prompt, text
guidance compose as in the text-to-video pipeline. Factor 16 is two passes (condition 1, then 0 for the trained
two-condition model), the second on the first's latents (no decode / re-encode between them). Decoding: the
folder's autoencoder (its temporal decoder when present).

Folder: `unet/` (shared with the text-to-video model), `vae/` (+ `temporal_decoder/`), `text_encoder/`,
`tokenizer/` and `interpolation/`: `temporal/` (the temporal layers, context encoder and condition embedding),
`scheduler/` and `config.json` (the clip length trained on: the default window).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from videoldm import layout
from videoldm.autoencoder import VideoAutoencoder
from videoldm.autoencoder.chunked_decode import DEFAULT_DECODE_CHUNK
from videoldm.diffusion.guidance import Conditioning, Guider, context_guider
from videoldm.diffusion.masks import (
    INTERPOLATION_FACTOR,
    context_from_mask,
    interpolation_mask,
    linear_blend,
    spread_frames,
)
from videoldm.diffusion.sampling import Generator, GivenFrames, Strength, pass_strengths, sample_latents, strength_start
from videoldm.diffusion.windows import Window, WindowPlan, blend_windows
from videoldm.loading import ModelGeometry, load_scheduler, load_text_encoder
from videoldm.pipelines.folders import interpolation_part, read_interpolation_config
from videoldm.text import TextEncoder
from videoldm.video_unet import VideoUNet

OUTPUT_TYPES = ("pt", "np", "latent")
FACTORS = (4, 16)
# Windows per UNet call (`blend_windows`' group). Measured on a 2-core CPU, 28 windows of 9 frames through the
# shipped interpolation UNet: one per call 7.9 s, 4 per call 5.7 s, 7 per call 5.6 s, 14 6.5 s, all 28 7.0 s.
WINDOWS_PER_CALL = 7
# Each pass starts from the given frames' latent blend, noised: at high noise an epsilon model's x0 is worse than
# the blend (the background came out redrawn). 0.4 measured best of 0.2-0.8 (docs/interpolation.md); 1 = the paper.
DEFAULT_STRENGTH = 0.4
# The strength of each pass of factor 16, coarsest first. The dense pass (objects move a sub-pixel step per frame)
# defaults to 0, the latent blend itself: on held-out clips it is closer to the truth than the model's pass
# (position 0.101 vs 0.131 px, 34.65 vs 34.53 dB; benchmarks/results/interpolation_quality.md, "x4 -> full"), and
# it saves 14 of the stack's 18 windows per step (docs/interpolation.md "The dense pass").
DEFAULT_STRENGTHS = (DEFAULT_STRENGTH, 0.0)


@dataclass
class VideoInterpolationOutput(BaseOutput):
    """frames: (B, 3, T_out, H, W) in [-1, 1] ("pt"), (B, T_out, H, W, 3) uint8 ("np") or latents ("latent")."""

    frames: torch.Tensor | np.ndarray


class VideoInterpolationPipeline:
    """Temporal interpolation with a `VideoUNet` whose temporal layers take a context (and a task condition)."""

    def __init__(
        self,
        *,
        unet: VideoUNet,
        autoencoder: VideoAutoencoder,
        text_encoder: TextEncoder,
        scheduler: SchedulerMixin,
        window_frames: int | None = None,
    ) -> None:
        if unet.temporal is None or unet.temporal.context_encoder is None:
            raise ValueError("the interpolation model needs temporal layers with a context encoder")
        self.unet = unet.eval()
        self.autoencoder = autoencoder.eval()
        self.text_encoder = text_encoder
        self.scheduler = scheduler
        self.window_frames = window_frames
        self._progress_bar_config: dict[str, Any] = {}

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, torch_dtype: torch.dtype = torch.float32, image_decoder: bool = False
    ) -> VideoInterpolationPipeline:
        """A model folder with `interpolation/` (see the module docstring). Local files only."""
        folder = Path(directory)
        interpolation_part(folder)  # before loading anything
        unet = UNet2DConditionModel.from_pretrained(
            folder / layout.UNET, local_files_only=True, torch_dtype=torch_dtype
        )
        return cls.on_parts(
            folder,
            image_unet=unet,
            autoencoder=VideoAutoencoder.from_model_dir(folder, image_decoder=image_decoder),
            text_encoder=load_text_encoder(folder / layout.TEXT_ENCODER, folder / layout.TOKENIZER),
        )

    @classmethod
    def on_parts(
        cls,
        directory: str | Path,
        *,
        image_unet: UNet2DConditionModel,
        autoencoder: VideoAutoencoder,
        text_encoder: TextEncoder,
    ) -> VideoInterpolationPipeline:
        """The folder's `interpolation/` model on parts already loaded (the stack shares them with its key-frame
        pipeline): its temporal layers on `image_unet`, its scheduler from `interpolation/scheduler/` (else the
        folder's `scheduler/`), its trained clip length as the default window."""
        folder = Path(directory)
        part = interpolation_part(folder)
        scheduler_dir = part / layout.SCHEDULER if (part / layout.SCHEDULER).is_dir() else folder / layout.SCHEDULER
        return cls(
            unet=VideoUNet.from_image_unet(image_unet, temporal=part / layout.TEMPORAL),
            autoencoder=autoencoder,
            text_encoder=text_encoder,
            scheduler=load_scheduler(scheduler_dir),
            window_frames=read_interpolation_config(part).get("num_frames"),
        )

    # ------------------------------------------------------------------ device and progress bar
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def num_conditions(self) -> int | None:
        """How many task conditions the model takes (None: none)."""
        embedding = self.unet.temporal.condition_embedding
        return None if embedding is None else embedding.num_embeddings

    @property
    def geometry(self) -> ModelGeometry:
        return ModelGeometry.of(self.unet.config, self.autoencoder.vae.config)

    def to(self, device: torch.device | str | None = None) -> VideoInterpolationPipeline:
        for module in (self.unet, self.autoencoder, self.text_encoder):
            module.to(device)
        return self

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for the tqdm bar of each pass (e.g. disable=True)."""
        self._progress_bar_config = kwargs

    def conditions_for(self, factor: int) -> list[int | None]:
        """The task condition of each x4 pass for `factor`: the coarsest first (key frames in); None without one."""
        passes = FACTORS.index(factor) + 1
        count = self.num_conditions
        if count is None:
            return [None] * passes
        return [max(count - 1 - i, 0) for i in range(passes)]

    # ------------------------------------------------------------------ seams
    def check_inputs(
        self,
        frames: torch.Tensor,
        *,
        latent: bool,
        factor: int,
        num_inference_steps: int,
        window_frames: int | None,
        window_overlap: int,
        conditions: Sequence[int | None] | None,
        output_type: str,
    ) -> None:
        """Raise a ValueError naming the first bad argument. frames: (B, 3, T, H, W) pixels or (B, c, T, h, w)
        latents (`latent`)."""
        channels = self.geometry.latent_channels if latent else 3
        if not torch.is_tensor(frames) or frames.ndim != 5 or frames.shape[1] != channels:
            shape = tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__
            raise ValueError(
                f"{'latents' if latent else 'video'} must be a tensor (B, {channels}, T, H, W), got {shape}"
            )
        if frames.shape[2] < 2:
            raise ValueError(f"need at least 2 frames to interpolate between, got {frames.shape[2]}")
        scale = 1 if not latent else self.geometry.vae_scale_factor
        for name, size in (("height", frames.shape[3] * scale), ("width", frames.shape[4] * scale)):
            self.geometry.check_size(name, size)
        if factor not in FACTORS:
            raise ValueError(f"factor must be one of {FACTORS}, got {factor!r}")
        if conditions is not None:
            if len(conditions) != FACTORS.index(factor) + 1:
                raise ValueError(
                    f"factor {factor} takes {FACTORS.index(factor) + 1} conditions, got {list(conditions)}"
                )
            count = self.num_conditions
            if any((c is None) != (count is None) or (c is not None and not 0 <= c < count) for c in conditions):
                raise ValueError(f"conditions must be in [0, {count}) for this model, got {list(conditions)}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if window_frames is not None:
            if window_frames < 5 or window_frames % INTERPOLATION_FACTOR != 1:
                raise ValueError(f"window_frames must be 4k + 1 >= 5 (given frames at both ends), got {window_frames}")
            if window_overlap % INTERPOLATION_FACTOR != 1 or window_overlap >= window_frames:
                raise ValueError(
                    f"window_overlap must be 4j + 1 < window_frames (windows share given frames), got {window_overlap}"
                )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")

    @torch.no_grad()
    def encode_prompt(self, prompt: str | list[str] | None, batch_size: int, *, negative: bool) -> Conditioning:
        """Text (B, L, D) (the empty prompt, as dropped in training, when `prompt` is None) and, for text guidance
        (`negative`), the empty prompt's as negative_text."""
        prompts = [""] * batch_size if prompt is None else [prompt] * batch_size if isinstance(prompt, str) else prompt
        if len(prompts) != batch_size:
            raise ValueError(f"prompt has {len(prompts)} entries for {batch_size} videos")
        text = self.text_encoder(list(prompts)).to(self.device, self.dtype)
        negative_text = self.text_encoder([""] * batch_size).to(self.device, self.dtype) if negative else None
        return Conditioning(text=text, negative_text=negative_text)

    def guider(self, *, context_guidance_scale: float, guidance_scale: float, text_guidance: bool) -> Guider:
        """ContextGuidance when s != 1 (with text guidance composed when on), else text guidance or none."""
        return context_guider(context_guidance_scale, guidance_scale if text_guidance else None)

    def _denoise(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        *,
        encoder_hidden_states: torch.Tensor | None,
        context: torch.Tensor,
        condition: torch.Tensor | None,
        plan: WindowPlan,
    ) -> torch.Tensor:
        """The sampling loop's model: the UNet on each window of frames of `plan`, blended -> (N*B, c, T, h, w)."""
        branches = sample.shape[0] // condition.shape[0] if condition is not None else 1
        condition = None if condition is None else condition.repeat(branches)

        def run(windows: list[Window]) -> torch.Tensor:
            k = len(windows)  # windows stacked along the batch: one UNet call for all of them
            out = self.unet(
                torch.cat([sample[:, :, window[0]] for window in windows]).to(self.dtype),
                timestep,
                encoder_hidden_states=None if encoder_hidden_states is None else encoder_hidden_states.repeat(k, 1, 1),
                context=torch.cat([context[:, :, window[0]] for window in windows]),
                condition=None if condition is None else condition.repeat(k),
            )
            return out.sample

        return blend_windows(
            run, plan, batch=sample.shape[0], channels=sample.shape[1], like=sample, group=WINDOWS_PER_CALL
        )

    def interpolate_latents(
        self,
        given: torch.Tensor,
        *,
        cond: Conditioning,
        guider: Guider,
        condition: int | None,
        num_inference_steps: int,
        strength: float = DEFAULT_STRENGTH,
        generator: Generator = None,
        window_frames: int | None = None,
        window_overlap: int = 1,
        progress: Any = None,
    ) -> torch.Tensor:
        """One x4 pass: given latents (B, c, T, h, w) -> (B, c, 4T - 3, h, w) whose every 4th frame is `given`.
        strength < 1 starts from the linear blend of the given latents noised to the level of
        `timesteps[strength_start(num_inference_steps, strength)]` and runs the steps from there; strength 0 returns
        that blend (no model call)."""
        b, c, t, h, w = given.shape
        given = given.to(self.device, torch.float32)
        start = strength_start(num_inference_steps, strength)
        if start == num_inference_steps:
            return linear_blend(given)
        mask = interpolation_mask(t)
        t_out = mask.shape[0]
        cond.context = context_from_mask(spread_frames(given), mask).to(self.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        noise = randn_tensor((b, c, t_out, h, w), generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        noise = noise.to(self.device)
        if start:  # the blend holds what does not move (the background) exactly; the steps left redraw the rest
            latents = self.scheduler.add_noise(linear_blend(given), noise, timesteps[start].expand(b))
        else:
            latents = noise * self.scheduler.init_noise_sigma
        held = GivenFrames(self.scheduler, spread_frames(given), mask, noise)
        latents = held.at(latents, start)
        plan = WindowPlan.of(t_out, h, w, chunk_size=window_frames, chunk_overlap=window_overlap)
        labels = None if condition is None else torch.full((b,), condition, dtype=torch.long, device=self.device)
        model = functools.partial(self._denoise, condition=labels, plan=plan)
        latents = sample_latents(
            model,
            self.scheduler,
            latents,
            cond=cond,
            guider=guider,
            generator=generator,
            callback=held.callback,
            progress=progress,
            start=start,
        )
        return held.at(latents, len(timesteps))  # exact, whatever the scheduler's last step did

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        video: torch.Tensor | None = None,
        *,
        latents: torch.Tensor | None = None,
        factor: int = 4,
        prompt: str | list[str] | None = None,
        num_inference_steps: int = 25,
        strength: Strength = None,
        context_guidance_scale: float = 1.0,
        guidance_scale: float = 1.0,
        generator: Generator = None,
        window_frames: int | None = -1,
        window_overlap: int = 1,
        conditions: Sequence[int | None] | None = None,
        output_type: str = "pt",
        decode_chunk_size: int | None = DEFAULT_DECODE_CHUNK,
        return_dict: bool = True,
    ) -> VideoInterpolationOutput | tuple:
        """Interpolate videos.

        Args:
            video: (B, 3, T, H, W) in [-1, 1], encoded with the folder's autoencoder; or `latents` (B, c, T, h, w).
            factor: 4 -> 4T - 3 frames (one pass: key-frame spacing in), 16 -> 16T - 15 (two passes).
            prompt: the caption (text guidance with guidance_scale > 1); None: the empty prompt, no text guidance.
            strength: the share of the `num_inference_steps` steps run; < 1 starts a pass from the linear blend
                of the given frames noised to that step's level (diffusers' img2img `strength`); 1 = from noise;
                0 = the blend itself. One number or one per pass (default `DEFAULT_STRENGTHS`: 0.4, 0).
            context_guidance_scale: s of f(z) + s * (f(z; c) - f(z)); 1 = no context guidance (one branch).
            generator: seeds the noise of every pass: same seed, same video.
            window_frames: output frames per window, 4k + 1 (default -1: the clip length the model was trained on;
                None: all frames at once); window_overlap: frames shared by neighbouring windows, 4j + 1 (1: the
                boundary given frame; 5: also the 3 frames after it, cross-faded).
            conditions: the task condition of each pass (default `conditions_for(factor)`).
            output_type: "pt" -> (B, 3, T_out, H, W) in [-1, 1]; "np" -> (B, T_out, H, W, 3) uint8; "latent".
            decode_chunk_size: frames per decode call (overlapping chunks; None: all at once).
        """
        if (video is None) == (latents is None):
            raise ValueError("pass either video (B, 3, T, H, W) or latents (B, c, T, h, w)")
        window_frames = self.window_frames if window_frames == -1 else window_frames
        frames = latents if latents is not None else video
        self.check_inputs(
            frames,
            latent=latents is not None,
            factor=factor,
            num_inference_steps=num_inference_steps,
            window_frames=window_frames,
            window_overlap=window_overlap,
            conditions=conditions,
            output_type=output_type,
        )
        strengths = pass_strengths(strength, DEFAULT_STRENGTHS[: FACTORS.index(factor) + 1])
        z = latents if latents is not None else self.autoencoder.encode(video.to(self.device))
        text_guidance = prompt is not None and guidance_scale > 1
        guider = self.guider(
            context_guidance_scale=context_guidance_scale, guidance_scale=guidance_scale, text_guidance=text_guidance
        )
        cond = self.encode_prompt(prompt, z.shape[0], negative=text_guidance)
        passes = list(conditions) if conditions is not None else self.conditions_for(factor)
        for i, (condition, strength_i) in enumerate(zip(passes, strengths, strict=True)):
            steps = num_inference_steps - strength_start(num_inference_steps, strength_i)
            desc = f"interpolating x4 ({i + 1}/{len(passes)})"
            with tqdm(total=max(steps, 1), **{"desc": desc, **self._progress_bar_config}) as bar:
                z = self.interpolate_latents(
                    z,
                    cond=cond,
                    guider=guider,
                    condition=condition,
                    num_inference_steps=num_inference_steps,
                    strength=strength_i,
                    generator=generator,
                    window_frames=window_frames,
                    window_overlap=window_overlap,
                    progress=bar,
                )
                bar.update(int(not steps))  # a pass without steps (the blend) still shows as one tick
        if output_type == "latent":
            out: torch.Tensor | np.ndarray = z
        else:
            out = self.autoencoder.decode(z, chunk_size=decode_chunk_size).clamp(-1, 1)
            if output_type == "np":
                out = ((out + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
        return VideoInterpolationOutput(frames=out) if return_dict else (out,)
