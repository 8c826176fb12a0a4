"""Sampling pipelines."""

from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline, VideoLDMPipelineOutput

__all__ = ["VideoLDMPipeline", "VideoLDMPipelineOutput"]
