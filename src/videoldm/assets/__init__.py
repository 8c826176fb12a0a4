"""Model files shipped inside the package: the tiny shapes-world Video LDM, `videoldm generate`'s default."""

from __future__ import annotations

from pathlib import Path

from videoldm.layout import UNET

SHIPPED_MODEL = "tiny-shapes"


def shipped_model_dir() -> Path:
    """The folder of the shipped tiny model (unet/, temporal/, vae/, text_encoder/, tokenizer/, scheduler/).

    Raises FileNotFoundError, saying what to do, when the package was built without it.
    """
    folder = Path(__file__).resolve().parent / SHIPPED_MODEL
    if not (folder / UNET).is_dir():
        raise FileNotFoundError(
            f"the shipped model is not installed: {folder} has no {UNET}/ folder; train it (see docs/) "
            "or pass --model DIR"
        )
    return folder
