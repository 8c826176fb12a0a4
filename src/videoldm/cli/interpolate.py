"""`videoldm interpolate INPUT --output OUT`: T frames -> 4T - 3 (`--factor 4`) or 16T - 15 (`--factor 16`) with a
model folder's interpolation model (PAPER.md section 5).

The written video keeps the input's duration: its frame rate is the input's times the factor. Every argument, the
input's size and frame count (probed, not decoded) and the folder's `interpolation/` are checked before any model
is loaded; bad input -- fewer than 2 frames, a folder without an interpolation model, a factor other than 4 or 16,
an unreadable file -- exits with code 2 and one line, and leaves no output file (the video is written atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videoldm import layout
from videoldm.cli.app import app, check_video_paths, fail, model_dir, parse_strengths

FACTORS = (4, 16)


@app.command()
def interpolate(
    input_video: Annotated[Path, typer.Argument(help="The video to interpolate (mp4, webm, gif, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the result (.mp4/.gif).")],
    factor: Annotated[int, typer.Option("--factor", help="4: T -> 4T-3 frames; 16: T -> 16T-15 (two passes).")] = 4,
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder with interpolation/. Default: the shipped model.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same video.")] = 0,
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps per x4 pass.")] = 25,
    strength: Annotated[
        str | None,
        typer.Option(
            "--strength",
            help="Share of each pass's steps run, from the noised blend: one number, or A,B per pass with --factor 16 "
            "(default 0.4, and 0 for the second pass; 0: the blend itself; 1: from noise).",
        ),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="The video's caption (default: none, the empty prompt).")
    ] = None,
    guidance: Annotated[float, typer.Option("--guidance", help="Text guidance scale with --prompt (<= 1: off).")] = 1.0,
    context_guidance: Annotated[
        float, typer.Option("--context-guidance", help="Context guidance scale s (1: none; > 1: more of the context).")
    ] = 1.0,
    window: Annotated[
        int | None, typer.Option("--window", help="Output frames per window, 4k+1 (default: the trained length).")
    ] = None,
    window_overlap: Annotated[
        int, typer.Option("--window-overlap", help="Frames neighbouring windows share, 4j+1 (1: the given frame).")
    ] = 1,
) -> None:
    """Interpolate a video: 3 new frames between each pair of frames (x4), or twice (x16)."""
    check_video_paths(input_video, output)
    if factor not in FACTORS:
        fail(f"--factor must be 4 or 16, got {factor}")
    if steps < 1:
        fail(f"--steps must be >= 1, got {steps}")
    for name, value in (("--guidance", guidance), ("--context-guidance", context_guidance)):
        if not 0 <= value < float("inf"):
            fail(f"{name} must be a number >= 0, got {value}")
    strengths = parse_strengths("--strength", strength, FACTORS.index(factor) + 1)
    if prompt is not None and not prompt.strip():
        fail("--prompt must not be empty")
    if window is not None and (window < 5 or window % 4 != 1):
        fail(f"--window must be 4k+1 >= 5 frames (given frames at both ends), got {window}")
    if window_overlap % 4 != 1 or (window is not None and window_overlap >= window):
        fail(f"--window-overlap must be 4j+1 frames and less than --window, got {window_overlap}")
    folder = model_dir(model, parts=(layout.UNET, layout.VAE, layout.INTERPOLATION))
    if not (folder / layout.INTERPOLATION / layout.TEMPORAL).is_dir():
        fail(f"--model {folder}: {layout.INTERPOLATION}/ has no {layout.TEMPORAL}/ (no interpolation model)")
    fps = _check_video(input_video, folder)

    import torch

    from videoldm.io import VideoReadError, read_video, write_video
    from videoldm.pipelines.interpolate import VideoInterpolationPipeline

    try:
        pipe = VideoInterpolationPipeline.from_pretrained(folder)
    except (FileNotFoundError, ValueError, OSError) as err:
        fail(f"--model {folder}: {err}")
    try:
        video, _ = read_video(input_video)
    except (VideoReadError, ValueError) as err:
        fail(str(err))
    if video.shape[1] < 2:
        fail(f"INPUT {input_video}: {video.shape[1]} frame; interpolation needs at least 2")
    pipe.set_progress_bar_config(unit="step")
    frames = pipe(
        video[None],
        factor=factor,
        prompt=prompt,
        num_inference_steps=steps,
        guidance_scale=guidance,
        context_guidance_scale=context_guidance,
        generator=torch.Generator().manual_seed(seed),
        window_overlap=window_overlap,
        **({} if window is None else {"window_frames": window}),
        **({} if strengths is None else {"strength": strengths}),
    ).frames
    write_video(output, frames[0], fps=fps * factor)  # atomic: a temporary file renamed into place
    typer.echo(f"{output} ({video.shape[1]} -> {frames.shape[2]} frames at {fps * factor:g} fps)")


def _check_video(path: Path, folder: Path) -> float:
    """The input's frame rate, after checking -- from the container and the folder's configs alone -- that it has
    at least 2 frames and a size the model takes; exit 2 otherwise."""
    from videoldm.io import VideoReadError, probe_video
    from videoldm.loading import ModelGeometry

    try:
        info = probe_video(path)
    except (VideoReadError, ValueError) as err:
        fail(str(err))
    if info.num_frames < 2:
        fail(f"INPUT {path}: {info.num_frames} frame(s); interpolation needs at least 2")
    try:
        geometry = ModelGeometry.read(folder)
        geometry.check_size("the video's height", info.height)
        geometry.check_size("the video's width", info.width)
    except (OSError, ValueError, KeyError) as err:
        fail(f"INPUT {path}: {err}")
    return info.fps
