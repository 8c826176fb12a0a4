"""Copy a trained model folder into the package as fp16 safetensors (the shipped tiny model).

    python scripts/ship_model.py runs/tiny-shapes/temporal/model src/videoldm/assets/tiny-shapes

Every *.safetensors is rewritten in float16; configs and markers are copied as they are. The destination is
written to a temporary folder first and renamed into place.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from videoldm.training.checkpoint import replace_dir


def ship(source: Path, destination: Path) -> int:
    """Copy `source` to `destination` with fp16 weights; returns the total size in bytes."""
    if not source.is_dir():
        raise SystemExit(f"error: {source} is not a model folder")
    tmp = destination.with_name(f".{destination.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        target = tmp / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".safetensors":
            tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
            save_file(tensors, str(target))
        else:
            shutil.copy2(path, target)
    destination.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(tmp, destination)
    return sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    args = parser.parse_args()
    size = ship(args.source, args.destination)
    print(f"{args.destination}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
