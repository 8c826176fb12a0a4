"""`videoldm data shapes ...` (write the synthetic shapes world) and `videoldm data check ...` (find bad videos)."""

from __future__ import annotations

from pathlib import Path

import typer

from videoldm.cli.app import data_app, fail


@data_app.command()
def shapes(
    out: Path = typer.Option(..., "--out", help="Output folder (created; existing clips are overwritten)."),
    videos: int = typer.Option(..., "--videos", help="Number of clips (balanced over the 48 captions)."),
    seed: int = typer.Option(..., "--seed", help="Same seed, same files."),
    frames: int = typer.Option(32, "--frames", help="Frames per clip."),
    size: int = typer.Option(64, "--size", help="Frame height and width in pixels."),
    fps: float = typer.Option(8.0, "--fps", help="Frame rate stored in the mp4 files."),
) -> None:
    """Write the shapes world: mp4 clips + captions.csv ('a red circle moving right', ...). Prints the folder."""
    if videos < 1:
        fail(f"--videos must be >= 1, got {videos}")
    if frames < 2:
        fail(f"--frames must be >= 2, got {frames}")
    if size < 24:
        fail(f"--size must be >= 24 (the object is 14-20 px at size 64), got {size}")
    if fps <= 0:
        fail(f"--fps must be > 0, got {fps}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    from videoldm.data.shapes import write_shapes_dataset

    typer.echo(str(write_shapes_dataset(out, videos=videos, seed=seed, num_frames=frames, size=size, fps=fps)))


@data_app.command()
def check(
    videos: Path = typer.Argument(..., help="Video folder."),
    captions: Path | None = typer.Option(None, "--captions", help="CSV/JSONL table (default: VIDEOS/captions.csv)."),
    frames: int = typer.Option(16, "--frames", help="Frames a clip needs."),
    frame_stride: int = typer.Option(1, "--frame-stride", help="Source frames between clip frames."),
) -> None:
    """Try to load every video of a dataset once; list the unreadable or too-short ones. Exit 1 if any."""
    from videoldm.data.video_folder import VideoFolderDataset

    try:
        dataset = VideoFolderDataset(
            videos,
            captions=captions or videos / "captions.csv",
            num_frames=frames,
            size=8,
            frame_stride=frame_stride,
            random_start=False,
        )
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    good = sum(dataset.load(i) is not None for i in range(len(dataset)))
    typer.echo(f"{good} of {len(dataset)} videos usable")
    if dataset.skipped:
        typer.echo(dataset.report())
        raise typer.Exit(code=1)
