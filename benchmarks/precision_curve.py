"""Benchmark: does bf16 autocast train the temporal layers as fp32 does? Paired loss curves on real clips.

Two copies of the same fresh temporal layers (a shipped config's options) on the shipped image UNet, frozen, train
the same number of steps on the same batches, noise and diffusion times: one in fp32, one under bf16 autocast
(`train.mixed_precision: bf16`; weights, gradients and AdamW stay fp32). The batches are shapes-world key-frame
clips (32-frame 64 x 64 videos, every 4th frame, as `tiny-shapes/keyframes` trains on) rendered in memory and
encoded by the shipped autoencoder; the optimiser and learning-rate warm-up are the config's. Because both runs
see identical inputs, the per-step difference of their losses is the precision's effect alone (plus the drift of
two weight trajectories), far below the step-to-step noise of either curve.

    python -m benchmarks.precision_curve [--steps 100] [--config tiny-shapes/keyframes]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    RESULTS,
    load_average,
    machine_header,
    machine_info,
    markdown_table,
    save_figure,
    write_atomic,
)
from benchmarks.train_speed import temporal_stage_model
from videoldm import layout
from videoldm.autoencoder.video_autoencoder import VideoAutoencoder
from videoldm.configs import shipped_config
from videoldm.cpu import tune_cpu
from videoldm.data.shapes import dataset_clips
from videoldm.loading import load_text_encoder
from videoldm.training.cache import encode_captions
from videoldm.training.config import read_config
from videoldm.training.trainer import make_optimizer

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "src/videoldm/assets/tiny-shapes"
VIDEO_FRAMES = 32  # the key-frame world: 32-frame videos, every 4th frame a key frame
DATA_SEED = 7  # not the shipped dataset's seed 0: clips the shipped image model was not trained on
WINDOW = 20  # steps per row of the table


@torch.no_grad()
def keyframe_batches(config_name: str, *, videos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`videos` shapes-world clips at the config's size, frames and stride -> latents (N, c, T, h, w) and
    text (N, L, D)."""
    data = read_config(shipped_config(config_name), check=False).data
    pairs = list(dataset_clips(videos, seed=DATA_SEED, num_frames=VIDEO_FRAMES, size=data.size))
    pixels = torch.stack([clip.render()[:, :: data.frame_stride][:, : data.num_frames] for _, clip in pairs])
    autoencoder = VideoAutoencoder.from_model_dir(SHIPPED_MODEL, image_decoder=True)
    latents = autoencoder.encode(pixels, chunk_size=64)  # the posterior mean, scaled
    text_encoder = load_text_encoder(SHIPPED_MODEL / layout.TEXT_ENCODER, SHIPPED_MODEL / layout.TOKENIZER)
    table, rows = encode_captions(text_encoder, [caption for caption, _ in pairs])
    return latents, table.float()[rows]


def train_curve(
    config_name: str,
    *,
    bf16: bool,
    steps: int,
    latents: torch.Tensor,
    text: torch.Tensor,
    batch_size: int | None = None,
) -> dict:
    """Train fresh temporal layers `steps` steps -> {"loss": per-step losses, "seconds": per-step times}.
    `batch_size`: clips per step (default the config's)."""
    torch.manual_seed(0)  # the fresh layers' init (both runs draw the same)
    config, video_unet, loss_module = temporal_stage_model(config_name)
    params = [p for p in video_unet.temporal.parameters() if p.requires_grad]
    optimizer, lr_scheduler = make_optimizer(params, config.optim)  # the trainer's
    g = torch.Generator().manual_seed(1)  # batches, noise and times: the same sequence in both runs
    batch, num_timesteps = batch_size or config.train.batch_size, loss_module.scheduler.config.num_train_timesteps
    losses, seconds = [], []
    for _ in range(steps):
        index = torch.randint(0, latents.shape[0], (batch,), generator=g)
        x = latents[index]
        noise = torch.randn(x.shape, generator=g)
        timesteps = torch.randint(0, num_timesteps, (batch,), generator=g)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_module(x, text[index], noise, timesteps)
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
        losses.append(loss.item())
    return {"loss": losses, "seconds": seconds}


def compare(fp32: list[float], bf16: list[float], *, window: int = WINDOW) -> list[dict[str, Any]]:
    """Rows per window of steps: both curves' mean loss and the paired relative difference of bf16 from fp32."""
    rows = []
    for start in range(0, len(fp32), window):
        a, b = fp32[start : start + window], bf16[start : start + window]
        rel = [(y - x) / x for x, y in zip(a, b, strict=True)]
        rows.append(
            {
                "steps": f"{start + 1}-{start + len(a)}",
                "fp32_loss": statistics.fmean(a),
                "bf16_loss": statistics.fmean(b),
                "median_rel_diff": statistics.median(rel),
                "mean_abs_rel_diff": statistics.fmean(abs(r) for r in rel),
            }
        )
    return rows


def plot(fp32: list[float], bf16: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    steps = range(1, len(fp32) + 1)
    top.semilogy(steps, fp32, label="fp32", lw=1)
    top.semilogy(steps, bf16, label="bf16 autocast", lw=1, ls="--")
    top.set_ylabel("loss (same batch per step)")
    top.legend()
    bottom.plot(steps, [(y - x) / x for x, y in zip(fp32, bf16, strict=True)], lw=1)
    bottom.axhline(0, color="grey", lw=0.5)
    bottom.set_ylabel("(bf16 - fp32) / fp32")
    bottom.set_xlabel("step")
    return save_figure(fig, path)


def run(out_dir: Path = RESULTS, *, config_name: str = "tiny-shapes/keyframes", steps: int = 100, videos: int = 96):
    load_before = load_average()
    latents, text = keyframe_batches(config_name, videos=videos)
    curves = {
        name: train_curve(config_name, bf16=name == "bf16", steps=steps, latents=latents, text=text)
        for name in ("fp32", "bf16")
    }
    header = machine_header(machine_info(), load_before=load_before, load_after=load_average())
    return report(out_dir, curves, config_name=config_name, videos=videos, header=header)


def report(out_dir: Path, curves: dict[str, dict], *, config_name: str, videos: int, header: str) -> list[dict]:
    """Write precision_curve.json (the raw curves), .png and .md; -> the table's rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "precision_curve.json", json.dumps(curves) + "\n")
    fp32, bf16 = curves["fp32"]["loss"], curves["bf16"]["loss"]
    rows = compare(fp32, bf16)
    speed = {name: statistics.median(c["seconds"]) for name, c in curves.items()}
    plot(fp32, bf16, out_dir / "precision_curve.png")
    batch = read_config(shipped_config(config_name), check=False).train.batch_size
    steps = len(fp32)
    text_out = "\n".join(
        [
            f"# bf16 autocast vs fp32: paired loss curves of the temporal stage (`{config_name}`)",
            "",
            header,
            "",
            f"Fresh temporal layers, {steps} steps of batch {batch} clips from {videos} "
            "held-out shapes-world key-frame clips; both runs see the same batches, noise and diffusion times "
            "(the config's lr, warm-up and loss weighting; fused AdamW).",
            "",
            markdown_table(rows, tuple(rows[0])),
            "",
            f"Median step: fp32 {speed['fp32']:.2f} s, bf16 {speed['bf16']:.2f} s "
            f"({speed['fp32'] / speed['bf16']:.2f}x).",
            "",
            "![paired curves](precision_curve.png)",
            "",
            f"Command: `python -m benchmarks.precision_curve --config {config_name} --steps {steps} --videos {videos}`",
            "",
        ]
    )
    write_atomic(out_dir / "precision_curve.md", text_out)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny-shapes/keyframes")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tune_cpu()  # as `videoldm train` does
    for row in run(args.out, config_name=args.config, steps=args.steps, videos=args.videos):
        print(row)


if __name__ == "__main__":
    main()
