"""`videoldm generate PROMPT`: sample a video with a Video LDM folder (default: the shipped tiny model).

With an interpolation model in the folder (`interpolation/`) the default runs the paper's stack
(`pipelines.stack`): K key frames -> x4 -> x4 -> one decode, K the fewest key frames whose 16K - 15 frames cover
--num-frames (default 113 = 8 key frames), the video trimmed to --num-frames and written at --fps (default 30: the
key frames at fps / 16). `--keyframes-only`, and every folder without `interpolation/`, samples --num-frames frames
with the text-to-video model alone (default 16 at 8 fps); `--image-only` samples --num-frames frames with the image
model (every alpha = 1: the "before alignment" baseline of whichever video the folder makes). README "Generate".

Every argument is checked before the model is loaded -- sizes from the folder's JSON configs alone -- so bad
input costs nothing and exits with code 2 and one line; the video is written atomically (io.write_video). The run
itself (load, sample, upscale) is `pipelines.generate`, which `videoldm serve` calls too.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

from videoldm.cli.app import app, fail, model_dir, parse_strengths
from videoldm.defaults import DEFAULT_STEPS


@app.command()
def generate(
    prompt: str = typer.Argument(..., help='What the video shows, e.g. "a red circle moving right".'),
    model: Path | None = typer.Option(None, "--model", help="A Video LDM folder (default: the shipped tiny model)."),
    num_frames: int | None = typer.Option(
        None, "--num-frames", help="Frames of the video (default: 113 = 8 key frames x 16 with the stack, else 16)."
    ),
    steps: int = typer.Option(DEFAULT_STEPS, "--steps", help="Denoising steps (of the key frames, with the stack)."),
    interpolation_steps: int | None = typer.Option(
        None, "--interpolation-steps", help="Denoising steps of each x4 pass of the stack (default 5)."
    ),
    interpolation_strength: str | None = typer.Option(
        None,
        "--interpolation-strength",
        help="Share of each x4 pass's steps run, from the noised blend of its given frames: one number, or two "
        "(key-frame pass, dense pass) as A,B (default 0.4,0; 0: the blend itself; 1: from noise).",
    ),
    guidance: float = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale (<= 1: off)."),
    context_guidance: float | None = typer.Option(
        None, "--context-guidance", help="Context guidance of the stack's x4 passes (default 1: none)."
    ),
    prediction_guidance: float | None = typer.Option(
        None,
        "--prediction-guidance",
        help="Context guidance s of a rollout's predicted clips, for videos longer than one clip (default 1: none).",
    ),
    conv_in_time: bool = typer.Option(
        False,
        "--conv-in-time",
        help="All key frames as one clip, the model on overlapping windows of its trained length (no rollout).",
    ),
    noise_correlation: float | None = typer.Option(
        None,
        "--noise-correlation",
        help="Correlation of the key frames' initial noise across frames, in [0, 1) (default: the model's, "
        "temporal/config.json; 0: i.i.d.).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Noise seed (default: a random one, put in the name)."),
    fps: float | None = typer.Option(
        None, "--fps", help="Frames per second written (default: 30 with the stack, key frames at fps/16; else 8)."
    ),
    keyframes_only: bool = typer.Option(
        False, "--keyframes-only", help="The text-to-video model's frames alone: no interpolation."
    ),
    height: int | None = typer.Option(None, "--height", help="Pixels (default: the model's training size)."),
    width: int | None = typer.Option(None, "--width", help="Pixels (default: the model's training size)."),
    negative_prompt: str | None = typer.Option(None, "--negative-prompt", help="Steer away from this."),
    image_only: bool = typer.Option(False, "--image-only", help="Every alpha = 1: the image model per frame."),
    image_decoder: bool = typer.Option(False, "--image-decoder", help="Ignore a temporal decoder."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="ddim, dpm++ or euler for the key frames (default: the model's)."
    ),
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
    if keyframes_only and image_only:
        fail(
            "--keyframes-only and --image-only exclude each other: --image-only samples every frame with the image "
            "model (no key frames, no interpolation)"
        )
    if conv_in_time and image_only:
        fail("--conv-in-time and --image-only exclude each other: --image-only samples every frame on its own")
    if noise_correlation is not None and image_only:
        fail("--noise-correlation and --image-only exclude each other: --image-only draws every frame's noise alone")
    if noise_correlation is not None:
        from videoldm.diffusion.noise import check_noise_correlation

        try:
            check_noise_correlation(noise_correlation, name="--noise-correlation")
        except ValueError as err:
            fail(str(err))
    _check_output(output)
    folder = model_dir(model)
    # the run itself (`pipelines.generate`, shared with `videoldm serve`); imported here: `--help` stays fast
    from videoldm.pipelines.generate import FPS, STACK_FPS, has_interpolation

    stack_folder = has_interpolation(folder) and not keyframes_only  # the stack's frame count and rate
    run_stack = stack_folder and not image_only
    spec = _prediction_spec(folder)
    strengths = parse_strengths("--interpolation-strength", interpolation_strength, 2)
    num_frames = _check_stack(
        num_frames,
        stack_folder=stack_folder,
        run_stack=run_stack,
        interpolation_steps=interpolation_steps,
        interpolation_strength=interpolation_strength,
        context_guidance=context_guidance,
        predicts=spec is not None or conv_in_time,
    )
    if prediction_guidance is not None and not 0 <= prediction_guidance < float("inf"):
        fail(f"--prediction-guidance must be a number >= 0, got {prediction_guidance}")
    fps = (STACK_FPS if stack_folder else FPS) if fps is None else fps
    height, width = _check_size(folder, height, width)
    upscaler = _load_upscaler(folder, height, width) if upscale else None  # checked before sampling anything

    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, _check_dtype(dtype, device))

    from videoldm.io import VideoWriter, write_video
    from videoldm.pipelines.generate import (
        VideoRequest,
        generate_video,
        keyframe_pipeline,
        load_pipeline,
        needs_stream,
        stream_video,
    )

    try:
        pipe = load_pipeline(
            folder,
            stack=run_stack,
            image_decoder=image_decoder,
            torch_dtype=torch_dtype,
            scheduler=scheduler,
            device=device,
        )
    except (OSError, ValueError) as err:
        fail(f"cannot load model {folder}: {err}")
    if noise_correlation is not None:
        # The layers' prior is the default of every sampler (first clip, predicted clips, conv-in-time's window):
        # set on the loaded model, it reaches them all.
        try:
            keyframe_pipeline(pipe).unet.noise_correlation = noise_correlation
        except ValueError as err:
            fail(f"--noise-correlation: {err}")
    if compile_unet:
        # Off by default: on a 2-core CPU compiling took ~2 min and the compiled UNet was no faster
        # (docs/benchmarks.md); the time pays back on GPUs and over many videos.
        keyframes = keyframe_pipeline(pipe)
        keyframes.unet = torch.compile(keyframes.unet)
        if run_stack:
            pipe.interpolation.unet = torch.compile(pipe.interpolation.unet)
    request = VideoRequest(
        prompt=prompt,
        num_frames=num_frames,
        height=height,
        width=width,
        seed=seed,
        steps=steps,
        guidance=guidance,
        negative_prompt=negative_prompt,
        image_only=image_only,
        image_decoder=image_decoder,
        interpolation_steps=interpolation_steps,
        interpolation_strength=strengths,
        context_guidance=context_guidance,
        prediction_guidance=prediction_guidance,
        conv_in_time=conv_in_time,
    )
    if needs_stream(request, spec, stack=run_stack):
        if upscaler is not None:
            fail("--upscale: not with a rollout or --conv-in-time; upscale the written video instead")
        with VideoWriter(output, fps=fps) as writer:  # piece by piece into a temporary file, renamed at the end
            for piece in stream_video(pipe, request, spec):
                writer.write(piece)
        typer.echo(str(output))
        return
    video = generate_video(pipe, request, upscaler=upscaler)
    typer.echo(str(write_video(output, video, fps=fps)))


def _check_stack(
    num_frames: int | None,
    *,
    stack_folder: bool,
    run_stack: bool,
    interpolation_steps: int | None,
    interpolation_strength: str | None,
    context_guidance: float | None,
    predicts: bool,
) -> int:
    """The frame count (default: the stack's 113 in a folder with interpolation/, else 16), checked against the
    stack's range when the stack runs (one clip of MAX_KEYFRAMES key frames, or a rollout up to
    `rollout.MAX_FRAMES` with a prediction model); the stack's own options refused when it does not."""
    from videoldm.pipelines.generate import FRAMES
    from videoldm.pipelines.rollout import MAX_FRAMES, check_length
    from videoldm.pipelines.stack import DEFAULT_KEYFRAMES, stack_frames

    if not run_stack:
        for name, value in (
            ("--interpolation-steps", interpolation_steps),
            ("--interpolation-strength", interpolation_strength),
            ("--context-guidance", context_guidance),
        ):
            if value is not None:
                fail(
                    f"{name}: only the stack uses it, and this run has no interpolation (--keyframes-only, "
                    "--image-only, or no interpolation/ in the model folder)"
                )
    if interpolation_steps is not None and interpolation_steps < 1:
        fail(f"--interpolation-steps must be >= 1, got {interpolation_steps}")
    if context_guidance is not None and not 0 <= context_guidance < float("inf"):
        fail(f"--context-guidance must be a number >= 0, got {context_guidance}")
    if num_frames is None:
        return stack_frames(DEFAULT_KEYFRAMES) if stack_folder else FRAMES
    if num_frames > MAX_FRAMES or (run_stack and num_frames < 2):
        fail(f"--num-frames must be in [{2 if run_stack else 1}, {MAX_FRAMES}], got {num_frames}")
    try:
        check_length(num_frames, None, stack=run_stack and not predicts)
    except ValueError as err:
        fail(f"--num-frames: {err}; --keyframes-only for other counts")
    return num_frames


def _prediction_spec(folder: Path):
    """The folder's `PredictionSpec` (None: no prediction model); exit 2 when its prediction.json is broken."""
    from videoldm.pipelines.rollout import PredictionSpec

    try:
        return PredictionSpec.read(folder)
    except ValueError as err:
        fail(f"--model {folder}: {err}")


def _load_upscaler(folder: Path, height: int, width: int):
    """The folder's `VideoUpscalePipeline`, checked to take `height` x `width` videos; exit 2 otherwise."""
    from videoldm.pipelines.generate import load_upscaler

    try:
        return load_upscaler(folder, height, width)
    except (OSError, ValueError) as err:
        fail(f"--upscale: {err}")


def _check_arguments(
    prompt: str, *, num_frames: int | None, steps: int, guidance: float, fps: float | None, scheduler: str | None
) -> None:
    if not prompt.strip():
        fail("PROMPT must not be empty")
    if num_frames is not None and num_frames < 1:
        fail(f"--num-frames must be >= 1, got {num_frames}")
    if steps < 1:
        fail(f"--steps must be >= 1, got {steps}")
    if not guidance >= 0:
        fail(f"--guidance must be >= 0, got {guidance}")
    if fps is not None and not 0 < fps < float("inf"):
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
