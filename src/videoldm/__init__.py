"""videoldm: Video LDM ("Align your Latents", Blattmann et al., CVPR 2023) on diffusers image models.

Video tensors are (B, C, T, H, W) everywhere: batch, channels, frames, height, width.
"""

from videoldm.pipelines import VideoLDMPipeline, VideoUpscalePipeline
from videoldm.temporal import TemporalAdapter
from videoldm.upsampler import VideoUpsampler
from videoldm.video_unet import VideoUNet, VideoUNetOutput

__all__ = [
    "TemporalAdapter",
    "VideoLDMPipeline",
    "VideoUNet",
    "VideoUNetOutput",
    "VideoUpsampler",
    "VideoUpscalePipeline",
]
__version__ = "0.1.0"
