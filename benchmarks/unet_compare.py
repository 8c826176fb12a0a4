"""Benchmark (a): VideoUNet vs diffusers' SVD UNet vs AnimateDiff's UNetMotionModel at matched configs.

Forward time (no grad), temporal-only training step time (AdamW over the temporal parameters, MSE loss),
peak memory (fresh subprocess per setting) and parameter counts, as ratios to VideoUNet; the forward's FLOPs
(counted as in the ceiling benchmark) and GFLOP/s, so a time ratio reads as work done vs efficiency.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.ceiling import count_flops
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
from benchmarks.models import CONFIGS, MODELS, UNetConfig, build, inputs, output, parameter_counts, set_trainable

# SD-width training would hold weights + temporal gradients + AdamW state (~14 GB): not on a shared 23 GB box.
TRAIN_CONFIGS = ("tiny", "mid")


def forward_fn(model: str, net: torch.nn.Module, cfg: UNetConfig) -> Callable[[], Any]:
    kwargs = inputs(model, cfg)
    net.eval()

    def run() -> None:
        with torch.no_grad():
            output(net, kwargs)

    return run


def train_step_fn(model: str, net: torch.nn.Module, cfg: UNetConfig, *, mode: str = "temporal") -> Callable[[], Any]:
    """One optimisation step: forward, MSE to a fixed target, backward, AdamW step on the trainable parameters."""
    kwargs = inputs(model, cfg)
    params = list(set_trainable(model, net, mode))
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    net.train()
    with torch.no_grad():
        target = torch.randn_like(output(net, kwargs))

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(output(net, kwargs), target).backward()
        optimizer.step()

    return run


def time_config(
    cfg: UNetConfig, *, models: Sequence[str] = MODELS, train: bool = True, warmup: int = 1, repeats: int = 3
) -> list[dict[str, Any]]:
    """Parameter counts and median forward / temporal-training-step times of `models` at `cfg`, interleaved."""
    nets = {m: build(m, cfg) for m in models}
    rows = {m: {"config": cfg.name, "model": m, **parameter_counts(m, nets[m])} for m in models}
    forwards = {m: forward_fn(m, nets[m], cfg) for m in models}
    forward = interleaved_median_times(forwards, warmup=warmup, repeats=repeats)
    for m in models:
        rows[m]["forward_s"] = forward[m]
        rows[m]["forward_gflop"] = count_flops(forwards[m]) / 1e9
        rows[m]["forward_gflops_per_s"] = rows[m]["forward_gflop"] / forward[m]
    if train:
        steps = interleaved_median_times(
            {m: train_step_fn(m, nets[m], cfg) for m in models}, warmup=warmup, repeats=repeats
        )
        for m in models:
            rows[m]["train_temporal_s"] = steps[m]
    return list(rows.values())


def memory_probe(*, baseline_mb: float, config: str, model: str, task: str) -> dict[str, float]:
    """Run in a fresh subprocess: peak RSS of one forward ("forward") or temporal-only train step ("train")."""
    cfg = CONFIGS[config]

    def setup() -> Callable[[], Any]:
        net = build(model, cfg)
        return forward_fn(model, net, cfg) if task == "forward" else train_step_fn(model, net, cfg)

    return measure_peak_memory(setup, baseline_mb=baseline_mb)


def benchmark_config(
    cfg: UNetConfig, *, train: bool, memory: bool, warmup: int = 1, repeats: int = 3, sequential: bool = False
) -> list[dict[str, Any]]:
    """All numbers for one config. `sequential`: build one model at a time (SD width: three at once won't fit)."""
    if sequential:
        rows = []
        for m in MODELS:
            rows += time_config(cfg, models=[m], train=train, warmup=warmup, repeats=repeats)
            gc.collect()
    else:
        rows = time_config(cfg, train=train, warmup=warmup, repeats=repeats)
    if memory:
        for row in rows:
            tasks = ("forward", "train") if train else ("forward",)
            for task in tasks:
                mem = run_in_subprocess(
                    "benchmarks.unet_compare", "memory_probe", {"config": cfg.name, "model": row["model"], "task": task}
                )
                row[f"{task}_peak_mb"] = mem["peak_mb"]
    return add_ratios(rows)


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """x_vs_videoldm = model's x / VideoUNet's x, for every timing and memory column (1.0 for VideoUNet)."""
    ours = next(r for r in rows if r["model"] == "videoldm")
    for row in rows:
        for key in ("forward_s", "train_temporal_s", "forward_peak_mb", "train_peak_mb", "params_total"):
            if key in row and key in ours:
                row[f"{key}_ratio"] = row[key] / ours[key]
    return rows


COLUMNS = (
    "config",
    "model",
    "params_total",
    "params_temporal",
    "forward_s",
    "forward_s_ratio",
    "forward_gflop",
    "forward_gflops_per_s",
    "train_temporal_s",
    "train_temporal_s_ratio",
    "forward_peak_mb",
    "forward_peak_mb_ratio",
    "train_peak_mb",
    "train_peak_mb_ratio",
)


def write_results(rows: list[dict[str, Any]], header: str, out_dir: Path = RESULTS) -> list[Path]:
    configs = sorted({r["config"] for r in rows}, key=list(CONFIGS).index)
    text = "\n".join(
        [
            "# UNet: VideoUNet vs SVD (UNetSpatioTemporalConditionModel) vs AnimateDiff (UNetMotionModel)",
            "",
            header,
            "",
            "Configs (matched widths, frames, resolution; one timestep per clip, fp32):",
            *[f"- **{c}**: {CONFIGS[c].describe()}" for c in configs],
            "",
            "Times: median of several runs after a warm-up, the three models measured round-robin in one process "
            "(except `sd`, built one at a time). `train_temporal_s`: forward + MSE + backward + AdamW step over the "
            "temporal parameters only. `*_ratio`: the model's value / VideoUNet's (below 1: smaller or faster than "
            "VideoUNet). `forward_gflop`: the forward's matmul, convolution and attention FLOPs counted with "
            "`FlopCounterMode` (as in the ceiling benchmark); `forward_gflops_per_s` = that / `forward_s`. "
            "Peak memory: RSS high-water mark of a fresh subprocess during one run after a warm-up "
            "(`/proc/self/clear_refs` reset, glibc told to return freed blocks), minus the RSS after imports: weights, "
            "gradients, optimizer state and activations. SD-width training is not run (~14 GB of weights, "
            "gradients and AdamW state on a shared 23 GB machine).",
            "",
            markdown_table(rows, COLUMNS),
            "",
        ]
    )
    return [write_atomic(out_dir / "unet_comparison.md", text), plot(rows, out_dir / "unet_comparison.png")]


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("forward_s", "train_temporal_s", "forward_peak_mb", "train_peak_mb") if m in rows[0]]
    configs = sorted({r["config"] for r in rows}, key=list(CONFIGS).index)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    width = 0.8 / len(MODELS)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, model in enumerate(MODELS):
            values = [
                next((r.get(f"{metric}_ratio") for r in rows if (r["config"], r["model"]) == (c, model)), None)
                for c in configs
            ]
            xs = [j + i * width for j, v in enumerate(values) if v is not None]
            ax.bar(xs, [v for v in values if v is not None], width, label=model)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([j + width for j in range(len(configs))], configs)
        ax.set_title(f"{metric} / VideoUNet's")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def run(
    configs: Sequence[str] = ("tiny", "mid", "sd"), *, memory: bool = True, out_dir: Path = RESULTS
) -> list[dict[str, Any]]:
    load_before = load_average()
    rows = []
    for name in configs:
        sd = name == "sd"
        rows += benchmark_config(
            CONFIGS[name], train=name in TRAIN_CONFIGS, memory=memory, repeats=2 if sd else 3, sequential=sd
        )
    header = machine_header(machine_info(), load_before=load_before, load_after=load_average())
    write_results(rows, header, out_dir)
    return rows


if __name__ == "__main__":
    run()
