"""`videoldm train CONFIG.yaml [--resume]`: one trainer, one YAML config per stage."""

from __future__ import annotations

from pathlib import Path

import typer

from videoldm.cli.app import app, fail


@app.command()
def train(
    config: Path = typer.Argument(..., help="A stage config (YAML); see src/videoldm/configs/."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in output_dir."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override train.max_steps."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Override train.max_minutes."),
) -> None:
    """Train one stage (autoencoder, image, temporal, decoder); exports OUTPUT_DIR/model/."""
    from videoldm.training.config import ConfigError, load_config

    try:
        run = load_config(config)
    except ConfigError as err:
        fail(f"{config}: {err}")
    if max_steps is not None:
        if max_steps < 1:
            fail(f"--max-steps must be >= 1, got {max_steps}")
        run.train.max_steps = max_steps
    if max_minutes is not None:
        if max_minutes <= 0:
            fail(f"--max-minutes must be > 0, got {max_minutes}")
        run.train.max_minutes = max_minutes
    from videoldm.training.trainer import train as run_training

    model_dir = run_training(run, resume=resume)
    typer.echo(str(model_dir))
