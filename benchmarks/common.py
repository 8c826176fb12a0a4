"""Shared benchmark plumbing: machine description, timing (medians after warm-up), peak RSS in a fresh
subprocess, and atomic markdown / PNG output under benchmarks/results/."""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"


# ---------------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    """The 1-minute load average (other processes competing for the cores), or -1 where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def machine_info() -> dict[str, Any]:
    import diffusers

    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "load_1min": round(load_average(), 2),
    }


def machine_header(info: dict[str, Any], *, load_before: float, load_after: float) -> str:
    """The line every results table starts with."""
    # Only the load before the run says whether other processes compete: the load after counts this benchmark's
    # own threads (and a preceding benchmark's tail shows in `before` for a minute).
    busy = (
        " Other processes were running (load average > threads before the run): timings are noisy, compare ratios."
        if load_before > info["torch_threads"] * 0.75
        else ""
    )
    return (
        f"Machine: {info['cpu']} ({info['cpu_capability']}), {info['logical_cpus']} logical CPUs, "
        f"torch threads {info['torch_threads']}; "
        f"torch {info['torch']}, diffusers {info['diffusers']}, Python {info['python']}; "
        f"1-min load average {load_before:.2f} before, {load_after:.2f} after.{busy}"
    )


# ---------------------------------------------------------------------------------------------------- timing
def median_time(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 3) -> float:
    """Median wall time (s) of `fn()` over `repeats` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_times(
    fns: dict[str, Callable[[], Any]], *, warmup: int = 1, repeats: int = 3
) -> dict[str, float]:
    """Median times of several functions measured round-robin, so a burst of load from other processes
    hits all of them alike (their ratios stay meaningful on a shared machine)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# ---------------------------------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) of this process; False where not supported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """VmHWM in MiB (resettable), else ru_maxrss (process lifetime)."""
    try:
        return _status_kb("VmHWM") / 1024
    except (OSError, KeyError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def measure_peak_memory(setup: Callable[[], Callable[[], Any]], *, baseline_mb: float) -> dict[str, float]:
    """Peak RSS of one run of the callable that `setup()` returns, after one warm-up run.

    peak_mb: the RSS high-water mark during the measured run minus `baseline_mb` (the process after its
    imports), so it counts weights, gradients, optimizer state and activations. step_mb: the same high-water
    mark minus the RSS just before the run: the transient memory of the run itself.
    """
    run = setup()
    run()
    gc.collect()
    before = current_rss_mb()
    exact = reset_peak_rss()
    run()
    peak = peak_rss_mb()
    return {"peak_mb": peak - baseline_mb, "step_mb": peak - before, "hwm_reset": float(exact)}


def run_in_subprocess(
    module: str, function: str, kwargs: dict[str, Any], *, timeout: float = 1800, malloc_tuning: bool = True
) -> dict[str, Any]:
    """Run `module.function(**kwargs)` in a fresh Python (its own RSS), returning its JSON result.

    With `malloc_tuning`, glibc's malloc is told to serve every large block with mmap, so memory freed by the
    warm-up run goes back to the kernel and the measured run's high-water mark is its own (at some cost in time:
    every large allocation faults in fresh pages); without it the child runs with malloc as users get it. The
    child uses this process's thread count.
    """
    threads = str(torch.get_num_threads())
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    if malloc_tuning:
        env |= {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    # The baseline is taken after importing the benchmark module (torch, diffusers, videoldm): library code
    # is not counted, only what the measured function allocates.
    code = (
        "import json, sys, importlib\n"
        "from benchmarks.common import current_rss_mb\n"
        f"fn = getattr(importlib.import_module({module!r}), {function!r})\n"
        "base = current_rss_mb()\n"
        "out = fn(baseline_mb=base, **json.loads(sys.argv[1]))\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module}.{function}({kwargs}) failed in its subprocess:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


# ---------------------------------------------------------------------------------------------------- output
def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, floats: str = ".3g") -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return format(value, floats)
        return "—" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def shown_path(path: Path) -> Path:
    """The path relative to the working directory where it lies under it (results files name repo paths, not
    this machine's absolute ones)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are committed and read by everyone
    os.replace(tmp, path)
    return path


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
