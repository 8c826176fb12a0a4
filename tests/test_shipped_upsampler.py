"""The shipped video upsampler (`assets/tiny-shapes/upsampler/`, docs/upsampler.md): trained on the plain world the
shipped generator makes, it must beat the bicubic upscale it replaces -- the reason it is shipped."""

from __future__ import annotations

import numpy as np
import torch

from videoldm.assets import shipped_model_dir
from videoldm.autoencoder.metrics import psnr
from videoldm.data.shapes import sample_clip
from videoldm.pipelines.upscale import VideoUpscalePipeline
from videoldm.upsampler import downscale, upscale_bicubic


def test_shipped_upsampler_beats_bicubic_on_a_held_out_clip() -> None:
    pipe = VideoUpscalePipeline.from_pretrained(shipped_model_dir())
    assert pipe.upsampler.scale_factor == 2 and pipe.upsampler.has_temporal
    rng = np.random.default_rng(12345)  # a clip no training video used (the data's seeds are [0, i])
    truth = sample_clip("blue", "triangle", "left", rng=rng, num_frames=3, size=128).render()[None]  # (1, 3, T, H, W)
    low = downscale(truth, 2)
    out = pipe(low, num_inference_steps=4, generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == truth.shape
    bicubic = upscale_bicubic(low, 2).clamp(-1, 1)
    assert psnr(out, truth).item() > psnr(bicubic, truth).item() + 1.5  # measured: +4 dB over 8 clips, 10 steps
