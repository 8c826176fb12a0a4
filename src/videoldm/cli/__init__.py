"""The `videoldm` command line. Each subcommand group lives in its own module and registers on `app`."""

from videoldm.cli.app import app

# Importing a command module registers its commands on `app`.
from videoldm.cli import commands  # noqa: F401  isort: skip

__all__ = ["app"]
