"""The typer application and the shared error convention: bad input exits with code 2 and one line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer

from videoldm.layout import VIDEO_LDM_PARTS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Video LDM: align your latents.")
data_app = typer.Typer(no_args_is_help=True, help="Make or inspect datasets.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate models and videos.")
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")


@app.callback()
def _main() -> None:
    """Video LDM: align your latents."""
    from videoldm.cpu import tune_cpu

    tune_cpu()


def fail(message: str) -> NoReturn:
    """Print a one-line error to stderr and exit with code 2 (bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def parse_strengths(name: str, text: str | None, passes: int) -> float | tuple[float, ...] | None:
    """A strength option of the x4 passes: one number for every pass, or `passes` comma-separated (coarsest
    first), each in [0, 1] (0: the given frames' latent blend, no model call); exit 2 naming `name` otherwise."""
    if text is None:
        return None
    expected = "a number in [0, 1]" if passes == 1 else f"a number or {passes} comma-separated numbers in [0, 1]"
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        fail(f"{name} must be {expected}, got {text!r}")
    if len(values) not in (1, passes) or not all(0 <= value <= 1 for value in values):
        fail(f"{name} must be {expected}, got {text!r}")
    return values[0] if len(values) == 1 else values


def model_dir(model: Path | None, *, parts: tuple[str, ...] = VIDEO_LDM_PARTS) -> Path:
    """--model, or the shipped model folder when None, checked to hold the subfolders `parts`; a one-line
    error (exit code 2) naming the missing folder otherwise. Imports lazily: `--help` stays fast."""
    from videoldm.assets import shipped_model_dir
    from videoldm.loading import check_model_dir

    try:
        return check_model_dir(shipped_model_dir() if model is None else model, parts)
    except FileNotFoundError as err:
        fail(str(err))


def check_video_paths(input_video: Path, output: Path) -> None:
    """An existing input video with a readable extension and an output path with a writable one, its folder
    created if missing and writable; exit 2 with one line otherwise (reconstruct, upscale, interpolate)."""
    from videoldm.io import VIDEO_EXTENSIONS, WRITE_EXTENSIONS

    if not input_video.is_file():
        fail(f"INPUT_VIDEO {input_video}: file not found")
    if input_video.suffix.lower() not in VIDEO_EXTENSIONS:
        fail(f"INPUT_VIDEO {input_video}: unknown extension {input_video.suffix!r}; expected one of {VIDEO_EXTENSIONS}")
    if output.suffix.lower() not in WRITE_EXTENSIONS:
        fail(f"--output {output}: unknown extension {output.suffix!r}; expected one of {WRITE_EXTENSIONS}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"--output {output}: cannot create its folder ({err.strerror})")
    if not os.access(output.parent, os.W_OK):
        fail(f"--output {output}: folder {output.parent} is not writable")
