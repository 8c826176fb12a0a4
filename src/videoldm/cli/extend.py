"""`videoldm extend INPUT --num-frames N --output OUT`: continue a video with a folder's prediction model
(`pipelines.extend`; PAPER.md section 4). OUT holds the input's frames, then new ones: N frames in all.

Every argument, the input's size and frame count (probed, not decoded) and the folder's prediction model are
checked before any model is loaded: bad input -- an input shorter than the model's context, N not above the
input's length or above `rollout.MAX_FRAMES`, a folder without a prediction model, an unreadable file -- exits
with code 2 and one line. The video is written piece by piece to a temporary file renamed at the end: a killed
run leaves no half-made video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videoldm.cli.app import app, check_video_paths, fail, model_dir


@app.command()
def extend(
    input_video: Annotated[Path, typer.Argument(help="The video to continue (mp4, webm, gif, ...).")],
    num_frames: Annotated[int, typer.Option("--num-frames", help="Frames of the output: the input's, then new.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the result (.mp4/.gif).")],
    prompt: Annotated[str, typer.Option("--prompt", help="What the video shows (default: none).")] = "",
    model: Annotated[Path | None, typer.Option("--model", help="A Video LDM folder with a prediction model.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same video.")] = 0,
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps of each predicted clip.")] = 25,
    guidance: Annotated[float, typer.Option("--guidance", help="Text guidance scale with --prompt.")] = 7.5,
    prediction_guidance: Annotated[
        float | None,
        typer.Option("--prediction-guidance", help="Context guidance s of the predicted clips (1: none)."),
    ] = None,
    keyframes_only: Annotated[
        bool, typer.Option("--keyframes-only", help="Predict consecutive frames: no interpolation.")
    ] = False,
) -> None:
    """Continue a video: its last frames are the context of the next clips; prints the written path."""
    check_video_paths(input_video, output)
    if steps < 1:
        fail(f"--steps must be >= 1, got {steps}")
    for name, value in (("--guidance", guidance), ("--prediction-guidance", prediction_guidance)):
        if value is not None and not 0 <= value < float("inf"):
            fail(f"{name} must be a number >= 0, got {value}")
    folder = model_dir(model)
    from videoldm.pipelines.extend import min_input_frames
    from videoldm.pipelines.generate import has_interpolation
    from videoldm.pipelines.rollout import MAX_FRAMES, PredictionSpec

    try:
        spec = PredictionSpec.read(folder)
    except ValueError as err:
        fail(f"--model {folder}: {err}")
    if spec is None:
        fail(f"--model {folder}: no prediction model (prediction.json); train one with stage 'prediction'")
    stack = has_interpolation(folder) and not keyframes_only
    info = _probe(input_video, folder)
    need = min_input_frames(spec, stack=stack)
    if info.num_frames < need:
        fail(
            f"INPUT_VIDEO {input_video}: {info.num_frames} frame(s); the prediction model's context needs at least "
            f"{need}{' (2 key frames 16 frames apart)' if stack else ''}"
        )
    if not info.num_frames < num_frames <= MAX_FRAMES:
        fail(
            f"--num-frames must be more than the input's {info.num_frames} frames and at most {MAX_FRAMES}, "
            f"got {num_frames}"
        )

    from videoldm.io import VideoReadError, VideoWriter, read_video
    from videoldm.pipelines.extend import extend_video
    from videoldm.pipelines.generate import VideoRequest, load_pipeline

    try:
        video, fps = read_video(input_video)
    except (VideoReadError, ValueError) as err:
        fail(str(err))
    try:
        pipe = load_pipeline(folder, stack=stack)
    except (OSError, ValueError) as err:
        fail(f"cannot load model {folder}: {err}")
    request = VideoRequest(
        prompt=prompt,
        num_frames=num_frames,
        height=info.height,
        width=info.width,
        seed=seed,
        steps=steps,
        guidance=guidance,
        keyframes_only=keyframes_only,
        prediction_guidance=prediction_guidance,
    )
    with VideoWriter(output, fps=fps) as writer:  # a temporary file, renamed when every frame is written
        for piece in extend_video(pipe, video, request, spec):
            writer.write(piece)
    typer.echo(f"{output} ({video.shape[1]} -> {writer.num_frames} frames at {fps:g} fps)")


def _probe(path: Path, folder: Path):
    """The input's `VideoInfo`, checked against the model's sizes (from the folder's configs); exit 2 otherwise."""
    from videoldm.io import VideoReadError, probe_video
    from videoldm.loading import ModelGeometry

    try:
        info = probe_video(path)
        geometry = ModelGeometry.read(folder)
        geometry.check_size("the video's height", info.height)
        geometry.check_size("the video's width", info.width)
    except (VideoReadError, OSError, ValueError, KeyError) as err:
        fail(f"INPUT_VIDEO {path}: {err}")
    return info
