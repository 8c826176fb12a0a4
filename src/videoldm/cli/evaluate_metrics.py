"""`videoldm evaluate fvd|fid|clipsim`: video quality metrics on folders of videos (weights are local files)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from videoldm.cli.app import evaluate_app, fail
from videoldm.evaluation.metrics import CLIP_NUM_FRAMES, FVD_NUM_VIDEOS

Folder = Annotated[Path, typer.Argument(help="Folder of videos (mp4, webm, gif, ...), read in sorted name order.")]
NumFrames = Annotated[int, typer.Option("--num-frames", help="Frames per clip (the first ones of each video).")]
Output = Annotated[Path | None, typer.Option("--output", help="Also write the result as JSON here.")]


def _report(name: str, value: float, details: dict, output: Path | None) -> None:
    typer.echo(f"{name}: {value:.4f}")
    if output is None:
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"metric": name, "value": value, **details}, f, indent=2)
    os.replace(tmp, output)


def _run(name: str, metric: Callable[..., float], args: tuple, options: dict, output: Path | None) -> None:
    """metric(*args, **options); bad input (missing weights, too few videos, unreadable files) exits with 2."""
    try:
        value = metric(*args, **options)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        fail(str(err))
    _report(name, value, {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}, output)


@evaluate_app.command("fvd")
def fvd_command(
    generated: Folder,
    real: Folder,
    i3d_weights: Annotated[
        Path | None,
        typer.Option(
            "--i3d-weights", envvar="VIDEOLDM_I3D_WEIGHTS", help="I3D Kinetics-400 weights (.safetensors, .pt)."
        ),
    ] = None,
    num_videos: Annotated[int, typer.Option("--num-videos", help="Videos per set (2,048 in the paper).")] = (
        FVD_NUM_VIDEOS
    ),
    num_frames: NumFrames = CLIP_NUM_FRAMES,
    features: Annotated[str, typer.Option("--features", help="'logits' (400-d, standard FVD) or 'pool' (1024-d).")] = (
        "logits"
    ),
    output: Output = None,
) -> None:
    """Fréchet Video Distance between GENERATED and REAL (I3D logits, 16-frame clips, 2,048 videos)."""
    from videoldm.evaluation.metrics import fvd

    options = {"i3d_weights": i3d_weights, "num_videos": num_videos, "num_frames": num_frames, "features": features}
    _run("FVD", fvd, (generated, real), options, output)


@evaluate_app.command("fid")
def fid_command(
    generated: Folder,
    real: Folder,
    inception_weights: Annotated[
        Path | None,
        typer.Option("--inception-weights", envvar="VIDEOLDM_INCEPTION_WEIGHTS", help="pytorch-fid Inception weights."),
    ] = None,
    num_videos: Annotated[int | None, typer.Option("--num-videos", help="Videos per set (default: all).")] = None,
    num_frames: NumFrames = CLIP_NUM_FRAMES,
    output: Output = None,
) -> None:
    """Frame FID between GENERATED and REAL (Inception-v3 pool3 features of every frame of each clip)."""
    from videoldm.evaluation.metrics import frame_fid

    options = {"inception_weights": inception_weights, "num_videos": num_videos, "num_frames": num_frames}
    _run("FID", frame_fid, (generated, real), options, output)


@evaluate_app.command("clipsim")
def clipsim_command(
    videos: Folder,
    prompts: Annotated[
        Path, typer.Argument(help="Prompts: .txt one per line in sorted video order, or .json {file name: prompt}.")
    ],
    clip: Annotated[
        Path | None,
        typer.Option("--clip", envvar="VIDEOLDM_CLIP", help="Local CLIP folder in transformers format."),
    ] = None,
    num_frames: NumFrames = CLIP_NUM_FRAMES,
    output: Output = None,
) -> None:
    """CLIPSIM: mean over frames and videos of the CLIP cosine(frame, prompt) (not x 100; MSR-VTT: 0.2929)."""
    from videoldm.evaluation.metrics import clipsim

    _run("CLIPSIM", clipsim, (videos, prompts), {"clip": clip, "num_frames": num_frames}, output)
