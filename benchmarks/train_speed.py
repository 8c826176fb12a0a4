"""Benchmark: the temporal stage's training step on this CPU against the machine's fp32 matmul ceiling.

The step is the trainer's: the shipped image UNet (src/videoldm/assets/tiny-shapes/unet) frozen, fresh temporal
layers with the options of a shipped config (default `tiny-shapes/keyframes`), `DiffusionLoss` with the config's
weighting, backward, AdamW step. Synthetic latents (B, 4, T, 16, 16) and text (B, 16, 384): the data pipeline is not
timed. FLOPs are counted once with `FlopCounterMode` (fp32 forward + backward with frozen spatial layers) and
divided by the median step time; the ceiling is the best square fp32 matmul rate measured in the same process.

    python -m benchmarks.train_speed [--config tiny-shapes/keyframes] [--variants base fused compile ...]

Run it on a quiet machine (no training run, no tests): it reports the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from benchmarks.ceiling import count_flops, matmul_gflops
from benchmarks.common import (
    RESULTS,
    interleaved_median_times,
    load_average,
    machine_header,
    machine_info,
    markdown_table,
    write_atomic,
)
from videoldm.configs import shipped_config
from videoldm.cpu import tune_cpu
from videoldm.training.config import RunConfig, read_config
from videoldm.training.stages.diffusion import DiffusionLoss, noise_scheduler_config
from videoldm.video_unet import VideoUNet

SHIPPED_UNET = Path(__file__).resolve().parents[1] / "src/videoldm/assets/tiny-shapes/unet"

# name -> the keyword arguments of `training_step` that the variant sets
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "fused": {"fused_adamw": True},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "compile+fused": {"compile": True, "fused_adamw": True},
    "batch x2": {"batch_multiplier": 2},
    # bf16 autocast (`train.mixed_precision: bf16`): the matmuls and convolutions in bf16, weights and optimiser in
    # fp32. Still counted against the fp32 ceiling: the unit is the fp32 step's FLOPs per second.
    "bf16": {"bf16": True},
    "bf16+fused": {"bf16": True, "fused_adamw": True},
    "bf16+compile+fused": {"bf16": True, "compile": True, "fused_adamw": True},
}


def temporal_stage_model(config_name: str) -> tuple[RunConfig, VideoUNet, DiffusionLoss]:
    """The temporal stage's trainee for a shipped config: the shipped image UNet, frozen, with fresh temporal
    layers of the config's options, and the stage's loss (the config's noise schedule and weighting)."""
    config = read_config(shipped_config(config_name), check=False)
    unet = UNet2DConditionModel.from_pretrained(SHIPPED_UNET, local_files_only=True)
    video_unet = VideoUNet.from_image_unet(unet, **config.model.temporal)
    video_unet.freeze_spatial()
    loss_module = DiffusionLoss(
        video_unet, DDPMScheduler(**noise_scheduler_config(config)), weighting=config.train.loss_weighting
    )
    return config, video_unet, loss_module


def training_step(
    config_name: str,
    *,
    batch_multiplier: int = 1,
    fused_adamw: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    bf16: bool = False,
) -> tuple[Callable[[], None], Callable[[], None], int]:
    """-> (step, plain forward+backward for FLOP counting, clips per step)."""
    config, video_unet, loss_module = temporal_stage_model(config_name)
    unet = video_unet.unet
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the zero init, as after some training (the step's cost does not depend on it)
        for p in video_unet.temporal.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    if channels_last:
        for module in video_unet.unet.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    forward = torch.compile(loss_module) if compile else loss_module
    params = [p for p in video_unet.temporal.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused_adamw or None)
    b, t = config.train.batch_size * batch_multiplier, config.data.num_frames
    latents = torch.randn(b, 4, t, 16, 16, generator=g)
    text = torch.randn(b, 16, unet.config.cross_attention_dim, generator=g)
    noise = torch.randn(latents.shape, generator=g)
    timesteps = torch.randint(0, 1000, (b,), generator=g)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # what the trainer's accelerator does
            loss = forward(latents, text, noise, timesteps)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def plain() -> None:
        loss_module(latents, text, noise, timesteps).backward()
        optimizer.zero_grad(set_to_none=True)

    return step, plain, b


def measure(config_name: str, variants: Sequence[str], *, repeats: int = 3) -> tuple[float, list[dict[str, Any]]]:
    ceiling = matmul_gflops(torch.float32, sizes=(1024, 2048))
    steps, flops, clips = {}, {}, {}
    for name in variants:
        step, plain, clips[name] = training_step(config_name, **VARIANTS[name])
        flops[name] = count_flops(plain)
        steps[name] = step
    times = interleaved_median_times(steps, warmup=2, repeats=repeats)
    rows = []
    for name in variants:
        achieved = flops[name] / times[name] / 1e9
        rows.append(
            {
                "variant": name,
                "clips_per_step": clips[name],
                "gflop_per_step": flops[name] / 1e9,
                "s_per_step": times[name],
                "clips_per_s": clips[name] / times[name],
                "gflops_per_s": achieved,
                "fraction_of_ceiling": achieved / ceiling,
            }
        )
    return ceiling, rows


def command(config_name: str, variants: Sequence[str], repeats: int) -> str:
    """The command line that reproduces a table (defaults left out)."""
    parts = ["python -m benchmarks.train_speed"]
    if config_name != "tiny-shapes/keyframes":
        parts.append(f"--config {config_name}")
    if list(variants) != list(VARIANTS):
        parts.append("--variants " + " ".join(variants))
    if repeats != 3:
        parts.append(f"--repeats {repeats}")
    return " ".join(parts)


def run(
    out_dir: Path = RESULTS,
    *,
    config_name: str = "tiny-shapes/keyframes",
    variants: Sequence[str] = tuple(VARIANTS),
    repeats: int = 3,
) -> list[dict[str, Any]]:
    load_before = load_average()
    ceiling, rows = measure(config_name, variants, repeats=repeats)
    header = machine_header(machine_info(), load_before=load_before, load_after=load_average())
    text = "\n".join(
        [
            f"# Training speed of the temporal stage (`{config_name}`) against the fp32 matmul ceiling",
            "",
            header,
            "",
            f"fp32 matmul ceiling (best of 1024^3, 2048^3): {ceiling:.0f} GFLOP/s. FLOPs per step: fp32 forward + "
            "backward counted by `FlopCounterMode` (frozen spatial layers: no weight gradients for them). Step = "
            "forward, edm-weighted loss, backward, AdamW step; median of round-robin repeats after 2 warm-up steps "
            "(compilation happens in the warm-up). Issue target: >= 70% of the ceiling.",
            "",
            markdown_table(rows, tuple(rows[0])),
            "",
            f"Command: `{command(config_name, variants, repeats)}`",
            "",
        ]
    )
    write_atomic(out_dir / "train_speed.md", text)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny-shapes/keyframes")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-tune-cpu", action="store_true", help="Skip `tune_cpu()` (the command's settings).")
    args = parser.parse_args(argv)
    if not args.no_tune_cpu:
        tune_cpu()  # as `videoldm train` does
    for row in run(args.out, config_name=args.config, variants=args.variants, repeats=args.repeats):
        print(row)


if __name__ == "__main__":
    main()
