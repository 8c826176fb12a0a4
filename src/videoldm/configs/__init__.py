"""Training configs shipped inside the package: the tiny shapes-world model's stages, one YAML file each.

A shipped config is named by its path below this folder without `.yaml`, e.g. `tiny-shapes/temporal`, so
`pip install` users can run `videoldm train tiny-shapes/autoencoder` without a checkout. Relative paths inside
a config (data, runs) resolve against the working directory, as for any config file.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent


def shipped_configs() -> list[str]:
    """The names of the shipped configs, sorted: `tiny-shapes/autoencoder`, ..."""
    return sorted(path.relative_to(CONFIGS_DIR).with_suffix("").as_posix() for path in CONFIGS_DIR.rglob("*.yaml"))


def shipped_config(name: str) -> Path:
    """The file of the shipped config `name` (with or without `.yaml`).

    Raises FileNotFoundError listing the shipped names when there is none of that name.
    """
    name = name.removesuffix(".yaml")
    if name not in shipped_configs():  # also keeps `..` and absolute names out of the package folder
        raise FileNotFoundError(f"no shipped config named {name!r}; shipped: {', '.join(shipped_configs())}")
    return CONFIGS_DIR / f"{name}.yaml"


def resolve_config(spec: str | Path) -> Path:
    """A config argument -> its file: an existing path wins, otherwise the shipped config of that name.

    Raises FileNotFoundError, listing the shipped names, when it is neither.
    """
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removesuffix(".yaml")
    if name in shipped_configs():
        return shipped_config(name)
    raise FileNotFoundError(
        f"{spec}: no such config file and no shipped config of that name; shipped: {', '.join(shipped_configs())}"
    )
