"""Sampling pipelines and the components they are built from."""

from videoldm.pipelines.components import VideoLDMComponents
from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline, VideoLDMPipelineOutput
from videoldm.pipelines.stack import VideoLDMStackOutput, VideoLDMStackPipeline
from videoldm.pipelines.upscale import VideoUpscaleOutput, VideoUpscalePipeline

__all__ = [
    "VideoLDMComponents",
    "VideoLDMPipeline",
    "VideoLDMPipelineOutput",
    "VideoLDMStackOutput",
    "VideoLDMStackPipeline",
    "VideoUpscaleOutput",
    "VideoUpscalePipeline",
]
