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
    frames: int = typer.Option(32, "--frames", help="Frames per clip (the paper's rates: 113 = 8 key frames, x16)."),
    size: int = typer.Option(64, "--size", help="Frame height and width in pixels."),
    fps: float = typer.Option(8.0, "--fps", help="Frame rate stored in the mp4 files."),
    speed: tuple[float, float] = typer.Option(
        (0.75, 1.25),
        "--speed",
        metavar="MIN MAX",
        help="Object speed range, px per frame at size 64 (scaled with --size). The paper's rates: 0.25 0.375 "
        "with --frames 113 (>= 4 px, one latent pixel, between key frames 16 frames apart). Without --wrap a "
        "clip too long for its speed is slowed down to keep the object in view.",
    ),
    wrap: bool = typer.Option(
        False, "--wrap", help="A world that wraps around: the object leaves one edge and re-enters at the opposite."
    ),
    texture: str | None = typer.Option(
        None,
        "--texture",
        help="Textured grey background with fine grain: static, pan (a slow camera), mixed (one of the two per "
        "clip) or any (plain, static or pan per clip). Default: the plain background.",
    ),
    lossless: bool = typer.Option(
        False,
        "--lossless",
        help="RGB mp4 without loss (larger files) instead of yuv420p, which halves the colour's resolution: for an "
        "upsampler's high-resolution truth.",
    ),
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
    if not 0 < speed[0] <= speed[1] or speed[1] == float("inf"):
        fail(f"--speed MIN MAX must satisfy 0 < MIN <= MAX (px per frame at size 64), got {speed[0]} {speed[1]}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    from videoldm.data.shapes import TEXTURES, write_shapes_dataset

    if texture is not None and texture not in TEXTURES:
        fail(f"--texture must be one of {', '.join(TEXTURES)}, got {texture!r}")
    folder = write_shapes_dataset(
        out,
        videos=videos,
        seed=seed,
        num_frames=frames,
        size=size,
        fps=fps,
        speed=speed,
        wrap=wrap,
        texture=texture,
        lossless=lossless,
    )
    typer.echo(str(folder))


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
