"""Run every benchmark and write benchmarks/results/ (markdown tables + PNG plots): `python -m benchmarks.run_all`.

Order: parameter counts (instant), UNet comparison (a), training (d), ceiling (c), end-to-end `videoldm generate`
with the shipped model (e, benchmarks/generate_e2e.py, about 10 minutes on a 2-core CPU). `--only NAME ...` runs a
subset; `--out DIR` writes elsewhere. The decoder benchmarks (benchmarks/decoder_*.py) have their own entry points.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import ceiling, generate_e2e, param_counts, training, unet_compare
from benchmarks.common import RESULTS, load_average

BENCHMARKS = {
    "params": param_counts.run,
    "unet": unet_compare.run,
    "training": training.run,
    "ceiling": ceiling.run,
    "generate": generate_e2e.run,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results folder (default benchmarks/results/).")
    args = parser.parse_args(argv)
    for name in args.only:
        start = time.perf_counter()
        print(f"[{name}] running (1-min load average {load_average():.2f}) ...", flush=True)
        BENCHMARKS[name](out_dir=args.out)
        print(f"[{name}] done in {time.perf_counter() - start:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
