"""Datasets: video folders with captions (CSV or JSONL, also WebVid's layout), image folders, and the shapes world."""

from videoldm.data.image_folder import ImageFolderDataset
from videoldm.data.shapes import (
    COLOURS,
    DIRECTIONS,
    SHAPES,
    all_captions,
    parse_caption,
    render_shapes_video,
    write_shapes_dataset,
)
from videoldm.data.video_folder import FramesDataset, VideoFolderDataset

__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "SHAPES",
    "FramesDataset",
    "ImageFolderDataset",
    "VideoFolderDataset",
    "all_captions",
    "parse_caption",
    "render_shapes_video",
    "write_shapes_dataset",
]
