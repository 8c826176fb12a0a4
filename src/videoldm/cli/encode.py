"""`videoldm data encode`: videos -> latent shards with a model folder's VAE and text encoder (data/encode.py)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from videoldm.cli.app import data_app, fail


@data_app.command()
def encode(
    videos: Path = typer.Option(
        ..., "--videos", help="A folder with captions.csv, or a captions CSV / JSONL (WebVid's videoid,name too)."
    ),
    model: Path = typer.Option(..., "--model", help="Model folder whose vae/ and text_encoder/ encode the clips."),
    out: Path = typer.Option(..., "--out", help="Shard folder (created; an unfinished one is continued)."),
    root: Path | None = typer.Option(None, "--root", help="Folder the table's files are in (default: its folder)."),
    size: int = typer.Option(256, "--size", help="Frame height and width after resize + centre crop."),
    num_frames: int = typer.Option(
        32, "--num-frames", help="Frames stored per clip; training clips take every data.frame_stride-th of them."
    ),
    fps: float | None = typer.Option(None, "--fps", help="Store frames at this rate (from each video's own fps)."),
    frame_stride: int = typer.Option(1, "--frame-stride", help="Else: store every Nth source frame."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Clips per shard."),
    workers: int = typer.Option(1, "--workers", help="Worker processes on this machine (times torchrun's ranks)."),
) -> None:
    """Encode clips and captions once into WebDataset tar shards; prints a summary of skipped inputs."""
    from videoldm.data.encode import EncodeError, EncodeJob, EncodeSettings, check_job, summary_lines
    from videoldm.data.encode import encode as run_encode

    if fps is not None and frame_stride != 1:
        fail(f"give --fps or --frame-stride, not both (got --fps {fps} --frame-stride {frame_stride})")
    if workers < 1:
        fail(f"--workers must be >= 1, got {workers}")
    settings = EncodeSettings(size=size, frames=num_frames, fps=fps, frame_stride=frame_stride, shard_size=shard_size)
    job = EncodeJob(videos=videos, model=model, out=out, settings=settings, root=root)
    try:
        check_job(job)
        # torchrun / accelerate launch set RANK and WORLD_SIZE: each rank encodes its own share.
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        summary = run_encode(job, workers=workers, rank=rank, world_size=world)
    except (EncodeError, FileNotFoundError) as err:
        fail(str(err))
    for line in summary_lines(summary, out):
        typer.echo(line)
