"""FVD, frame FID and CLIPSIM on folders of videos (the protocol of PAPER.md section 8).

- FVD: the first `num_frames` = 16 frames of each video, I3D Kinetics-400 logits, Fréchet distance between the
  generated and the real set; 2,048 videos per set by default (the paper's protocol). Fewer is possible but must
  be asked for (`num_videos`), since FVD is biased by the sample count and such numbers are not comparable.
- Frame FID: Inception-v3 pool3 features of every frame of those clips.
- CLIPSIM: mean over frames (then over videos) of the CLIP cosine between frame and prompt, not x 100.

Videos are read with `videoldm.io.read_video` as (C, T, H, W) in [-1, 1]; files are taken in sorted name order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from videoldm.evaluation.clipsim import clip_similarity, load_clip
from videoldm.evaluation.frechet import frechet_distance_from_features
from videoldm.evaluation.i3d import load_i3d, preprocess_for_i3d
from videoldm.evaluation.inception import load_inception, preprocess_for_inception

FVD_NUM_VIDEOS = 2048
CLIP_NUM_FRAMES = 16


def list_videos(folder: str | Path) -> list[Path]:
    """The video files directly in `folder`, sorted by name."""
    from videoldm.io import VIDEO_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not paths:
        raise ValueError(f"{folder} contains no video files (expected one of {', '.join(VIDEO_EXTENSIONS)})")
    return paths


def _select(folder: str | Path, num_videos: int | None, protocol: str) -> list[Path]:
    paths = list_videos(folder)
    if num_videos is None:
        return paths
    if len(paths) < num_videos:
        raise ValueError(
            f"{folder} has {len(paths)} videos, {protocol} needs {num_videos}; pass num_videos={len(paths)} "
            "(--num-videos) to compute it on fewer (such numbers are not comparable to the paper's)"
        )
    return paths[:num_videos]


def read_clip(path: Path, num_frames: int) -> torch.Tensor:
    """The first `num_frames` frames of a video: (C, T, H, W) in [-1, 1]; an error if the video is shorter."""
    from videoldm.io import read_video

    video, _ = read_video(path, max_frames=num_frames)
    if video.shape[1] < num_frames:
        raise ValueError(f"{path} has {video.shape[1]} frames; the protocol takes clips of {num_frames}")
    return video


def _features(
    paths: list[Path],
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    network: Callable[[torch.Tensor], torch.Tensor],
    num_frames: int,
    batch_size: int,
) -> np.ndarray:
    """Features (N, D) float64 of the clips in `paths`: `preprocess` maps one clip (C, T, H, W) to network
    inputs (k, ...) at the network's resolution (so videos of different sizes share a batch), `network` maps
    a batch of those to (k, D)."""
    feats = []
    for i in range(0, len(paths), batch_size):
        inputs = torch.cat([preprocess(read_clip(p, num_frames)) for p in paths[i : i + batch_size]])
        with torch.no_grad():
            feats.append(network(inputs).double())
    return torch.cat(feats).numpy()


def fvd(
    generated: str | Path,
    real: str | Path,
    *,
    i3d_weights: str | Path | None = None,
    num_videos: int | None = FVD_NUM_VIDEOS,
    num_frames: int = CLIP_NUM_FRAMES,
    features: str = "logits",
    batch_size: int = 8,
    model: torch.nn.Module | None = None,
) -> float:
    """FVD between two folders of videos (first `num_videos` files of each, first `num_frames` frames).

    `model`: an `InceptionI3d` to use instead of loading `i3d_weights` (tests pass random weights).
    """
    gen_paths = _select(generated, num_videos, "FVD")
    real_paths = _select(real, num_videos, "FVD")
    model = model if model is not None else load_i3d(i3d_weights)
    kwargs = {
        "preprocess": lambda clip: preprocess_for_i3d(clip[None]),
        "network": lambda batch: model(batch, features=features),
        "num_frames": num_frames,
        "batch_size": batch_size,
    }
    return frechet_distance_from_features(_features(gen_paths, **kwargs), _features(real_paths, **kwargs))


def frame_fid(
    generated: str | Path,
    real: str | Path,
    *,
    inception_weights: str | Path | None = None,
    num_videos: int | None = None,
    num_frames: int = CLIP_NUM_FRAMES,
    batch_size: int = 4,
    model: torch.nn.Module | None = None,
) -> float:
    """FID over all frames of the first `num_frames` frames of every video (or the first `num_videos` videos)."""
    gen_paths = _select(generated, num_videos, "frame FID")
    real_paths = _select(real, num_videos, "frame FID")
    model = model if model is not None else load_inception(inception_weights)
    kwargs = {
        "preprocess": lambda clip: preprocess_for_inception(clip.permute(1, 0, 2, 3)),  # frames (T, C, H, W)
        "network": model,
        "num_frames": num_frames,
        "batch_size": batch_size,
    }
    return frechet_distance_from_features(_features(gen_paths, **kwargs), _features(real_paths, **kwargs))


def read_prompts(path: str | Path, videos: list[Path]) -> list[str]:
    """Prompts for `videos`: a .json {file name: prompt}, or a text file with one prompt per line in the
    sorted order of the video names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    if path.suffix.lower() == ".json":
        mapping = json.loads(path.read_text())
        if not isinstance(mapping, dict):
            raise ValueError(f"{path}: expected a JSON object {{video file name: prompt}}")
        missing = [v.name for v in videos if v.name not in mapping]
        if missing:
            raise ValueError(f"{path}: no prompt for videos {missing[:5]}")
        return [str(mapping[v.name]) for v in videos]
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) != len(videos):
        raise ValueError(
            f"{path} has {len(lines)} prompts for {len(videos)} videos; give one line per video, in the sorted "
            "order of their file names, or a .json {file name: prompt}"
        )
    return lines


def clipsim(
    videos: str | Path,
    prompts: str | Path,
    *,
    clip: str | Path | None = None,
    num_frames: int | None = CLIP_NUM_FRAMES,
    model: tuple[torch.nn.Module, object] | None = None,
) -> float:
    """Mean CLIPSIM of the videos in a folder against their prompts (cosine, not x 100).

    `num_frames`: frames per video that are scored (None: all). `model`: a (CLIPModel, CLIPProcessor) pair
    to use instead of loading `clip`.
    """
    paths = list_videos(videos)
    texts = read_prompts(prompts, paths)
    clip_model, processor = model if model is not None else load_clip(clip)
    from videoldm.io import read_video

    scores = [
        clip_similarity(clip_model, processor, read_video(p, max_frames=num_frames)[0], text)
        for p, text in zip(paths, texts, strict=True)
    ]
    return float(np.mean(scores))
