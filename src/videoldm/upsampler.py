"""VideoUpsampler: a diffusion super-resolution model for videos, in pixel space (PAPER.md section 6).

The layout of diffusers' x4 upscaler: the low-resolution frames, noise-augmented at a level given to the UNet as
`class_labels` (one level per clip, `diffusion.noise_augmentation`), are concatenated frame-wise to the noisy
sample, so the UNet takes 2 x 3 channels and predicts 3. Pixel space, as the paper's driving upsampler, not a latent
space of its own as SD's x4 upscaler: a second autoencoder would have to be trained and run first, and at a 2x
factor a pixel UNet on 128 x 128 frames is cheap enough for a CPU (docs/upsampler.md). The low-resolution frames
are resized to the output size (bicubic) before the concatenation, as in pixel-space cascades (SR3, Imagen).
With `residual=True` the diffusion runs on the residual over that bicubic upscale, scaled by `residual_scale`
(`to_diffusion` / `from_diffusion`): the grey levels and the low frequencies come from the input for free and the
model only adds the detail the input lacks (SR3's and ResShift's residual; docs/upsampler.md shows why it matters
at this scale).

The denoiser is a `VideoUNet` -- the same hooks and temporal adapter as the generator's -- whose image UNet is the
image upsampler: without temporal layers it upsamples each frame alone (the paper's baseline), with them the
frames of a clip are aligned. Its temporal layers should use `temporal_norm="frame"`, so that chunks of a long
video give what one pass gives (`pipelines.upscale` samples in overlapping windows of frames and tiles).

A model folder's `upsampler/` holds `unet/`, `temporal/` (absent for an image upsampler), `low_res_scheduler/`,
`scheduler/` (the sampler, written by the training stage) and `upsampler_config.json` (`UpsamplerConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from videoldm.diffusion.noise_augmentation import augment, low_res_scheduler_config
from videoldm.layout import LOW_RES_SCHEDULER, TEMPORAL, UNET
from videoldm.temporal.layers import frames_to_video, video_to_frames
from videoldm.video_unet import VideoUNet, VideoUNetOutput


class UpsamplerConfig(ConfigMixin):
    """What a pixel upsampler needs beside its UNet.

    Args:
        scale_factor: output size / input size (2 or 4).
        max_noise_level: training draws noise-augmentation levels in [0, max_noise_level) (SD's x4: 350); the
            UNet's class embedding must have at least that many entries.
        noise_level: the default level at inference (SD's x4 pipeline: 20).
        residual: diffuse the residual over the bicubic upscale of the (clean) input instead of the frame.
        residual_scale: the residual is multiplied by this before the diffusion (and divided after it), so that
            its spread suits the noise schedule as the frame's does (the textured world's x2 residual has a std
            of ~0.07 on the [-1, 1] scale: 5 brings it to ~0.37).
    """

    config_name = "upsampler_config.json"

    @register_to_config
    def __init__(
        self,
        *,
        scale_factor: int = 2,
        max_noise_level: int = 350,
        noise_level: int = 20,
        residual: bool = False,
        residual_scale: float = 1.0,
    ) -> None:
        if scale_factor not in (2, 4):
            raise ValueError(f"scale_factor must be 2 or 4, got {scale_factor}")
        if not 0 <= noise_level < max_noise_level:
            raise ValueError(f"noise_level must be in [0, max_noise_level={max_noise_level}), got {noise_level}")
        if not residual_scale > 0:
            raise ValueError(f"residual_scale must be positive, got {residual_scale}")


def downscale(video: torch.Tensor, factor: int) -> torch.Tensor:
    """Area downscaling (the mean of each factor x factor block, as the shapes world renders pixels):
    (B, C, T, H, W) -> (B, C, T, H / factor, W / factor)."""
    t = video.shape[2]
    return frames_to_video(F.avg_pool2d(video_to_frames(video), factor), t)


def upscale_bicubic(video: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upscaling (B, C, T, h, w) -> (B, C, T, h * factor, w * factor) (not clamped): the baseline and the
    upsampler's conditioning."""
    t = video.shape[2]
    frames = F.interpolate(video_to_frames(video), scale_factor=factor, mode="bicubic", align_corners=False)
    return frames_to_video(frames, t)


class VideoUpsampler(nn.Module):
    """A `VideoUNet` (image upsampler UNet + optional temporal layers) with its noise augmentation.

    Build with `VideoUpsampler.from_image_unet(unet, config=...)` (an image upsampler),
    `from_image_unet(unet, config=..., temporal_norm="frame", ...)` (fresh temporal layers: `TemporalAdapter`
    options) or `from_image_unet(unet, config=..., temporal=DIR)`; load a folder with `from_pretrained`.
    """

    def __init__(self, video_unet: VideoUNet, *, config: UpsamplerConfig, low_res_scheduler: DDPMScheduler) -> None:
        super().__init__()
        self.video_unet = video_unet
        self.upsampler_config = config
        self.low_res_scheduler = low_res_scheduler
        unet = video_unet.unet.config
        if unet.in_channels != 2 * unet.out_channels:
            raise ValueError(
                f"an upsampler UNet takes the sample and the low-resolution frames: in_channels must be 2 x "
                f"out_channels, got {unet.in_channels} and {unet.out_channels}"
            )
        if unet.class_embed_type is not None or (unet.num_class_embeds or 0) < self.config.max_noise_level:
            raise ValueError(
                "an upsampler UNet embeds the noise level as class_labels: it needs class_embed_type None and "
                f"num_class_embeds >= max_noise_level={self.config.max_noise_level}, got {unet.class_embed_type!r} and "
                f"{unet.num_class_embeds}"
            )

    # ------------------------------------------------------------------ construction and folders
    @classmethod
    def from_image_unet(
        cls,
        unet: UNet2DConditionModel,
        *,
        config: UpsamplerConfig,
        temporal: str | Path | None = None,
        **temporal_options: Any,
    ) -> VideoUpsampler:
        """Wrap an image upsampler UNet: image-only (no temporal options), with the temporal layers saved in
        `temporal`, or with fresh ones built from `temporal_options`."""
        if temporal is not None or temporal_options:
            video_unet = VideoUNet.from_image_unet(unet, temporal=temporal, **temporal_options)
        else:
            video_unet = VideoUNet(unet, None)
        return cls(video_unet, config=config, low_res_scheduler=DDPMScheduler(**low_res_scheduler_config()))

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, image_only: bool = False, torch_dtype: torch.dtype = torch.float32
    ) -> VideoUpsampler:
        """Load an `upsampler/` folder; `image_only` leaves its temporal layers out (the image upsampler)."""
        directory = Path(directory)
        for part in (UNET, LOW_RES_SCHEDULER):
            if not (directory / part).is_dir():
                raise FileNotFoundError(f"{directory} has no {part}/ folder (an upsampler needs {UNET}/ and {part}/)")
        if not (directory / UpsamplerConfig.config_name).is_file():
            raise FileNotFoundError(f"{directory} has no {UpsamplerConfig.config_name}")
        config = UpsamplerConfig.from_config(UpsamplerConfig.load_config(directory))
        unet = UNet2DConditionModel.from_pretrained(directory / UNET, local_files_only=True, torch_dtype=torch_dtype)
        temporal = directory / TEMPORAL
        if image_only or not temporal.is_dir():
            video_unet = VideoUNet(unet.eval(), None)
        else:
            video_unet = VideoUNet.from_image_unet(unet.eval(), temporal=temporal)
        low_res = DDPMScheduler.from_pretrained(directory / LOW_RES_SCHEDULER, local_files_only=True)
        return cls(video_unet.to(dtype=torch_dtype), config=config, low_res_scheduler=low_res)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `unet/`, `temporal/` (if any), `low_res_scheduler/` and `upsampler_config.json` (safetensors)."""
        directory = Path(directory)
        self.video_unet.unet.save_pretrained(directory / UNET, safe_serialization=True)
        if self.video_unet.temporal is not None:
            self.video_unet.save_temporal(directory / TEMPORAL)
        self.low_res_scheduler.save_pretrained(directory / LOW_RES_SCHEDULER)
        self.upsampler_config.save_config(directory)

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> Any:
        """The `UpsamplerConfig` values (scale_factor, max_noise_level, noise_level), read as attributes."""
        return self.upsampler_config.config

    @property
    def dtype(self) -> torch.dtype:
        return self.video_unet.dtype

    @property
    def device(self) -> torch.device:
        return self.video_unet.device

    @property
    def scale_factor(self) -> int:
        return self.config.scale_factor

    @property
    def has_temporal(self) -> bool:
        return self.video_unet.temporal is not None

    @property
    def size_multiple(self) -> int:
        """Output height and width must be multiples of this: every UNet level halves the frames."""
        return 2 ** (len(self.video_unet.unet.config.down_block_types) - 1)

    def check_input_size(self, height: int, width: int) -> None:
        """A ValueError unless low-resolution frames of `height` x `width` upscale to a size the UNet takes."""
        multiple, factor = self.size_multiple, self.scale_factor
        for name, value in (("height", height), ("width", width)):
            if value < 1 or (value * factor) % multiple:
                step = multiple // factor if multiple % factor == 0 else multiple
                raise ValueError(
                    f"input {name} {value}: the x{factor} output ({value * factor} px) must be a multiple of "
                    f"{multiple} for this upsampler (2^{len(self.video_unet.unet.config.down_block_types) - 1} UNet "
                    f"downsamplings): use a {name} that is a multiple of {step}"
                )

    # ------------------------------------------------------------------ what the diffusion runs on
    def to_diffusion(self, high_res: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        """The diffusion's clean sample for frames (B, 3, T, H, W) whose low-resolution version is `low_res`
        (B, 3, T, h, w): the frames themselves, or their scaled residual over the bicubic upscale (`residual`)."""
        if not self.config.residual:
            return high_res
        return (high_res - upscale_bicubic(low_res.to(high_res.dtype), self.scale_factor)) * self.config.residual_scale

    def from_diffusion(self, sample: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_diffusion`: a sampled (B, 3, T, H, W) -> frames (not clamped)."""
        if not self.config.residual:
            return sample
        return upscale_bicubic(low_res.to(sample.dtype), self.scale_factor) + sample / self.config.residual_scale

    # ------------------------------------------------------------------ conditioning and forward
    def condition(self, low_res: torch.Tensor, noise_level: torch.Tensor, *, noise: torch.Tensor) -> torch.Tensor:
        """Low-resolution frames (B, 3, T, h, w) in [-1, 1], one level per clip (B,), noise like `low_res` ->
        the UNet's conditioning (B, 3, T, h * s, w * s): noise-augmented at the low resolution, then resized."""
        if noise_level.max() >= self.config.max_noise_level:
            raise ValueError(
                f"noise levels must be < max_noise_level={self.config.max_noise_level}, got {noise_level.tolist()}"
            )
        noisy = augment(low_res.float(), noise_level, noise.float(), scheduler=self.low_res_scheduler)
        return upscale_bicubic(noisy, self.scale_factor)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        *,
        condition: torch.Tensor,
        noise_level: torch.Tensor,
        image_only: bool = False,
        context: torch.Tensor | None = None,
    ) -> VideoUNetOutput:
        """sample (B, 3, T, H, W) noisy high-resolution frames; timestep scalar or (B,); condition
        (B, 3, T, H, W) from `condition`; noise_level (B,) its levels -> prediction (B, 3, T, H, W).
        `image_only`: the temporal layers are skipped (the image upsampler). `encoder_hidden_states` and
        `context` are accepted (the sampling loop passes them) and must be None: this upsampler has no text."""
        if encoder_hidden_states is not None or context is not None:
            raise ValueError("this upsampler takes no text and no context frames")
        if condition.shape != sample.shape:
            raise ValueError(f"condition must have the sample's shape {tuple(sample.shape)}, got {condition.shape}")
        inputs = torch.cat([sample, condition.to(sample.dtype)], dim=1)
        levels = noise_level.to(sample.device).long()
        return self.video_unet(inputs, timestep, class_labels=levels, image_only=image_only or not self.has_temporal)
