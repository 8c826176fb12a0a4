"""Interpolation vs linear blending on held-out shapes-world videos at the paper's rates (PAPER.md section 5).

Per stage of the stack -- "keys x4" (condition 1: clips of frames 4 source frames apart, every 4th = the key
frames, 16 apart, given) and "x4 -> full" (condition 0: consecutive frames, every 4th given) -- and per method:

- `model s=1`: the interpolation model without context guidance; `model s=S`: with context guidance scale S;
- `blend`: the new frames as linear blends of the two given frames around them, in pixels (the baseline).

- `autoencoder`: the true frames encoded and decoded by the folder's autoencoder: the ceiling of any model that
  outputs through that decoder (a model's PSNR cannot beat it by much).

Scored on the new frames only, against the true frames: the object's position error (distance in px between the
centroids `evaluation.shapes_analysis` finds in the output and in the truth; `missing` = share of new frames where
no object is found in the output, left out of the error), `object_overlap` (soft IoU of the object's coverage --
saturation over the object's own -- with the truth's: a blend of two displaced copies is a wider, half-strength
ghost, which the centroid cannot see: the centroid of a blend of a linear motion is where the truth is), and PSNR
(dB). The model gets the given frames as pixels and encodes them with the folder's autoencoder, and the clip's
caption as its prompt (as in the text-to-video stack; `--no-prompt`: the empty prompt, as `videoldm interpolate`
without `--prompt`). The issue's targets: position error <= half the blend's, PSNR above the blend's, with and
without context guidance.

Run: .venv/bin/python -m benchmarks.interpolation_quality --model DIR [--num-videos 16] [--steps 25]
     [--context-guidance 2] [--stage "keys x4"] (writes benchmarks/results/interpolation_quality.md)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, machine_header, machine_info, markdown_table, shown_path, write_atomic
from benchmarks.decoder_quality import HELD_OUT_SEED, held_out_shapes
from videoldm.autoencoder.metrics import psnr
from videoldm.diffusion.masks import interpolation_mask, linear_blend
from videoldm.evaluation.shapes_analysis import analyse_video
from videoldm.layout import INTERPOLATION
from videoldm.pipelines.interpolate import DEFAULT_STRENGTH, VideoInterpolationPipeline
from videoldm.pipelines.stack import DEFAULT_INTERPOLATION_STEPS

COLUMNS = ["stage", "method", "position_error_px", "missing", "object_overlap", "psnr_db"]
STAGES = {"keys x4": (1, 4), "x4 -> full": (0, 1)}  # name: (condition, spacing of the clip's frames)


def held_out_paper_rate(num_videos: int, *, frames: int, size: int, seed: int = HELD_OUT_SEED) -> torch.Tensor:
    """(N, 3, frames, size, size) shapes-world videos at the paper's speed, captions balanced over the 48."""
    from videoldm.data.shapes import PAPER_SPEED

    return held_out_shapes(num_videos, frames=frames, size=size, seed=seed, speed=PAPER_SPEED)


def held_out_captions(num_videos: int, *, seed: int = HELD_OUT_SEED) -> list[str]:
    """The captions of `held_out_paper_rate`'s videos, in order."""
    from videoldm.data.shapes import balanced_captions

    return balanced_captions(num_videos, seed=seed)


def object_overlap(output: torch.Tensor, truth: torch.Tensor, frames: list[int]) -> float:
    """Mean soft IoU over `frames` of the object's coverage in output and truth (C, T, H, W) in [-1, 1]: coverage =
    saturation (max - min of RGB) over the truth object's saturation, clipped to [0, 1]; 1 = the same object in the
    same place, a 50/50 ghost of two copies shifted by d along a side of length w: ~(w - d/2) / (w + d/2)."""

    def coverage(video: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        rgb = (video[:, frames].float() + 1) / 2
        return ((rgb.amax(0) - rgb.amin(0)) / scale).clamp(0, 1)  # (T', H, W)

    rgb = (truth[:, frames].float() + 1) / 2
    sat = rgb.amax(0) - rgb.amin(0)
    scale = sat.flatten(1).amax(1)[:, None, None].clamp_min(1e-3)  # the object's saturation in each true frame
    a, b = coverage(output, scale), coverage(truth, scale)
    iou = torch.minimum(a, b).flatten(1).sum(1) / torch.maximum(a, b).flatten(1).sum(1).clamp_min(1e-6)
    return float(iou.mean())


def position_errors(output: torch.Tensor, truth: torch.Tensor, frames: list[int]) -> tuple[list[float], int]:
    """Centroid distances (px) between output and truth (C, T, H, W) at `frames`, and how many of those frames have
    no object in the output (those are left out of the distances)."""
    found, true = analyse_video(output).centroids, analyse_video(truth).centroids
    errors, missing = [], 0
    for t in frames:
        if found[t] is None or true[t] is None:
            missing += found[t] is None
            continue
        errors.append(math.dist(found[t], true[t]))
    return errors, missing


@torch.no_grad()
def compare(
    pipe: VideoInterpolationPipeline,
    videos: torch.Tensor,
    *,
    clip_frames: int,
    steps: int,
    scales: tuple[float, ...],
    captions: list[str | None] | None = None,
    seed: int = 0,
    strength: float = 1.0,
    stages: tuple[str, ...] = tuple(STAGES),
) -> list[dict]:
    """Rows (stage, method, position_error_px, missing, object_overlap, psnr_db) over videos (N, 3, T_all, H, W),
    each video's prompt from `captions` (None: the empty prompt), for the `stages` named (keys of STAGES)."""
    mask = interpolation_mask((clip_frames - 1) // 4 + 1)
    new = [t for t in range(clip_frames) if not mask[t]]
    rows = []
    for stage in stages:
        condition, spacing = STAGES[stage]
        if pipe.num_conditions is not None and condition >= pipe.num_conditions:
            continue
        methods = ["autoencoder", "blend", "latent blend", *(f"model s={s:g}" for s in scales)]
        scores: dict[str, dict[str, list]] = {m: {"errors": [], "missing": [], "iou": [], "psnr": []} for m in methods}
        span = (clip_frames - 1) * spacing + 1
        for i, video in enumerate(videos):
            start = (i * 7) % (video.shape[1] - span + 1)  # spread the clips over the videos' length
            truth = video[:, start : start + span : spacing][None]
            given = truth[:, :, mask]
            reconstructed = pipe.autoencoder.decode(pipe.autoencoder.encode(truth.to(pipe.device, pipe.dtype)))
            # the blend of the given frames' latents, decoded: what the model's pass starts from at strength < 1
            latent_blend = pipe.autoencoder.decode(
                linear_blend(pipe.autoencoder.encode(given.to(pipe.device, pipe.dtype)))
            )
            outputs = {
                "autoencoder": reconstructed.float().clamp(-1, 1).cpu(),
                "blend": linear_blend(given),
                "latent blend": latent_blend.float().clamp(-1, 1).cpu(),
            }
            for s in scales:
                outputs[f"model s={s:g}"] = pipe(
                    given,
                    prompt=None if captions is None else captions[i],
                    num_inference_steps=steps,
                    strength=strength,
                    context_guidance_scale=s,
                    conditions=[None if pipe.num_conditions is None else condition],
                    generator=torch.Generator().manual_seed(seed + i),
                    window_frames=None,
                ).frames.cpu()
            for method, out in outputs.items():
                errors, missing = position_errors(out[0], truth[0], new)
                scores[method]["errors"] += errors
                scores[method]["missing"].append(missing / len(new))
                scores[method]["iou"].append(object_overlap(out[0], truth[0], new))
                scores[method]["psnr"].append(psnr(out[:, :, new], truth[:, :, new]).item())
        for method, s in scores.items():
            rows.append(
                {
                    "stage": stage,
                    "method": method,
                    "position_error_px": float(np.mean(s["errors"])) if s["errors"] else float("nan"),
                    "missing": float(np.mean(s["missing"])),
                    "object_overlap": float(np.mean(s["iou"])),
                    "psnr_db": float(np.mean(s["psnr"])),
                }
            )
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """One line per stage and model row: the targets met or not."""
    lines = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        blend = next(r for r in rows if r["stage"] == stage and r["method"] == "blend")
        for row in (r for r in rows if r["stage"] == stage and r["method"].startswith("model")):
            ratio = row["position_error_px"] / max(blend["position_error_px"], 1e-9)
            ok = ratio <= 0.5 and row["psnr_db"] > blend["psnr_db"] and row["missing"] <= blend["missing"]
            lines.append(
                f"- {stage}, {row['method']}: position error {ratio:.2f} x the blend's, PSNR "
                f"{row['psnr_db'] - blend['psnr_db']:+.2f} dB, object overlap {row['object_overlap']:.3f} vs the "
                f"blend's {blend['object_overlap']:.3f}: target {'met' if ok else 'NOT met'}."
            )
    return lines


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder with interpolation/")
    parser.add_argument("--num-videos", type=int, default=16)
    parser.add_argument("--clip-frames", type=int, default=9, help="output frames per clip, 4k+1")
    parser.add_argument("--size", type=int, default=None, help="frame size (default: the model's)")
    parser.add_argument("--steps", type=int, default=DEFAULT_INTERPOLATION_STEPS, help="per pass (the stack's)")
    parser.add_argument("--context-guidance", type=float, default=2.0)
    parser.add_argument("--strength", type=float, default=DEFAULT_STRENGTH, help="1: from pure noise (the paper)")
    parser.add_argument("--no-prompt", action="store_true", help="the empty prompt instead of the clips' captions")
    parser.add_argument(
        "--stage", choices=list(STAGES), action="append", help="score only this stage (repeatable; default: both)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "interpolation_quality.md")
    args = parser.parse_args(argv)
    if not (args.model / INTERPOLATION).is_dir():
        sys.exit(f"error: {args.model} has no {INTERPOLATION}/ folder: train tiny-shapes/interpolation first")
    pipe = VideoInterpolationPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    size = args.size or pipe.geometry.default_size
    frames = (args.clip_frames - 1) * 4 + 1 + 16  # a coarse clip from 17 different starts
    videos = held_out_paper_rate(args.num_videos, frames=frames, size=size)
    captions = None if args.no_prompt else held_out_captions(args.num_videos)
    info = machine_info()
    rows = compare(
        pipe,
        videos,
        clip_frames=args.clip_frames,
        steps=args.steps,
        scales=(1.0, args.context_guidance),
        captions=captions,
        strength=args.strength,
        stages=tuple(args.stage or STAGES),
    )
    header = machine_header(info, load_before=info["load_1min"], load_after=machine_info()["load_1min"])
    text = (
        "# Interpolation vs linear blending (held-out shapes world, paper rates)\n\n"
        f"{header}\n\nModel: `{shown_path(args.model)}`. {args.num_videos} held-out videos (seed {HELD_OUT_SEED}), "
        f"{size}x{size}, clips of {args.clip_frames} frames with every 4th given, {args.steps} steps, strength "
        f"{args.strength:g}{' (from the noised blend)' if args.strength < 1 else ''}, "
        f"{'the empty prompt' if args.no_prompt else 'the captions as prompts'}. Scored on the "
        "new frames: the object's centroid distance to the truth's (px; frames without an object in the output are "
        "counted in `missing`, not in the error), `latent blend` the given frames' latents blended and decoded (the "
        "start of a pass at strength < 1), the object's soft overlap with the truth's (1 = same object, same "
        "place; a blend's half-strength ghost scores less) and PSNR (dB).\n\n"
        f"{markdown_table(rows, COLUMNS, floats='.3f')}\n\n"
        + "\n".join(verdicts(rows))
        + "\n\nReproduce: `.venv/bin/python -m benchmarks.interpolation_quality --model DIR`\n"
    )
    return write_atomic(args.output, text)


if __name__ == "__main__":
    print(main())
