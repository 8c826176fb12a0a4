"""Sampling pipelines and the components they are built from."""

from videoldm.pipelines.components import VideoLDMComponents
from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline, VideoLDMPipelineOutput

__all__ = ["VideoLDMComponents", "VideoLDMPipeline", "VideoLDMPipelineOutput"]
