"""Imports every command module so that its commands register on the app."""

# Add one import per command module here (each module decorates functions with @app.command, ...).
from videoldm.cli import train  # noqa: F401
from videoldm.cli import evaluate_metrics  # noqa: F401
from videoldm.cli import data  # noqa: F401
from videoldm.cli import reconstruct  # noqa: F401
from videoldm.cli import generate  # noqa: F401
