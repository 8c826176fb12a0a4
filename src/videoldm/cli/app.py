"""The typer application and the shared error convention: bad input exits with code 2 and one line."""

from __future__ import annotations

from typing import NoReturn

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Video LDM: align your latents.")
data_app = typer.Typer(no_args_is_help=True, help="Make or inspect datasets.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate models and videos.")
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")


def fail(message: str) -> NoReturn:
    """Print a one-line error to stderr and exit with code 2 (bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)
