"""Datasets: video folders with captions (CSV or JSONL, also WebVid's layout), image folders, and the shapes world."""

from videoldm.data.shapes import (
    COLOURS,
    DIRECTIONS,
    SHAPES,
    all_captions,
    parse_caption,
    render_shapes_video,
    write_shapes_dataset,
)

__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "SHAPES",
    "all_captions",
    "parse_caption",
    "render_shapes_video",
    "write_shapes_dataset",
]
