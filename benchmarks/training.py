"""Benchmark (d): VideoUNet training throughput and peak memory, temporal-only vs full fine-tuning, with and
without gradient checkpointing.

Checkpointing variants: "none"; "all" = `video_unet.enable_gradient_checkpointing()` (recomputes the image UNet's
blocks, through diffusers' block checkpointing, and the temporal layers); "temporal" = the temporal layers only
(`video_unet.gradient_checkpointing = True` without the spatial blocks: what `enable_gradient_checkpointing()` did
before it covered the spatial blocks; not in the default set). One step = forward, MSE, backward, AdamW step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    interleaved_median_times,
    load_average,
    machine_header,
    machine_info,
    markdown_table,
    measure_peak_memory,
    run_in_subprocess,
    save_figure,
    write_atomic,
)
from benchmarks.models import CONFIGS, build
from benchmarks.unet_compare import train_step_fn

MODES = ("temporal", "full")
CHECKPOINTING = ("none", "all")


def training_step(config: str, mode: str, checkpointing: str) -> Callable[[], Any]:
    cfg = CONFIGS[config]
    video_unet = build("videoldm", cfg)
    if checkpointing == "all":
        video_unet.enable_gradient_checkpointing()
    elif checkpointing == "temporal":
        video_unet.gradient_checkpointing = True
    return train_step_fn("videoldm", video_unet, cfg, mode=mode)


def memory_probe(*, baseline_mb: float, config: str, mode: str, checkpointing: str) -> dict[str, float]:
    """Run in a fresh subprocess: peak RSS of one training step (after a warm-up step)."""
    return measure_peak_memory(lambda: training_step(config, mode, checkpointing), baseline_mb=baseline_mb)


def measure(
    config: str = "mid",
    *,
    modes: Sequence[str] = MODES,
    checkpointing: Sequence[str] = CHECKPOINTING,
    repeats: int = 3,
    memory: bool = True,
) -> list[dict[str, Any]]:
    settings = [(m, c) for m in modes for c in checkpointing]
    steps = {f"{m}/{c}": training_step(config, m, c) for m, c in settings}
    times = interleaved_median_times(steps, warmup=1, repeats=repeats)
    batch = CONFIGS[config].batch
    rows = []
    for m, c in settings:
        row = {"config": config, "trainable": m, "checkpointing": c, "step_s": times[f"{m}/{c}"]}
        row["clips_per_s"] = batch / row["step_s"]
        if memory:
            kwargs = {"config": config, "mode": m, "checkpointing": c}
            row["peak_mb"] = run_in_subprocess("benchmarks.training", "memory_probe", kwargs)["peak_mb"]
        rows.append(row)
    if memory:
        full = {r["checkpointing"]: r["peak_mb"] for r in rows if r["trainable"] == "full"}
        for row in rows:
            if row["checkpointing"] in full:
                row["peak_vs_full_same_ckpt"] = row["peak_mb"] / full[row["checkpointing"]]
    return rows


def run(config: str = "mid", out_dir: Path = RESULTS, **kwargs: Any) -> list[dict[str, Any]]:
    load_before = load_average()
    rows = measure(config, **kwargs)
    header = machine_header(machine_info(), load_before=load_before, load_after=load_average())
    columns = ("config", "trainable", "checkpointing", "step_s", "clips_per_s", "peak_mb", "peak_vs_full_same_ckpt")
    text = "\n".join(
        [
            "# Training: temporal-only vs full fine-tuning, with and without gradient checkpointing (VideoUNet)",
            "",
            header,
            "",
            f"Config **{config}**: {CONFIGS[config].describe()}. fp32, AdamW, MSE to a fixed target. "
            "`step_s`: median step time after a warm-up step, all settings measured round-robin in one process. "
            "`peak_mb`: RSS high-water mark of a fresh subprocess during one step after a warm-up step, minus the "
            "RSS after imports (weights + gradients + AdamW state + activations). `peak_vs_full_same_ckpt`: peak "
            "/ full fine-tuning's peak with the same checkpointing (issue target for temporal-only: <= 0.6). "
            "Checkpointing `all`: `enable_gradient_checkpointing()`, the image UNet's blocks and the temporal layers "
            "recomputed in backward; `temporal`: the temporal layers only.",
            "",
            markdown_table(rows, columns),
            "",
        ]
    )
    write_atomic(out_dir / "training.md", text)
    plot(rows, out_dir / "training.png")
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("clips_per_s", "peak_mb") if m in rows[0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.2), squeeze=False)
    labels = [f"{r['trainable']}\nckpt {r['checkpointing']}" for r in rows]
    for ax, metric in zip(axes[0], metrics, strict=True):
        colors = ["tab:orange" if r["trainable"] == "temporal" else "tab:blue" for r in rows]
        ax.bar(range(len(rows)), [r[metric] for r in rows], color=colors)
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set_title(metric)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    run()
