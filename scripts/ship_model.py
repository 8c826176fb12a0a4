"""Copy a trained model folder into the package as fp16 safetensors (the shipped tiny model).

    python scripts/ship_model.py runs/tiny-shapes/temporal/model src/videoldm/assets/tiny-shapes
    python scripts/ship_model.py RUN/model/temporal src/videoldm/assets/tiny-shapes/temporal --noise-correlation 0.9

Every *.safetensors is rewritten in float16; configs and markers are copied as they are. `--noise-correlation A`
writes the noise prior the temporal layers are sampled with (chosen by measuring, e.g. with
`benchmarks.direction_probe --noise-correlation A`) into the copied temporal/config.json. The destination is
written to a temporary folder first and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from videoldm.diffusion.noise import check_noise_correlation
from videoldm.training.checkpoint import replace_dir


def ship(source: Path, destination: Path, *, noise_correlation: float | None = None) -> int:
    """Copy `source` to `destination` with fp16 weights (and `noise_correlation` in its temporal layers' config);
    returns the total size in bytes."""
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
    if noise_correlation is not None:
        set_noise_correlation(tmp, noise_correlation)
    destination.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(tmp, destination)
    return sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())


def set_noise_correlation(folder: Path, value: float) -> None:
    """Write `value` as `noise_correlation` into the TemporalAdapter config of `folder`: a Video LDM folder
    (its temporal/) or a temporal folder itself."""
    try:
        check_noise_correlation(value, name="--noise-correlation")
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    for path in (folder / "temporal" / "config.json", folder / "config.json"):
        config = json.loads(path.read_text()) if path.is_file() else {}
        if config.get("_class_name") == "TemporalAdapter":
            path.write_text(json.dumps({**config, "noise_correlation": value}, indent=2, sort_keys=True) + "\n")
            return
    raise SystemExit(f"error: --noise-correlation: {folder.name} has no temporal layers (temporal/config.json)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--noise-correlation", type=float, default=None, help="the temporal layers' noise prior")
    args = parser.parse_args()
    size = ship(args.source, args.destination, noise_correlation=args.noise_correlation)
    print(f"{args.destination}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
