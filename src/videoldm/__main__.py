"""`python -m videoldm` runs the CLI (also under torchrun)."""

from videoldm.cli import app

if __name__ == "__main__":
    app()
