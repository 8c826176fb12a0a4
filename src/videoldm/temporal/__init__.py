"""Temporal layers, the one adapter base and hook mechanism that put them into a backbone, the context encoder."""

from videoldm.temporal.adapter import (
    TemporalAdapter,
    TemporalAdapterBase,
    TemporalLayer,
    temporal_layer_specs,
)
from videoldm.temporal.attention import TemporalAttention, TemporalTransformerBlock
from videoldm.temporal.context import ContextEncoder
from videoldm.temporal.hooks import FrameState, VideoBackbone
from videoldm.temporal.layers import (
    AlphaBlender,
    FrameGroupNorm,
    TemporalConvOut,
    TemporalResBlock,
    frames_to_video,
    video_to_frames,
)

__all__ = [
    "AlphaBlender",
    "ContextEncoder",
    "FrameGroupNorm",
    "FrameState",
    "TemporalAdapter",
    "TemporalAdapterBase",
    "TemporalAttention",
    "TemporalConvOut",
    "TemporalLayer",
    "TemporalResBlock",
    "TemporalTransformerBlock",
    "VideoBackbone",
    "frames_to_video",
    "temporal_layer_specs",
    "video_to_frames",
]
