"""Run every benchmark and write benchmarks/results/ (markdown tables + PNG plots): `python -m benchmarks.run_all`.

Order: parameter counts (instant), UNet comparison (a), training (d), ceiling (c). `--only NAME ...` runs a subset.
The end-to-end `videoldm generate` benchmark (e, benchmarks/generate_e2e.py) is not run until the shipped model
exists. The decoder benchmarks (benchmarks/decoder_*.py) have their own entry points.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import ceiling, param_counts, training, unet_compare
from benchmarks.common import RESULTS, load_average

BENCHMARKS = {
    "params": param_counts.run,
    "unet": unet_compare.run,
    "training": training.run,
    "ceiling": ceiling.run,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    args = parser.parse_args(argv)
    for name in args.only:
        start = time.perf_counter()
        print(f"[{name}] running (1-min load average {load_average():.2f}) ...", flush=True)
        BENCHMARKS[name]()
        print(f"[{name}] done in {time.perf_counter() - start:.0f} s -> {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
