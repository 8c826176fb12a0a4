"""Benchmark (c): the machine's matmul ceiling and how close the SD-width VideoUNet forward gets to it.

Ceiling: the best GFLOP/s of square matmuls (2 n^3 FLOPs) over a few sizes, fp32 and bf16, at the current
torch thread count. UNet FLOPs: counted with `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions
and attention; elementwise ops and norms are not counted, as is usual). Achieved fraction = counted FLOPs /
forward time / ceiling. The plain SD 1.5 image UNet on the same frames is measured beside it, so the cost of the
temporal layers is visible.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import (
    RESULTS,
    load_average,
    machine_header,
    machine_info,
    markdown_table,
    median_time,
    save_figure,
    write_atomic,
)
from benchmarks.models import SD15_UNET_CONFIG
from videoldm import VideoUNet


def matmul_gflops(dtype: torch.dtype, *, sizes: Sequence[int] = (1024, 2048, 3072), repeats: int = 3) -> float:
    """Best median GFLOP/s of an (n x n) @ (n x n) matmul over `sizes`."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        seconds = median_time(lambda a=a, b=b: torch.mm(a, b), warmup=1, repeats=repeats)
        best = max(best, 2 * n**3 / seconds / 1e9)
    return best


def count_flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# Each precision of the forwards and the matmul ceiling it is measured against.
PRECISIONS = {"fp32": "fp32", "bf16": "bf16", "bf16 weights": "bf16"}


def _autocast(precision: str) -> contextlib.AbstractContextManager:
    if precision.startswith("bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def unet_forwards(
    unet_config: dict[str, Any], *, frames: int, latent: int, text_tokens: int = 77
) -> dict[str, Callable[[str], Any]]:
    """Forward closures of the VideoUNet and of its image UNet on the same frames, taking a precision:
    "fp32"; "bf16" (autocast over fp32 weights: every forward re-casts the weights); "bf16 weights" (autocast
    over weights cast to bf16 once, as `VideoLDMPipeline.from_pretrained(..., torch_dtype=torch.bfloat16)` and
    `videoldm generate --dtype bf16` run)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config).eval()
    video_unet = VideoUNet.from_image_unet(unet).eval()
    low: dict[str, VideoUNet] = {}  # the bf16 copy, made on first use
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, unet.config.in_channels, frames, latent, latent, generator=g)  # (B, C, T, H, W)
    text = torch.randn(1, text_tokens, unet.config.cross_attention_dim, generator=g)
    frames_batch = sample[0].permute(1, 0, 2, 3).contiguous()  # (T, C, H, W): the image UNet's batch of frames

    def model(precision: str) -> VideoUNet:
        if precision != "bf16 weights":
            return video_unet
        if not low:
            low["bf16"] = copy.deepcopy(video_unet).to(torch.bfloat16)
        return low["bf16"]

    def video(precision: str) -> None:
        with torch.no_grad(), _autocast(precision):
            model(precision)(sample, 500, encoder_hidden_states=text)

    def image(precision: str) -> None:
        with torch.no_grad(), _autocast(precision):
            model(precision).unet(frames_batch, 500, encoder_hidden_states=text.expand(frames, -1, -1))

    return {"VideoUNet": video, "image UNet (diffusers), per frame": image}


def bf16_is_native() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX). Elsewhere CPU bf16 is emulated: here (AVX2
    only) a bf16 matmul ran at ~1 GFLOP/s against 65 for fp32, and the bf16 runs would take hours and mean nothing."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def measure(
    unet_config: dict[str, Any] = SD15_UNET_CONFIG,
    *,
    frames: int = 8,
    latent: int = 32,
    repeats: int = 2,
    matmul_sizes: Sequence[int] = (1024, 2048, 3072),
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Ceilings {"fp32", "bf16"} (GFLOP/s) and one row per (model, precision); bf16 rows only where bf16 is native
    (elsewhere the bf16 ceiling is a 256 x 256 matmul's and "bf16_native" is 0)."""
    native = bf16_is_native()
    ceilings = {"fp32": matmul_gflops(torch.float32, sizes=matmul_sizes)}
    # Without native bf16 only a small matmul is timed (a 3072^3 one would take minutes).
    ceilings["bf16"] = matmul_gflops(torch.bfloat16, sizes=matmul_sizes if native else (256,), repeats=2)
    ceilings["bf16_native"] = float(native)
    precisions = tuple(PRECISIONS) if native else ("fp32",)
    rows = []
    for model, forward in unet_forwards(unet_config, frames=frames, latent=latent).items():
        flops = count_flops(lambda forward=forward: forward("fp32"))
        for precision in precisions:
            seconds = median_time(lambda forward=forward, p=precision: forward(p), warmup=1, repeats=repeats)
            achieved = flops / seconds / 1e9
            rows.append(
                {
                    "model": model,
                    "precision": precision,
                    "gflop": flops / 1e9,
                    "forward_s": seconds,
                    "gflops_per_s": achieved,
                    "ceiling_gflops_per_s": ceilings[PRECISIONS[precision]],
                    "fraction_of_ceiling": achieved / ceilings[PRECISIONS[precision]],
                }
            )
    return ceilings, rows


def run(out_dir: Path = RESULTS, **kwargs: Any) -> list[dict[str, Any]]:
    load_before = load_average()
    ceilings, rows = measure(**kwargs)
    header = machine_header(machine_info(), load_before=load_before, load_after=load_average())
    frames, latent = kwargs.get("frames", 8), kwargs.get("latent", 32)
    text_dim = kwargs.get("unet_config", SD15_UNET_CONFIG)["cross_attention_dim"]
    columns = ("model", "precision", "gflop", "forward_s", "gflops_per_s", "ceiling_gflops_per_s")
    text = "\n".join(
        [
            "# The machine's ceiling: matmul GFLOP/s vs the SD-width UNet forward",
            "",
            header,
            "",
            f"Matmul ceiling (best of square n x n matmuls): fp32 {ceilings['fp32']:.0f} GFLOP/s, "
            f"bf16 {ceilings['bf16']:.1f} GFLOP/s (CPU capability {torch.backends.cpu.get_cpu_capability()}).",
            ""
            if ceilings["bf16_native"]
            else "\nbf16 is not native on this CPU (no avx512_bf16 / amx_bf16 flag): a 256 x 256 bf16 matmul runs "
            "at the speed above, ~1/50 of fp32, and a bf16-autocast convolution was ~100x slower than fp32 (28.5 s vs "
            "0.23 s for a 320-channel 3x3 conv on 8 x 32 x 32), so the bf16 forwards are not run here: bf16 "
            "autocast must stay off on such CPUs.",
            "",
            f"Forward of the Stable Diffusion 1.5 UNet config (random init) on B=1, T={frames} frames of "
            f"4x{latent}x{latent} latents, 77x{text_dim} text, no grad; "
            "bf16 = `torch.autocast('cpu', torch.bfloat16)` over the fp32 weights (re-cast at every forward); "
            "bf16 weights = the same autocast over weights cast to bf16 once (what `videoldm generate --dtype bf16` "
            "runs). FLOPs counted once (fp32) with `FlopCounterMode` "
            "(matmul, conv, attention). Times: median after a warm-up. "
            "Issue targets: VideoUNet >= 80% of the fp32 ceiling and >= 75% of the bf16 one.",
            "",
            markdown_table(rows, (*columns, "fraction_of_ceiling")),
            "",
        ]
    )
    write_atomic(out_dir / "ceiling.md", text)
    plot(rows, out_dir / "ceiling.png")
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [f"{r['model'].split(' (')[0]}\n{r['precision']}" for r in rows]
    ax.bar(range(len(rows)), [100 * r["fraction_of_ceiling"] for r in rows], color="tab:blue")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("% of matmul ceiling")
    ax.axhline(80, color="k", ls="--", lw=0.8)
    ax.axhline(75, color="gray", ls=":", lw=0.8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    run()
