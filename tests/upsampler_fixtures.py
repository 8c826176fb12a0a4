"""Tiny pixel upsamplers built in code (no downloads), shared by the upsampler tests."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from videoldm.pipelines.upscale import VideoUpscalePipeline
from videoldm.upsampler import UpsamplerConfig, VideoUpsampler

# 2 levels, ResNet blocks only (no attention): 6 temporal ResNet layers, radius 12 frames with (3, 1, 1) kernels.
TINY_UPSAMPLER_UNET = {
    "sample_size": 16,
    "in_channels": 6,
    "out_channels": 3,
    "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "mid_block_type": None,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "num_class_embeds": 100,
}
TINY_UPSAMPLER_CONFIG = {"scale_factor": 2, "max_noise_level": 100, "noise_level": 10}


def randomise_temporal(upsampler: VideoUpsampler, *, seed: int = 0) -> None:
    """Non-zero temporal output convolutions and alphas below 1: the temporal layers change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in upsampler.video_unet.temporal.named_parameters():
            if "conv2" in name or "mix_logit" in name:
                param.copy_(torch.randn(param.shape, generator=g) * (0.3 if "conv2" in name else 1.0))


def tiny_upsampler(
    *, temporal: bool = True, temporal_norm: str = "frame", seed: int = 0, levels: int = 2, **options
) -> VideoUpsampler:
    """`levels` 3: a third UNet level (output sizes multiples of 4); `options`: more `UpsamplerConfig` values."""
    torch.manual_seed(seed)
    extra = levels - 2
    unet = UNet2DConditionModel(
        **{
            **TINY_UPSAMPLER_UNET,
            "block_out_channels": [8, 16, *[16] * extra],
            "down_block_types": ["DownBlock2D"] * levels,
            "up_block_types": ["UpBlock2D"] * levels,
        }
    ).eval()
    config = UpsamplerConfig(**TINY_UPSAMPLER_CONFIG, **options)
    if not temporal:
        return VideoUpsampler.from_image_unet(unet, config=config)
    upsampler = VideoUpsampler.from_image_unet(unet, config=config, temporal_norm=temporal_norm)
    randomise_temporal(upsampler, seed=seed)
    return upsampler.eval()


def tiny_pipeline(**kwargs) -> VideoUpscalePipeline:
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", clip_sample=False)
    return VideoUpscalePipeline(upsampler=tiny_upsampler(**kwargs), scheduler=scheduler)


def save_tiny_model(directory: Path, **kwargs) -> Path:
    """A model folder holding only `upsampler/`."""
    tiny_pipeline(**kwargs).save_pretrained(directory)
    return directory
