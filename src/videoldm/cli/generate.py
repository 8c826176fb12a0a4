"""`videoldm generate PROMPT`: sample a video with a Video LDM folder (default: the shipped tiny model).

Every argument is checked before the model is loaded -- sizes from the folder's JSON configs alone -- so bad
input costs nothing and exits with code 2 and one line; the video is written atomically (io.write_video).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

from videoldm.cli.app import app, fail, model_dir


@app.command()
def generate(
    prompt: str = typer.Argument(..., help='What the video shows, e.g. "a red circle moving right".'),
    model: Path | None = typer.Option(None, "--model", help="A Video LDM folder (default: the shipped tiny model)."),
    num_frames: int = typer.Option(16, "--num-frames", help="Frames T."),
    steps: int = typer.Option(25, "--steps", help="Denoising steps."),
    guidance: float = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale (<= 1: off)."),
    seed: int | None = typer.Option(None, "--seed", help="Noise seed (default: a random one, put in the name)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second of the written video."),
    height: int | None = typer.Option(None, "--height", help="Pixels (default: the model's training size)."),
    width: int | None = typer.Option(None, "--width", help="Pixels (default: the model's training size)."),
    negative_prompt: str | None = typer.Option(None, "--negative-prompt", help="Steer away from this."),
    image_only: bool = typer.Option(False, "--image-only", help="Every alpha = 1: the image model per frame."),
    image_decoder: bool = typer.Option(False, "--image-decoder", help="Ignore a temporal decoder."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="ddim, dpm++ or euler (default: the model's)."),
    output: Path | None = typer.Option(None, "--output", "-o", help=".mp4 or .gif (default ./videoldm-SEED.mp4)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda if available)."),
    dtype: str = typer.Option(
        "fp32", "--dtype", help="fp32, bf16 (CPUs with native bf16, GPUs) or fp16 (GPUs): the weights' precision."
    ),
    compile_unet: bool = typer.Option(
        False, "--compile", help="torch.compile the UNet: minutes to start; for GPUs and long runs (see docs)."
    ),
    upscale: bool = typer.Option(
        False, "--upscale", help="Then run the folder's video upsampler (upsampler/) on the video (docs/upsampler.md)."
    ),
) -> None:
    """Generate a video from text and print the path of the written .mp4 / .gif."""
    seed = secrets.randbelow(2**31) if seed is None else seed
    output = output or Path(f"videoldm-{seed}.mp4")
    _check_arguments(prompt, num_frames=num_frames, steps=steps, guidance=guidance, fps=fps, scheduler=scheduler)
    _check_output(output)
    folder = model_dir(model)
    height, width = _check_size(folder, height, width)
    upscaler = _load_upscaler(folder, height, width) if upscale else None  # checked before sampling anything

    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, _check_dtype(dtype, device))

    from videoldm.diffusion import make_scheduler
    from videoldm.io import write_video
    from videoldm.pipelines import VideoLDMPipeline

    try:
        pipe = VideoLDMPipeline.from_pretrained(folder, image_decoder=image_decoder, torch_dtype=torch_dtype)
    except (OSError, ValueError) as err:
        fail(f"cannot load model {folder}: {err}")
    if scheduler is not None:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.to(device)
    if compile_unet:
        # Off by default: on a 2-core CPU compiling took ~2 min and the compiled UNet was no faster
        # (docs/benchmarks.md); the time pays back on GPUs and over many videos.
        pipe.unet = torch.compile(pipe.unet)
    pipe.set_progress_bar_config(desc="generating", unit="step")
    video = pipe(
        prompt,
        num_frames=num_frames,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=guidance,
        negative_prompt=negative_prompt,
        generator=torch.Generator().manual_seed(seed),
        image_only=image_only,
        image_decoder=image_decoder,
    ).frames
    if upscaler is not None:
        upscaler.to(device)
        video = upscaler(video, generator=torch.Generator().manual_seed(seed), image_only=image_only).frames
    typer.echo(str(write_video(output, video[0].cpu(), fps=fps)))


def _load_upscaler(folder: Path, height: int, width: int):
    """The folder's `VideoUpscalePipeline`, checked to take `height` x `width` videos; exit 2 otherwise."""
    from videoldm.layout import UPSAMPLER
    from videoldm.pipelines.upscale import VideoUpscalePipeline

    if not (folder / UPSAMPLER).is_dir():
        fail(f"--upscale: {folder} has no {UPSAMPLER}/ folder (a video upsampler)")
    try:
        upscaler = VideoUpscalePipeline.from_pretrained(folder)
        upscaler.upsampler.check_input_size(height, width)
    except (OSError, ValueError) as err:
        fail(f"--upscale: {err}")
    return upscaler


def _check_arguments(
    prompt: str, *, num_frames: int, steps: int, guidance: float, fps: float, scheduler: str | None
) -> None:
    if not prompt.strip():
        fail("PROMPT must not be empty")
    if num_frames < 1:
        fail(f"--num-frames must be >= 1, got {num_frames}")
    if steps < 1:
        fail(f"--steps must be >= 1, got {steps}")
    if not guidance >= 0:
        fail(f"--guidance must be >= 0, got {guidance}")
    if not 0 < fps < float("inf"):
        fail(f"--fps must be a positive number, got {fps}")
    from videoldm.diffusion import SAMPLERS

    if scheduler is not None and scheduler not in SAMPLERS:
        fail(f"--scheduler must be one of {', '.join(SAMPLERS)}, got {scheduler!r}")


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _check_dtype(dtype: str, device: str) -> str:
    """The torch dtype name for --dtype; fp16 only off the CPU (PyTorch's CPU kernels lack or emulate it)."""
    if dtype not in DTYPES:
        fail(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "fp16" and device.startswith("cpu"):
        fail("--dtype fp16 needs a GPU (--device cuda); on a CPU use bf16 or fp32")
    return DTYPES[dtype]


def _check_output(output: Path) -> None:
    """A .mp4 or .gif path in an existing, writable folder (checked before any work)."""
    if output.is_dir():
        fail(f"--output {output} is a folder; expected a .mp4 or .gif file path")
    if output.suffix.lower() not in (".mp4", ".gif"):
        fail(f"--output {output}: unknown extension {output.suffix!r}; expected .mp4 or .gif")
    folder = output.parent
    if not folder.is_dir():
        fail(f"--output {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f"--output {output}: folder {folder} is not writable")


def _check_size(folder: Path, height: int | None, width: int | None) -> tuple[int, int]:
    """The video size, defaulting to the model's; both checked as the pipeline checks them
    (`ModelGeometry.check_size`), from the folder's configs alone."""
    from videoldm.loading import ModelGeometry

    try:
        geometry = ModelGeometry.read(folder)
    except (OSError, ValueError, KeyError) as err:
        fail(f"cannot read the configs of {folder}: {err}")
    default = geometry.default_size
    sizes = {"--height": default if height is None else height, "--width": default if width is None else width}
    for name, value in sizes.items():
        try:
            geometry.check_size(name, value)
        except ValueError as err:
            fail(str(err))
    return sizes["--height"], sizes["--width"]
