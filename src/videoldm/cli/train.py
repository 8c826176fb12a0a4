"""`videoldm train CONFIG [--resume]`: one trainer, one YAML config per stage.

CONFIG is a YAML file or the name of a config shipped in the package (`tiny-shapes/temporal`); a path that
exists wins. The command prints which file it read.
"""

from __future__ import annotations

import typer

from videoldm.cli.app import app, fail
from videoldm.configs import shipped_configs
from videoldm.training.stages import STAGES

# The help lists the configs that ship in the package (read from its folder, so it cannot name a missing one).
_CONFIG_HELP = f"A stage config: a YAML file, or the name of a shipped config: {', '.join(shipped_configs())}."


@app.command(help=f"Train one stage ({', '.join(STAGES)}); exports OUTPUT_DIR/model/.")
def train(
    config: str = typer.Argument(..., help=_CONFIG_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in output_dir."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override train.max_steps."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Override train.max_minutes."),
) -> None:
    from videoldm.configs import resolve_config
    from videoldm.training.config import ConfigError
    from videoldm.training.stages import load_config

    try:
        path = resolve_config(config)
    except FileNotFoundError as err:
        fail(str(err))
    typer.echo(f"config: {path}")
    try:
        run = load_config(path)
    except ConfigError as err:
        fail(f"{path}: {err}")
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
