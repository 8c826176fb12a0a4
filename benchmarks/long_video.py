"""Long videos (issue 16, PAPER.md section 4): does a rollout keep its object and its direction for 1,000 frames,
and does memory stay flat?

    python -m benchmarks.long_video quality --model DIR [--prompts 4] [--keyframes 64] [--seed 0]
    python -m benchmarks.long_video memory --model DIR [--frames 64 256 1000] [--keep DIR]
    python -m benchmarks.long_video extend [--model DIR] [--videos 4] [--new-frames 96]
    python -m benchmarks.long_video video PATH --prompt "a red circle moving right"   (score a written video)

`quality` makes, per prompt, K key frames (64: the key frames of 1,009 output frames, 16 apart) with each method
and scores them in windows of 4 key frames (3 gaps = 48 output frames, the issue's ~50-frame windows):
- prediction with context guidance (s = 1.5) and without it (s = 1, the default): the folder's rollout;
- independent clips concatenated: K / 8 clips of the key-frame model, each from new noise;
- conv-in-time: all K key frames as one clip, the model on overlapping windows of its 8 frames (4 shared),
  blended at every step (`pipelines.conv_in_time`).
A window is right when the fitted direction of the object's unwrapped track (`analyse_video(wrap=True)`: the world
wraps around) is the prompt's, and keeps identity when one object of the prompt's colour and shape is tracked
through it. `memory` runs `videoldm generate --num-frames N` in fresh processes: wall time, CPU time, peak RSS.
`extend` measures `videoldm extend`'s seam; `video` scores a written video (e.g. `memory --keep`'s 1,000 frames)
in windows of 50 frames.
Results: benchmarks/results/long_video.md (each command rewrites its own section).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, load_average, machine_header, machine_info, shown_path, write_atomic
from benchmarks.generate_e2e import time_cli
from videoldm.data.shapes import parse_caption
from videoldm.evaluation.shapes_analysis import analyse_video

PROMPTS = (
    "a red circle moving right",
    "a blue square moving left",
    "a green triangle moving up",
    "a yellow circle moving down",
)
KEYFRAME_WINDOW = 4  # key frames per window: 3 gaps of 16 frames = 48 output frames
FRAME_WINDOW = 50
METHODS = ("prediction, s = 1.5", "prediction, s = 1", "independent clips", "conv-in-time")


def machine_line() -> str:
    load = load_average()
    return machine_header(machine_info(), load_before=load, load_after=load)


def score_windows(caption: str, video: torch.Tensor, *, window: int, step: int) -> dict[str, Any]:
    """video (3, T, H, W) in [-1, 1] -> per-window scores: windows of `window` frames every `step` frames (the
    last full one included); shares of windows with the right direction and with identity (one tracked object of
    the caption's colour and shape), and the first frame of the first window that fails either."""
    colour, shape, direction = parse_caption(caption)
    t = video.shape[1]
    starts = list(range(0, t - window + 1, step))
    right = identity = 0
    first_break = None
    for start in starts:
        found = analyse_video(video[:, start : start + window], wrap=True)
        ok_direction = found.direction == direction
        ok_identity = found.identity and (found.colour, found.shape) == (colour, shape)
        right += ok_direction
        identity += ok_identity
        if first_break is None and not (ok_direction and ok_identity):
            first_break = start
    n = max(len(starts), 1)
    return {"windows": len(starts), "direction": right / n, "identity": identity / n, "first_break": first_break}


def keyframe_latents(pipe, spec, method: str, prompt: str, *, keyframes: int, seed: int) -> torch.Tensor:
    """(1, c, K, h, w) key-frame latents of `prompt` by `method` (25 steps, text guidance 7.5)."""
    from videoldm.pipelines.rollout import rollout_latents

    generator = torch.Generator().manual_seed(seed)
    if method == "conv-in-time":
        from videoldm.pipelines.conv_in_time import conv_in_time_latents

        return conv_in_time_latents(pipe, prompt, num_frames=keyframes, window=spec.num_frames, generator=generator)
    if method.startswith("prediction"):
        scale = float(method.split("=")[1])
        pieces = rollout_latents(
            pipe, prompt, num_frames=keyframes, spec=spec, context_guidance_scale=scale, generator=generator
        )
        return torch.cat(list(pieces), dim=2)
    clips = [
        pipe(prompt, num_frames=spec.num_frames, generator=generator, output_type="latent").frames
        for _ in range(-(-keyframes // spec.num_frames))
    ]
    return torch.cat(clips, dim=2)[:, :, :keyframes]


def quality(model: Path, *, prompts: int, keyframes: int, seed: int) -> str:
    from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline
    from videoldm.pipelines.rollout import PredictionSpec

    spec = PredictionSpec.read(model)
    if spec is None:
        raise SystemExit(f"{model} has no prediction model (prediction.json)")
    pipe = VideoLDMPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for method in METHODS:
        scores, started = [], time.perf_counter()
        for prompt in PROMPTS[:prompts]:
            latents = keyframe_latents(pipe, spec, method, prompt, keyframes=keyframes, seed=seed)
            video = pipe.decode_latents(latents)[0]
            scores.append(score_windows(prompt, video, window=KEYFRAME_WINDOW, step=KEYFRAME_WINDOW - 1))
            print(method, prompt, scores[-1], flush=True)
        windows = sum(s["windows"] for s in scores)
        direction = sum(s["direction"] * s["windows"] for s in scores) / windows
        identity = sum(s["identity"] * s["windows"] for s in scores) / windows
        breaks = ", ".join("never" if s["first_break"] is None else f"key frame {s['first_break']}" for s in scores)
        per_video = (time.perf_counter() - started) / len(scores)
        rows.append(f"| {method} | {windows} | {direction:.0%} | {identity:.0%} | {breaks} | {per_video:.0f} s |")
    header = (
        f"## Quality over {keyframes} key frames ({16 * (keyframes - 1) + 1} output frames)\n\n"
        f"`python -m benchmarks.long_video quality --model {shown_path(model)} --prompts {prompts} "
        f"--keyframes {keyframes} --seed {seed}`; {machine_line()}. "
        f"Prompts: {', '.join(PROMPTS[:prompts])}. Windows of "
        f"{KEYFRAME_WINDOW} key frames (48 output frames), every {KEYFRAME_WINDOW - 1}.\n\n"
        "| method | windows | direction right | identity | first failing window (per prompt) | time per video |\n"
        "|---|---|---|---|---|---|\n"
    )
    return header + "\n".join(rows) + "\n"


def memory(model: Path | None, *, frames: list[int], keep: Path | None) -> str:
    rows = []
    for n in frames:
        args = ["generate", "a red circle moving right", "--num-frames", str(n), "--seed", "0"]
        args += [] if model is None else ["--model", str(model)]
        result = time_cli(args, keep=None if keep is None else keep / f"generate-{n}.mp4")
        rows.append(
            f"| {n} | {result['wall_s']:.0f} s | {result['wall_s'] / n * 1000:.0f} ms | {result['cpu_s']:.0f} s | "
            f"{result['peak_rss_mb']:.0f} MB |"
        )
        print(rows[-1], flush=True)
    shown = "the shipped model" if model is None else shown_path(model)
    return (
        f"## Time and memory of `videoldm generate --num-frames N` ({shown})\n\n"
        f"`python -m benchmarks.long_video memory --frames {' '.join(map(str, frames))}`; {machine_line()}. "
        "One fresh process per N (the whole command: start, load, sample, decode, write).\n\n"
        "| N | wall | per frame | CPU | peak RSS |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def video_section(path: Path, prompt: str) -> str:
    from videoldm.io import read_video

    video, _ = read_video(path)
    scores = score_windows(prompt, video, window=FRAME_WINDOW, step=FRAME_WINDOW)
    return (
        f"## A written video scored in windows of {FRAME_WINDOW} frames\n\n"
        f'`python -m benchmarks.long_video video {shown_path(path)} --prompt "{prompt}"`: {video.shape[1]} frames, '
        f"{scores['windows']} windows: direction right in {scores['direction']:.0%}, identity in "
        f"{scores['identity']:.0%}, first failing window at frame "
        f"{'none' if scores['first_break'] is None else scores['first_break']}.\n"
    )


def extend_seam(model: Path | None, *, videos: int, new_frames: int) -> str:
    """`videoldm extend` on rendered wrapped-world clips (64 frames at 0.3 px per frame: the stack's key frames 4.8
    px apart): where is the object in the first new frames, against where the input's motion puts it (a straight
    line fitted to the input's last 32 frames)?"""
    import math

    import numpy as np
    from typer.testing import CliRunner

    from videoldm.cli import app
    from videoldm.data.shapes import render_shapes_video
    from videoldm.io import read_video, write_video

    rows, errors = [], []
    for i, prompt in enumerate((PROMPTS * videos)[:videos]):
        colour, shape, direction = parse_caption(prompt)
        source = render_shapes_video(colour, shape, direction, rng=100 + i, num_frames=64, speed=(0.3, 0.3), wrap=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = write_video(Path(tmp) / "in.mp4", source, fps=30)
            out = Path(tmp) / "out.mp4"
            args = ["extend", str(path), "--num-frames", str(64 + new_frames), "--output", str(out), "--prompt", prompt]
            args += [] if model is None else ["--model", str(model)]
            started = time.perf_counter()
            result = CliRunner().invoke(app, args)
            if result.exit_code != 0:
                raise SystemExit(result.output)
            seconds = time.perf_counter() - started
            video, _ = read_video(out)
        track = analyse_video(video, wrap=True)
        known = np.array([c for c in track.centroids[32:64] if c is not None])
        t = np.arange(32, 32 + len(known))
        fit = [np.polyfit(t, known[:, k], 1) for k in range(2)]
        first = track.centroids[64]
        expected = (np.polyval(fit[0], 64), np.polyval(fit[1], 64))
        error = math.inf if first is None else math.dist(first, expected)
        errors.append(error)
        new = analyse_video(video[:, 64:], wrap=True)
        kept = new.identity and (new.colour, new.shape) == (colour, shape)
        rows.append(f"| {prompt} | {error:.2f} px | {new.direction} | {kept} | {seconds:.0f} s |")
        print(rows[-1], flush=True)
    shown = "the shipped model" if model is None else shown_path(model)
    return (
        f"## `videoldm extend`: continuity at the seam ({shown})\n\n"
        f"`python -m benchmarks.long_video extend --videos {videos} --new-frames {new_frames}`; {machine_line()}. "
        f"Inputs: 64 rendered frames of the wrapped world at 0.3 px per frame; {new_frames} new frames. Seam error: "
        "the distance from the object's centroid in the first new frame to where a straight line fitted to the "
        "input's last 32 frames puts it (the object is 14-20 px wide; it moves 0.3 px per frame). Then the new "
        f"frames' direction and identity. Median seam error {float(np.median(errors)):.2f} px.\n\n"
        "| input | seam error | new frames' direction | identity | time |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


def update_results(section: str, path: Path = RESULTS / "long_video.md") -> Path:
    """Replace the section with the same `## ` title in the results file (or append it)."""
    title = section.splitlines()[0]
    parts = path.read_text().split("\n## ") if path.is_file() else ["# Long videos (issue 16)\n"]
    kept = [parts[0]] + [p for p in parts[1:] if "## " + p.splitlines()[0] != title]
    text = "\n## ".join(kept).rstrip("\n") + "\n\n" + section
    write_atomic(path, text)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--model", type=Path, required=True)
    q.add_argument("--prompts", type=int, default=4)
    q.add_argument("--keyframes", type=int, default=64)
    q.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("memory")
    m.add_argument("--model", type=Path)
    m.add_argument("--frames", type=int, nargs="+", default=[64, 256, 1000])
    m.add_argument("--keep", type=Path, help="Copy the written videos into this folder.")
    e = sub.add_parser("extend")
    e.add_argument("--model", type=Path)
    e.add_argument("--videos", type=int, default=4)
    e.add_argument("--new-frames", type=int, default=96)
    v = sub.add_parser("video")
    v.add_argument("path", type=Path)
    v.add_argument("--prompt", required=True)
    args = parser.parse_args(argv)
    if args.command == "quality":
        section = quality(args.model, prompts=args.prompts, keyframes=args.keyframes, seed=args.seed)
    elif args.command == "memory":
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        section = memory(args.model, frames=args.frames, keep=args.keep)
    elif args.command == "extend":
        section = extend_seam(args.model, videos=args.videos, new_frames=args.new_frames)
    else:
        section = video_section(args.path, args.prompt)
    print(update_results(section))


if __name__ == "__main__":
    main()
