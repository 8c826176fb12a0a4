"""`videoldm serve`: the web page (gradio, the optional `ui` extra) that makes videos with a Video LDM folder.

The page (`ui.app`) offers the folder (default: the shipped tiny model) and the personalised models next to it
(`ui.models`), runs one video at a time through the code `videoldm generate` runs (`pipelines.generate`) and
refuses what is over the limits given here. Arguments are checked before gradio is imported; without gradio
the command says how to install it and exits with code 2. README "Web page".
"""

from __future__ import annotations

from pathlib import Path

import typer

from videoldm.cli.app import app, fail, model_dir

UI_EXTRA = "pip install 'videoldm[ui]'"


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    model: Path | None = typer.Option(
        None, "--model", help="The base Video LDM folder (default: the shipped tiny model)."
    ),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Most frames per video (default 113)."),
    max_size: int | None = typer.Option(
        None, "--max-size", help="Largest height / width sampled, in pixels, before upscaling (default 128)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Most denoising steps (default 50)."),
) -> None:
    """Serve a web page that makes videos from text (gradio); Ctrl-C stops it."""
    if not 1 <= port <= 65535:
        fail(f"--port must be in [1, 65535], got {port}")
    for name, value in (("--max-frames", max_frames), ("--max-size", max_size), ("--max-steps", max_steps)):
        if value is not None and value < 1:
            fail(f"{name} must be >= 1, got {value}")
    folder = model_dir(model)
    try:
        import gradio  # noqa: F401  (only to say how to install it when missing)
    except ImportError:
        fail(f"the web page needs gradio: {UI_EXTRA}")

    from videoldm.loading import ModelGeometry
    from videoldm.ui.app import launch
    from videoldm.ui.jobs import Limits

    given = {"max_frames": max_frames, "max_size": max_size, "max_steps": max_steps}
    limits = Limits(**{name: value for name, value in given.items() if value is not None})
    try:
        size = ModelGeometry.read(folder).default_size
    except (OSError, ValueError, KeyError) as err:
        fail(f"cannot read the configs of {folder}: {err}")
    if size > limits.max_size:
        fail(f"--max-size {limits.max_size} is below the model's own size ({size} px); raise it")
    typer.echo(f"serving {folder} on http://{host}:{port} (Ctrl-C stops)")
    try:
        launch(folder, limits, host=host, port=port)
    except OSError as err:
        fail(f"cannot serve on {host}:{port}: {err}")
