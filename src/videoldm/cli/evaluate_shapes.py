"""`videoldm evaluate shapes`: prompt adherence, identity consistency and smoothness of a shapes-world Video LDM,
aligned vs image-only (the paper's central claim at small scale); writes docs/evaluation/shapes.{md,json,png}
and shapes_grid.gif."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from videoldm.cli.app import evaluate_app, fail, model_dir


def _command(model: Path | None, options: dict[str, object]) -> str:
    """The command line that reproduces the run (default options left out; --model only when given)."""
    words = ["videoldm", "evaluate", "shapes"]
    if model is not None:
        words += ["--model", str(model)]
    for name, value in options.items():
        if value is not None:
            words += [name, str(value)]
    return shlex.join(words)


@evaluate_app.command("shapes")
def shapes_command(
    model: Annotated[
        Path | None, typer.Option("--model", help="A Video LDM folder (default: the shipped tiny model).")
    ] = None,
    videos_per_caption: Annotated[int, typer.Option("--videos-per-caption", help="Videos K per caption.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every video's noise.")] = 0,
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps.")] = 25,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 7.5,
    num_frames: Annotated[int, typer.Option("--num-frames", help="Frames T per video (>= 3).")] = 16,
    out: Annotated[Path, typer.Option("--out", help="Folder for shapes.md/.json/.png and shapes_grid.gif.")] = Path(
        "docs/evaluation"
    ),
    batch_size: Annotated[int, typer.Option("--batch-size", help="Videos per pipeline call.")] = 16,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, ... (default: cuda if any).")] = None,
    captions_limit: Annotated[
        int | None,
        typer.Option(
            "--captions-limit", hidden=True, help="Only N captions, balanced over colours, shapes and directions."
        ),
    ] = None,
) -> None:
    """Generate K videos per shapes-world caption with the aligned model and with every alpha = 1 (same noise),
    analyse each and write the comparison (table, targets, plot, GIF grid) into --out."""
    for name, value in (("--videos-per-caption", videos_per_caption), ("--steps", steps), ("--batch-size", batch_size)):
        if value < 1:
            fail(f"{name} must be >= 1, got {value}")
    if num_frames < 3:
        fail(f"--num-frames must be >= 3 (direction and smoothness need a centroid track), got {num_frames}")
    if not guidance >= 0:
        fail(f"--guidance must be >= 0, got {guidance}")
    if captions_limit is not None and not 1 <= captions_limit <= 48:
        fail(f"--captions-limit must be in [1, 48], got {captions_limit}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    folder = model_dir(model)

    from videoldm.data.shapes import all_captions
    from videoldm.evaluation.shapes_eval import ShapesEvalSettings, evaluate_shapes, spread_captions
    from videoldm.evaluation.shapes_report import model_fingerprint, write_report

    settings = ShapesEvalSettings(
        videos_per_caption=videos_per_caption,
        seed=seed,
        steps=steps,
        guidance=guidance,
        num_frames=num_frames,
        batch_size=batch_size,
    )
    captions = all_captions() if captions_limit is None else spread_captions(captions_limit)
    try:
        result = evaluate_shapes(folder, settings=settings, captions=captions, device=device)
    except (OSError, ValueError) as err:
        fail(f"cannot evaluate {folder}: {err}")
    options = {
        "--videos-per-caption": videos_per_caption,
        "--seed": seed,
        "--steps": steps,
        "--guidance": guidance,
        "--num-frames": num_frames,
        "--batch-size": batch_size,
        "--captions-limit": captions_limit,
        "--out": out,
    }
    from videoldm.assets import SHIPPED_MODEL

    shown_model = f"shipped: videoldm/assets/{SHIPPED_MODEL}" if model is None else str(model)
    paths = write_report(
        out, result, command=_command(model, options), model=shown_model, fingerprint=model_fingerprint(folder)
    )
    aligned, image = result.scores["aligned"], result.scores["image-only"]
    typer.echo(
        f"aligned: all correct {aligned['all_correct']:.3f}, consistent {aligned['consistent']:.3f}; "
        f"image-only: all correct {image['all_correct']:.3f}, consistent {image['consistent']:.3f}"
    )
    typer.echo(str(paths["shapes.md"]))
