"""`videoldm upscale INPUT --output OUT`: a video through a model folder's video upsampler (PAPER.md section 6).

`--image-only` runs the same upsampler with its temporal layers off: the image upsampler, frame by frame (the
paper's baseline). Bad input -- a size the upsampler cannot take, an unreadable file, a folder without
`upsampler/`, a noise level out of range -- exits with code 2 and one line, and leaves no output file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videoldm import layout
from videoldm.cli.app import app, check_video_paths, fail, model_dir


@app.command()
def upscale(
    input_video: Annotated[Path, typer.Argument(help="The low-resolution video (mp4, webm, gif, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the upscaled video (.mp4/.gif).")],
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder with upsampler/. Default: the shipped model.")
    ] = None,
    image_only: Annotated[
        bool, typer.Option("--image-only", help="Temporal layers off: each frame upscaled alone (the baseline).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same video.")] = 0,
    noise_level: Annotated[
        int | None,
        typer.Option("--noise-level", help="Noise augmentation of the input (default: the upsampler's level)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps.")] = 20,
    input_guidance: Annotated[
        float,
        typer.Option(
            "--input-guidance", help="Guidance over the input (s != 1; for upsamplers trained with context_dropout)."
        ),
    ] = 1.0,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Frames per window (overlapping, blended).")] = 16,
    tile_size: Annotated[
        int | None, typer.Option("--tile-size", help="Output pixels per tile side (default: whole frames).")
    ] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Only the first N frames.")] = None,
) -> None:
    """Upscale a video with the model's video upsampler (temporally aligned unless --image-only)."""
    check_video_paths(input_video, output)
    for name, value in (("--steps", steps), ("--chunk-size", chunk_size), ("--max-frames", max_frames or 1)):
        if value < 1:
            fail(f"{name} must be >= 1, got {value}")
    if noise_level is not None and noise_level < 0:
        fail(f"--noise-level must be >= 0, got {noise_level}")
    folder = model_dir(model, parts=(layout.UPSAMPLER,))

    import torch

    from videoldm.io import VideoReadError, read_video, write_video
    from videoldm.pipelines.upscale import VideoUpscalePipeline

    try:
        pipe = VideoUpscalePipeline.from_pretrained(folder, image_only=image_only)
    except (FileNotFoundError, ValueError, OSError) as err:
        fail(f"--model {folder}: {err}")
    try:
        video, fps = read_video(input_video, max_frames=max_frames)
    except (VideoReadError, ValueError) as err:
        fail(str(err))
    try:
        pipe.check_inputs(
            video[None],
            noise_level=pipe.upsampler.config.noise_level if noise_level is None else noise_level,
            num_inference_steps=steps,
            chunk_size=chunk_size,
            chunk_overlap=chunk_size // 4,
            tile_size=tile_size,
            tile_overlap=0 if tile_size is None else tile_size // 4,
            output_type="pt",
        )
    except ValueError as err:
        fail(f"{input_video}: {err}")  # the size, the noise level or the window sizes
    upscaled = pipe(
        video[None],
        noise_level=noise_level,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        chunk_size=chunk_size,
        tile_size=tile_size,
        image_only=image_only,
        input_guidance_scale=input_guidance,
    ).frames
    write_video(output, upscaled[0], fps=fps)  # atomic: a temporary file renamed into place
    kind = "image" if image_only or not pipe.upsampler.has_temporal else "video"
    typer.echo(f"{output} ({video.shape[1]} frames, {upscaled.shape[-1]}x{upscaled.shape[-2]}, {kind} upsampler)")
