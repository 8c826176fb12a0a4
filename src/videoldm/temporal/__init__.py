"""Temporal layers, their adapter (saved apart from the backbone) and the context encoder."""

from videoldm.temporal.adapter import ContextEncoder, TemporalAdapter, TemporalLayer, temporal_layer_specs
from videoldm.temporal.layers import (
    AlphaBlender,
    TemporalAttention,
    TemporalResBlock,
    TemporalTransformerBlock,
    frames_to_video,
    video_to_frames,
)

__all__ = [
    "AlphaBlender",
    "ContextEncoder",
    "TemporalAdapter",
    "TemporalAttention",
    "TemporalLayer",
    "TemporalResBlock",
    "TemporalTransformerBlock",
    "frames_to_video",
    "temporal_layer_specs",
    "video_to_frames",
]
