"""The dreambooth demonstration (issue 18, PAPER.md section 7): personalised video with no video training.

The concept is a purple five-pointed star. The shapes world never had that colour or that shape. It is drawn as
5 pictures, the base folder's image UNet is fine-tuned on them (`docs/dreambooth/config.yaml`), and the base
folder's temporal layers animate the fine-tuned backbone unchanged.

    python -m benchmarks.dreambooth_demo pictures docs/dreambooth/pictures        # the committed pictures
    videoldm train docs/dreambooth/config.yaml                                     # the fine-tuning
    python -m benchmarks.dreambooth_demo measure --model RUN/model --base BASE     # results + picture

`measure` samples key-frame videos of "a sks star moving {left,right,up,down}" with the personalised folder and the
base folder (same seeds) and of a world caption for each direction with the personalised folder. Each video is
scored by `evaluation.shapes_analysis`:
- concept: the object's hue within HUE_TOLERANCE of the star's purple and its solidity (covered share of its
  convex hull) below STAR_SOLIDITY, in most frames;
- one object: `identity` (one tracked object with one colour and shape name in every frame);
- direction: the fitted motion.
The world captions check that the fine-tuned backbone still draws the world.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from videoldm.cpu import tune_cpu
from videoldm.data.shapes import DIRECTIONS
from videoldm.evaluation.shapes_analysis import analyse_video, hue_degrees, match_caption
from videoldm.io import write_image, write_image_grid

PURPLE = (150, 40, 215)  # hue ~281 degrees: 47 from blue, 79 from red, the nearest world colours
STAR_HUE = float(hue_degrees(np.array(PURPLE) / 255))
HUE_TOLERANCE = 30.0
STAR_SOLIDITY = 0.8  # the world's shapes measure 0.85-0.99; the drawn star ~0.6
INSTANCE = "a sks star"
WORLD = {"left": "a red circle", "right": "a blue square", "up": "a green triangle", "down": "a yellow circle"}
RESULTS = Path(__file__).parent / "results" / "dreambooth.md"
PICTURE = Path(__file__).parents[1] / "docs" / "images" / "dreambooth.png"


def star_picture(rng: np.random.Generator, *, size: int = 64, supersample: int = 4) -> torch.Tensor:
    """A purple five-pointed star on a shapes-world background (grey level + gentle gradient), (3, H, W) in [-1, 1].
    The grey level is 0.45-0.75, the lighter part of the world's 0.25-0.75: the shipped autoencoder, which never
    saw purple, turns a purple object on dark grey into noise (measured), on light grey into a blue one.

    Outer radius 15-18 px, inner radius 0.4 x outer: big enough that the notches survive the autoencoder (its
    latents are 4x smaller), random rotation and a place fully in view.
    """
    from matplotlib.path import Path as Polygon

    outer = rng.uniform(15, 18)
    turn = rng.uniform(0, 2 * math.pi / 5)
    centre = rng.uniform(outer + 2, size - outer - 2, size=2)
    angles = turn + np.arange(10) * math.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, outer, 0.4 * outer)
    star = Polygon(np.stack([centre[0] + radii * np.sin(angles), centre[1] - radii * np.cos(angles)], 1))
    n = size * supersample
    points = (np.stack(np.meshgrid(np.arange(n), np.arange(n)), -1).reshape(-1, 2) + 0.5) / supersample
    cover = star.contains_points(points).reshape(n, n).astype(np.float64)
    cover = cover.reshape(size, supersample, size, supersample).mean((1, 3))
    ramp = (np.arange(size) + 0.5) / size - 0.5
    angle, amplitude = rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.2)
    background = rng.uniform(0.45, 0.75) + amplitude * (math.cos(angle) * ramp[None] + math.sin(angle) * ramp[:, None])
    colour = np.array(PURPLE, dtype=np.float64)[:, None, None] / 255
    image = cover[None] * colour + (1 - cover[None]) * background[None]
    return torch.from_numpy(image * 2 - 1).float()


def write_pictures(folder: Path, *, count: int = 5, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    return [write_image(folder / f"star-{i}.png", star_picture(rng)) for i in range(count)]


def is_concept(analysis, hue: float = STAR_HUE) -> bool:
    """The star in most frames: its hue within HUE_TOLERANCE of `hue`, solidity below the world's shapes'."""
    hits = [
        f is not None
        and abs((f.hue - hue + 180) % 360 - 180) <= HUE_TOLERANCE
        and not f.solidity >= STAR_SOLIDITY  # nan (a degenerate blob) is not a star
        for f in analysis.frames
    ]
    return sum(hits) > len(hits) / 2


def score(prompt: str, video: torch.Tensor, *, hue: float = STAR_HUE, wrap: bool = False) -> dict[str, bool]:
    """What a video shows: the concept (`is_concept` at `hue`), one tracked object, the prompt's direction (and for
    a world caption its colour / shape / all correct). `wrap`: temporal layers trained on the wrapping world (the
    shipped ones since issue 16) move objects across an edge, which the plain analysis reads as a jump back."""
    analysis = analyse_video(video, wrap=wrap)
    direction = prompt.rsplit(" ", 1)[-1]
    row = {
        "concept": is_concept(analysis, hue),
        "identity": analysis.identity,
        "direction": analysis.direction == direction,
    }
    if not prompt.startswith(INSTANCE):
        row |= {k: bool(v) for k, v in match_caption(prompt, analysis).items() if k.endswith("_correct")}
    return row


def sample(folder: Path, prompts: list[str], *, seeds: list[int], steps: int, frames: int) -> list[torch.Tensor]:
    """Key-frame videos (3, T, H, W) in [-1, 1], one per (prompt, seed), with the folder's text-to-video model."""
    from videoldm.pipelines import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    videos = []
    for prompt in prompts:  # one batch per prompt; each video has its own generator: the same as sampled alone
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        out = pipe([prompt] * len(seeds), num_frames=frames, num_inference_steps=steps, generator=generators)
        videos += list(out.frames.float().cpu())
    return videos


@torch.no_grad()
def autoencoder_hue(base: Path, pictures: Path) -> tuple[float, list[tuple[float, float]]]:
    """The pictures through the base folder's autoencoder: the hue it gives the concept (circular mean over the
    pictures) and each reconstruction's (hue, solidity). What the UNet can learn is bounded by what decodes."""
    from diffusers import AutoencoderKL

    from videoldm.io import read_image

    vae = AutoencoderKL.from_pretrained(base / "vae").float().eval()
    images = torch.stack([read_image(p) for p in sorted(pictures.glob("*.png"))])
    decoded = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
    found = [analyse_video(image[:, None]).frames[0] for image in decoded]
    seen = [(f.hue, f.solidity) for f in found if f is not None]
    if not seen:
        raise ValueError(f"the autoencoder of {base} shows no object in any picture of {pictures}")
    angles = np.radians([h for h, _ in seen])
    return float(np.degrees(np.arctan2(np.sin(angles).sum(), np.cos(angles).sum())) % 360), seen


def summarise(rows: list[dict[str, bool]]) -> dict[str, str]:
    keys = sorted({k for r in rows for k in r})
    return {k: f"{sum(r[k] for r in rows if k in r)}/{sum(k in r for r in rows)}" for k in keys}


def measure(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    tune_cpu()  # as the command does
    seeds = list(range(args.seed, args.seed + args.videos_per_direction))
    star = [f"{INSTANCE} moving {d}" for d in DIRECTIONS]
    world = [f"{WORLD[d]} moving {d}" for d in DIRECTIONS]
    started = time.perf_counter()
    hue, decoded = autoencoder_hue(args.base, args.pictures)
    runs = {
        "personalised, star prompts": (args.model, star),
        "base, star prompts": (args.base, star),
        "personalised, world prompts": (args.model, world),
        "base, world prompts": (args.base, world),
    }
    table, grid = {}, []
    if args.skip_base:  # the base rows do not change with the fine-tuning: measure them once
        runs = {name: run for name, run in runs.items() if not name.startswith("base")}
    for name, (folder, prompts) in runs.items():
        videos = sample(folder, prompts, seeds=seeds, steps=args.steps, frames=args.frames)
        labels = [p for p in prompts for _ in seeds]
        table[name] = summarise([score(p, v, hue=hue, wrap=args.wrap) for p, v in zip(labels, videos, strict=True)])
        grid += [videos[i * len(seeds)] for i in range(len(prompts))]  # first seed of each prompt
        print(name, table[name], flush=True)
    elapsed = time.perf_counter() - started
    write_image_grid(PICTURE, torch.stack(grid[:8]))  # rows: personalised star prompts, then base star prompts
    columns = sorted({k for row in table.values() for k in row})
    lines = [
        "# Dreambooth demonstration: a purple star the shapes world never had",
        "",
        f"`python -m benchmarks.dreambooth_demo measure --model {args.model} --base {args.base} "
        f"--videos-per-direction {args.videos_per_direction} --steps {args.steps} --frames {args.frames}"
        f"{'' if args.wrap else ' --no-wrap'}` "
        f"({elapsed:.0f} s, {args.threads} thread(s)). Key frames of the text-to-video model, "
        f"{args.videos_per_direction} seeds per direction; concept = hue within {HUE_TOLERANCE:.0f} deg of the "
        f"autoencoder's hue for the pictures and solidity < {STAR_SOLIDITY} in most frames.",
        "",
        f"The pictures are purple (hue {STAR_HUE:.0f} deg). Through the base folder's autoencoder they come back as "
        f"{len(decoded)}/{len(list(args.pictures.glob('*.png')))} objects of hue {hue:.0f} deg (blue is 234) and "
        f"solidity {min(s for _, s in decoded):.2f}-{max(s for _, s in decoded):.2f}: the autoencoder never saw "
        "purple, and the UNet can only make what it decodes, so the concept is judged at that hue. The world's "
        "shapes measure solidity 0.85-0.99.",
        "",
        "| videos | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += [f"| {name} | " + " | ".join(row.get(c, "-") for c in columns) + " |" for name, row in table.items()]
    lines += [
        "",
        f"Picture: `{PICTURE.relative_to(PICTURE.parents[2])}` (rows: the first seed's video of each prompt, "
        f"left/right/up/down, of {' then '.join(list(table)[:2])}; columns: key frames).",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pictures = sub.add_parser("pictures", help="draw the concept's pictures")
    pictures.add_argument("folder", type=Path)
    pictures.add_argument("--count", type=int, default=5)
    pictures.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure", help="sample and score personalised and base videos")
    m.add_argument("--model", type=Path, required=True, help="the dreambooth run's model/ folder")
    m.add_argument("--base", type=Path, required=True, help="the folder it was fine-tuned from")
    m.add_argument("--pictures", type=Path, default=Path("docs/dreambooth/pictures"), help="the concept's pictures")
    m.add_argument("--skip-base", action="store_true", help="only the personalised folder's rows")
    m.add_argument("--videos-per-direction", type=int, default=6)
    m.add_argument("--steps", type=int, default=25)
    m.add_argument("--frames", type=int, default=8)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument(
        "--wrap", action=argparse.BooleanOptionalAction, default=True, help="wrap-aware tracks (the shipped layers')"
    )
    args = parser.parse_args()
    if args.command == "pictures":
        for path in write_pictures(args.folder, count=args.count, seed=args.seed):
            print(path)
    else:
        measure(args)


if __name__ == "__main__":
    main()
