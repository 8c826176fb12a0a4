"""Benchmark (e), NOT yet run by `run_all`: end-to-end `videoldm generate` with the shipped model.

Wall time and peak RSS of the CLI against the number of frames (16, 64, 256) and sampling steps, each in a fresh
process (peak RSS = the child's ru_maxrss). The per-stage breakdown (text encoder, denoising, decoding) needs the
pipeline to report stage timings; until the shipped model and `videoldm generate` exist this script only checks
for them and says what is missing. Add `generate_e2e.run` to `benchmarks/run_all.py` once they do.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FRAMES = (16, 64, 256)
STEPS = (25, 50)


def generate_available() -> bool:
    """True when the `videoldm generate` command is registered."""
    proc = subprocess.run([sys.executable, "-m", "videoldm", "generate", "--help"], capture_output=True, text=True)
    return proc.returncode == 0


def time_generate(prompt: str, *, frames: int, steps: int, extra_args: Sequence[str] = ()) -> dict[str, Any]:
    """Wall time and peak RSS (MiB) of one `videoldm generate` run in a fresh process."""
    out_dir = Path(tempfile.mkdtemp(prefix="videoldm-e2e-"))
    cmd = [sys.executable, "-m", "videoldm", "generate", prompt, "--output", str(out_dir / "out.mp4")]
    cmd += ["--num-frames", str(frames), "--steps", str(steps), *extra_args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    shutil.rmtree(out_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    # RUSAGE_CHILDREN: the largest ru_maxrss of any waited-for child so far; runs go from small to large.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"frames": frames, "steps": steps, "wall_s": wall, "peak_rss_mb": peak}


def run(prompt: str = "a red circle moving right") -> list[dict[str, Any]]:
    if not generate_available():
        raise SystemExit("`videoldm generate` is not available yet: benchmark (e) waits for the shipped model")
    return [time_generate(prompt, frames=f, steps=s) for s in STEPS for f in FRAMES]


if __name__ == "__main__":
    for row in run():
        print(row)
