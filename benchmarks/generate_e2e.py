"""Benchmark (e): end-to-end `videoldm generate` with the shipped model (src/videoldm/assets/tiny-shapes).

Two measurements:

- Against frames and steps: each setting runs in a fresh subprocess (its own RSS high-water mark) that calls the
  `videoldm generate` command in-process -- argument checks, model loading, generation, writing the mp4 -- once
  as a warm-up (at most 16 frames, 1 step), then `repeats` times. The pipeline's own seams are timed from
  outside by wrapping them (`stage_timer`): loading (`VideoLDMPipeline.from_pretrained`), text encoder
  (`encode_prompt`), denoising (the loop, `VideoLDMPipeline._sample`), decoding (`decode_latents`) and
  writing (`videoldm.io.write_video`); "other" is the rest of the command. The breakdown is that of the run with
  the median total. Peak RSS: the whole process's high-water mark over the measured runs (reset after the
  warm-up), so it counts Python, torch, the model, activations and the video.
- The target: `videoldm generate PROMPT` with nothing else (16 frames at 64 x 64, 25 steps, the shipped model),
  the whole command in a fresh process -- interpreter start, imports, loading, generation, writing the mp4 --
  timed from outside, one warm-up run then the median of `target_runs`; peak RSS from the child's own rusage.
  Issue target: <= 30 s on a 2-core CPU.

Run: .venv/bin/python -m benchmarks.generate_e2e [--out DIR]   (or `python -m benchmarks.run_all --only generate`)
Writes generate_e2e.md and generate_e2e.png; the default settings take about 10 minutes on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from typer.main import get_command

import videoldm.io
from benchmarks.common import (
    RESULTS,
    load_average,
    machine_header,
    machine_info,
    markdown_table,
    peak_rss_mb,
    reset_peak_rss,
    run_in_subprocess,
    save_figure,
    write_atomic,
)
from videoldm.cli import app
from videoldm.pipelines import VideoLDMPipeline, VideoLDMStackPipeline
from videoldm.pipelines.interpolate import VideoInterpolationPipeline

PROMPT = "a red circle moving right"
FRAMES = (16, 64, 256)
STEPS = 25  # the CLI's default
EXTRA_SETTINGS = ((16, 50),)  # (frames, steps): more steps at 16 frames only (256 x 50 would take ~7 min alone)
TARGET_SECONDS = 30.0
TARGET_CPUS = 2
STAGES = ("load", "text encoder", "denoising", "decoding", "writing")


def settings(
    frames: Sequence[int] = FRAMES, steps: int = STEPS, extra: Sequence[tuple[int, int]] = EXTRA_SETTINGS
) -> list[tuple[int, int]]:
    """(frames, steps) pairs in the order they run: small to large."""
    pairs = [(f, steps) for f in frames] + [p for p in extra if p not in [(f, steps) for f in frames]]
    return sorted(pairs, key=lambda p: p[0] * p[1])


def default_repeats(frames: int, steps: int) -> int:
    """3 runs where a run takes up to ~30 s here (16 frames, up to 50 steps), 1 for the long ones."""
    return 3 if frames * steps <= 16 * 50 else 1


# ---------------------------------------------------------------------------------------------------- stages
def _stage_targets() -> list[tuple[Any, str, str]]:
    """(owner, attribute, stage): the seams the `videoldm generate` command goes through -- with the stack
    (`VideoLDMStackPipeline`), "denoising" is the key frames and "interpolating" the two x4 passes."""
    return [
        (VideoLDMPipeline, "from_pretrained", "load"),
        (VideoLDMStackPipeline, "from_pretrained", "load"),
        (VideoLDMPipeline, "encode_prompt", "text encoder"),
        (VideoInterpolationPipeline, "encode_prompt", "text encoder"),
        (VideoLDMPipeline, "_sample", "denoising"),
        (VideoInterpolationPipeline, "interpolate_latents", "interpolating"),
        (VideoLDMPipeline, "decode_latents", "decoding"),
        (videoldm.io, "write_video", "writing"),
    ]


@contextlib.contextmanager
def stage_timer(cpu: dict[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Time the pipeline's stages from outside: while open, each seam in `_stage_targets` is wrapped and its
    wall time (s) added to the yielded {stage: seconds} (and the process's CPU seconds, all threads, to `cpu` when
    given); the originals are put back on exit. Stages the command does not reach stay 0 ("interpolating" without
    the stack)."""
    targets = _stage_targets()
    seconds = dict.fromkeys(STAGES, 0.0) | {stage: 0.0 for _, _, stage in targets}
    if cpu is not None:
        cpu.update(dict.fromkeys(seconds, 0.0))
    originals = [(owner, name, inspect.getattr_static(owner, name)) for owner, name, _ in targets]

    def timed(fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start
                if cpu is not None:
                    cpu[stage] += time.process_time() - start_cpu

        return wrapper

    try:
        for (owner, name, stage), (_, _, raw) in zip(targets, originals, strict=True):
            # a classmethod is wrapped bound to its class; methods and functions as they are
            wrapped = timed(getattr(owner, name), stage)
            setattr(owner, name, staticmethod(wrapped) if isinstance(raw, classmethod) else wrapped)
        yield seconds
    finally:
        for owner, name, raw in originals:
            setattr(owner, name, raw)


def cli_args(prompt: str, *, frames: int, steps: int, output: Path, model: str | None = None) -> list[str]:
    args = ["generate", prompt, "--num-frames", str(frames), "--steps", str(steps), "--seed", "0"]
    args += ["--output", str(output)] + ([] if model is None else ["--model", model])
    return args


def generate_once(prompt: str, *, frames: int, steps: int, model: str | None = None) -> dict[str, Any]:
    """One in-process `videoldm generate` call: total wall time (s), seconds per stage, the mp4's size."""
    command = get_command(app)  # click's main: returns the exit code instead of exiting
    with tempfile.TemporaryDirectory(prefix="videoldm-e2e-") as tmp:
        output = Path(tmp) / "video.mp4"
        args = cli_args(prompt, frames=frames, steps=steps, output=output, model=model)
        with stage_timer() as seconds:
            start = time.perf_counter()
            code = command.main(args, prog_name="videoldm", standalone_mode=False)
            total = time.perf_counter() - start
        if code or not output.is_file():
            raise RuntimeError(f"videoldm {' '.join(args)} exited with {code} and wrote no video")
        size = output.stat().st_size
    seconds = {k: seconds[k] for k in STAGES}  # the table's stages (no stack here: the shipped folder has none)
    return {"total_s": total, **seconds, "other": total - sum(seconds.values()), "mp4_bytes": size}


def measure(
    *,
    baseline_mb: float,
    frames: int,
    steps: int,
    repeats: int,
    model: str | None = None,
    prompt: str = PROMPT,
) -> dict[str, Any]:
    """One setting, meant for a fresh process: a warm-up command (at most 16 frames, 1 step), then `repeats`
    commands. Returns the median total, the stage seconds of the median run, every total, and peak RSS (MB):
    the process's high-water mark over the measured runs, and that minus `baseline_mb` (the RSS after imports)."""
    generate_once(prompt, frames=min(frames, 16), steps=1, model=model)
    exact = reset_peak_rss()
    runs = [generate_once(prompt, frames=frames, steps=steps, model=model) for _ in range(repeats)]
    peak = peak_rss_mb()
    median_run = sorted(runs, key=lambda r: r["total_s"])[(len(runs) - 1) // 2]
    return {
        **median_run,
        "runs": len(runs),
        "totals_s": [r["total_s"] for r in runs],
        "peak_rss_mb": peak,
        "above_imports_mb": peak - baseline_mb,
        "hwm_reset": exact,
        "rss_after_imports_mb": baseline_mb,
    }


def measure_settings(
    pairs: Sequence[tuple[int, int]],
    *,
    repeats: int | None = None,
    model: str | None = None,
    prompt: str = PROMPT,
) -> list[dict[str, Any]]:
    """A row per (frames, steps), each from its own fresh process (no malloc tuning: the command as users run it)."""
    rows = []
    for frames, steps in pairs:
        kwargs = {"frames": frames, "steps": steps, "repeats": repeats or default_repeats(frames, steps)}
        kwargs |= {"prompt": prompt, "model": model}
        result = run_in_subprocess("benchmarks.generate_e2e", "measure", kwargs, malloc_tuning=False)
        rows.append({"frames": frames, "steps": steps, **result})
        print({k: v for k, v in rows[-1].items() if k != "totals_s"}, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------- target
def cli_command() -> list[str]:
    """The installed `videoldm` script next to this Python, else `python -m videoldm`."""
    script = Path(sys.executable).with_name("videoldm")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "videoldm"]


def time_cli(args: Sequence[str], *, command: Sequence[str] | None = None, keep: Path | None = None) -> dict[str, Any]:
    """`videoldm ARGS` in a fresh process, run in an empty temporary folder (the default output lands there):
    wall time (s) from process start to exit, its CPU seconds (user + system, all threads) and the process's own
    peak RSS (MB), from wait4's rusage. `command`: another way to start the command (default `cli_command()`);
    `keep`: copy the written video there (else it goes with the temporary folder)."""
    root = str(Path(__file__).resolve().parent.parent)  # for a `command` that imports benchmarks.*
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    cmd = [*(command or cli_command()), *args]
    with tempfile.TemporaryDirectory(prefix="videoldm-cli-") as tmp, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait for it again
        videos = sorted(Path(tmp).glob("*.mp4"))
        if proc.returncode != 0 or not videos:
            err.seek(0)
            stderr = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}, videos {videos}:\n{stderr}")
        size = videos[0].stat().st_size
        if keep is not None:
            shutil.copyfile(videos[0], keep)
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": usage.ru_maxrss / 1024, "mp4_bytes": size}


def measure_target(args: Sequence[str] = (PROMPT,), *, runs: int = 3, warmup: int = 1) -> dict[str, Any]:
    """The target row: median wall time of `videoldm generate ARGS` over `runs` fresh processes after `warmup`."""
    for _ in range(warmup):
        time_cli(["generate", *args])
    results = [time_cli(["generate", *args]) for _ in range(runs)]
    walls = [r["wall_s"] for r in results]
    median = statistics.median(walls)
    return {
        "command": "videoldm generate " + " ".join(f'"{a}"' if " " in a else a for a in args),
        "runs": runs,
        "wall_s": median,
        "min_s": min(walls),
        "max_s": max(walls),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "target": f"<= {TARGET_SECONDS:g} s on a {TARGET_CPUS}-core CPU",
        "result": "PASS" if median <= TARGET_SECONDS else "FAIL",
    }


# ---------------------------------------------------------------------------------------------------- output
COLUMNS = ("frames", "steps", "runs", "total_s", *STAGES, "other", "s_per_frame", "peak_rss_mb", "above_imports_mb")
TARGET_COLUMNS = ("command", "runs", "wall_s", "min_s", "max_s", "peak_rss_mb", "target", "result")


def table_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "s_per_frame": r["total_s"] / r["frames"]} for r in rows]


def write_results(
    rows: Sequence[dict[str, Any]], target: dict[str, Any] | None, header: str, out_dir: Path = RESULTS
) -> list[Path]:
    cpus = os.cpu_count()
    cpu_note = "" if cpus == TARGET_CPUS else f" Measured on {cpus} logical CPUs, not the target's {TARGET_CPUS}."
    parts = [
        "# End-to-end `videoldm generate` with the shipped model (tiny-shapes, 64 x 64)",
        "",
        header,
        "",
        "## Target: the default command in a fresh process",
        "",
        "`videoldm generate PROMPT` and nothing else (16 frames at 64 x 64, 25 DDIM steps, guidance 7.5, the shipped "
        "model, ./videoldm-SEED.mp4), timed from outside from process start to exit: interpreter start, imports, "
        "model loading, generation, writing the mp4. One warm-up run (discarded), then the median of `runs` fresh "
        "processes; peak RSS is the largest of the measured processes' own `ru_maxrss`. "
        f"`OMP_NUM_THREADS` = the torch thread count above.{cpu_note}",
        "",
        markdown_table([target], TARGET_COLUMNS) if target else "Not measured in this run.",
        "",
        "## Against frames and steps, with the per-stage breakdown",
        "",
        "Each row runs in its own fresh process, which calls the `videoldm generate` command in-process "
        "(`--num-frames F --steps S --seed 0 --output tmp.mp4`, otherwise defaults): one warm-up command "
        "(min(F, 16) frames, 1 step), then `runs` measured commands -- 3 for the short settings, 1 for the long "
        "ones. `total_s`: the median command wall time, without interpreter start and imports (see the target row "
        "for those). Stage seconds are those of the median run, timed by wrapping the pipeline's seams from the "
        "benchmark: `load` = `VideoLDMPipeline.from_pretrained` (files in the OS cache after the warm-up), "
        "`text encoder` = `encode_prompt` (prompt and the empty prompt for guidance), `denoising` = the sampling "
        "loop (UNet with guidance + scheduler), `decoding` = `decode_latents` (the temporal decoder, all frames at "
        "once), `writing` = the mp4; `other` = the rest of the command (argument checks, noise, moving to the "
        "device). `peak_rss_mb`: the process's RSS high-water mark over the measured runs (reset after the "
        "warm-up; Python, torch, the model, activations, the video); `above_imports_mb`: that minus the RSS after "
        "importing torch, diffusers and videoldm (what the command itself adds: the model, the lazily imported "
        "text encoder library, activations, the video).",
        "",
        markdown_table(table_rows(rows), COLUMNS),
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.generate_e2e` (or `python -m benchmarks.run_all --only "
        "generate`); plot: generate_e2e.png.",
        "",
    ]
    md = write_atomic(out_dir / "generate_e2e.md", "\n".join(parts))
    return [md, plot(rows, target, out_dir / "generate_e2e.png")]


def plot(rows: Sequence[dict[str, Any]], target: dict[str, Any] | None, path: Path) -> Path:
    """Wall time (total and denoising) and peak RSS against frames, a line per step count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_ax, rss_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for steps in sorted({r["steps"] for r in rows}):
        line = sorted((r for r in rows if r["steps"] == steps), key=lambda r: r["frames"])
        frames = [r["frames"] for r in line]
        (total,) = time_ax.plot(frames, [r["total_s"] for r in line], "o-", label=f"{steps} steps: total")
        time_ax.plot(frames, [r["denoising"] for r in line], "x--", color=total.get_color(), label="denoising")
        rss_ax.plot(frames, [r["peak_rss_mb"] for r in line], "o-", color=total.get_color(), label=f"{steps} steps")
    if target is not None:
        label = f"default command, fresh process ({target['result']})"
        time_ax.plot([16], [target["wall_s"]], "k*", ms=10, label=label)
        time_ax.axhline(TARGET_SECONDS, color="k", ls=":", lw=0.8, label=f"target {TARGET_SECONDS:g} s")
        rss_ax.plot([16], [target["peak_rss_mb"]], "k*", ms=10, label="default command, fresh process")
    ticks = sorted({r["frames"] for r in rows})
    for ax, ylabel in ((time_ax, "wall time (s)"), (rss_ax, "peak RSS (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("frames")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    time_ax.set_yscale("log")
    rss_ax.set_ylim(bottom=0)
    fig.suptitle("videoldm generate, shipped tiny-shapes model (64 x 64)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def run(
    out_dir: Path = RESULTS,
    *,
    frames: Sequence[int] = FRAMES,
    steps: int = STEPS,
    extra: Sequence[tuple[int, int]] = EXTRA_SETTINGS,
    repeats: int | None = None,
    target_runs: int = 3,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """The whole benchmark: the target row (skipped when `target_runs` is 0 or a `model` is given, since the
    target is about the shipped model), then a row per setting; writes generate_e2e.md and .png to `out_dir`."""
    info = machine_info()
    load_before = load_average()
    target = measure_target(runs=target_runs) if target_runs and model is None else None
    if target is not None:
        print(target, flush=True)
    rows = measure_settings(settings(frames, steps, extra), repeats=repeats, model=model)
    header = machine_header(info, load_before=load_before, load_after=load_average())
    write_results(rows, target, header, out_dir)
    return rows


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=list(FRAMES))
    parser.add_argument("--steps", type=int, default=STEPS, help="Steps for every frame count.")
    parser.add_argument(
        "--extra", nargs="*", default=[f"{f}x{s}" for f, s in EXTRA_SETTINGS], help="More FRAMESxSTEPS settings."
    )
    parser.add_argument("--repeats", type=int, default=None, help="Runs per setting (default: 3 short, 1 long).")
    parser.add_argument("--target-runs", type=int, default=3, help="Fresh-process runs of the target (0: skip).")
    parser.add_argument("--model", default=None, help="Another model folder (no target row then).")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results folder.")
    args = parser.parse_args(argv)
    extra = [tuple(int(n) for n in setting.split("x")) for setting in args.extra]
    run(
        args.out,
        frames=args.frames,
        steps=args.steps,
        extra=extra,
        repeats=args.repeats,
        target_runs=args.target_runs,
        model=args.model,
    )
    return [args.out / "generate_e2e.md", args.out / "generate_e2e.png"]


if __name__ == "__main__":
    print(main())
