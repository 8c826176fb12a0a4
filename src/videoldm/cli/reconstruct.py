"""`videoldm reconstruct INPUT_VIDEO --output OUT`: a video through a model folder's autoencoder and back.

Users check their autoencoder (and the temporal decoder against the image decoder) with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videoldm import layout
from videoldm.cli.app import app, check_video_paths, fail, model_dir


@app.command()
def reconstruct(
    input_video: Annotated[Path, typer.Argument(help="The video to encode and decode (mp4, webm, gif, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the reconstruction (.mp4/.gif).")],
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder with vae/ (+ temporal_decoder/). Default: shipped.")
    ] = None,
    image_decoder: Annotated[
        bool, typer.Option("--image-decoder", help="Decode each frame alone, ignoring temporal_decoder/.")
    ] = False,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Frames decoded at once (overlapping chunks).")] = 16,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Only the first N frames.")] = None,
) -> None:
    """Encode a video with the model's autoencoder and decode it again (temporal decoder if the model has one)."""
    check_video_paths(input_video, output)
    if chunk_size < 1:
        fail(f"--chunk-size must be >= 1, got {chunk_size}")
    if max_frames is not None and max_frames < 1:
        fail(f"--max-frames must be >= 1, got {max_frames}")
    folder = model_dir(model, parts=(layout.VAE,))  # only the autoencoder is needed

    import torch

    from videoldm.autoencoder import VideoAutoencoder
    from videoldm.io import VideoReadError, read_video, write_video

    try:
        video, fps = read_video(input_video, max_frames=max_frames)
    except (VideoReadError, ValueError) as err:
        fail(str(err))
    try:
        video_ae = VideoAutoencoder.from_model_dir(folder, image_decoder=image_decoder)
    except (FileNotFoundError, ValueError, OSError) as err:
        fail(f"--model {folder}: {err}")
    factor = 2 ** (len(video_ae.vae.config.block_out_channels) - 1)
    if video.shape[-2] % factor or video.shape[-1] % factor:
        fail(
            f"INPUT_VIDEO {input_video}: frames are {video.shape[-1]}x{video.shape[-2]}; width and height must be "
            f"multiples of {factor} for this autoencoder"
        )
    with torch.no_grad():
        latents = video_ae.encode(video[None], chunk_size=chunk_size)
        reconstruction = video_ae.decode(latents, chunk_size=chunk_size, image_decoder=image_decoder)
    write_video(output, reconstruction[0].clamp(-1, 1), fps=fps)
    decoder = "image" if image_decoder or video_ae.temporal is None else "temporal"
    typer.echo(f"{output} ({video.shape[1]} frames, {decoder} decoder)")
