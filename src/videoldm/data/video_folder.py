"""Video clips with captions from a folder of video files and a captions table (CSV or JSONL).

Each item is `{"video": (C, T, H, W) float in [-1, 1], "caption": str}`: T frames sampled at a target fps (or a
fixed frame stride) from a random start, resized so the shorter side fits and centre-cropped to H x W, optionally
flipped horizontally. Only the frames needed are decoded. Unreadable or too-short videos are skipped and reported
(see `SkippingDataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoldm.data.common import SkipItem, SkippingDataset, parse_size, read_captions, resize_center_crop
from videoldm.io import VIDEO_EXTENSIONS, VideoReadError, probe_video, read_video_frames


def clip_indices(*, num_frames: int, step: float, start: int = 0) -> list[int]:
    """Frame numbers of a clip of `num_frames` frames taken every `step` source frames (fractional steps are
    rounded per frame, so a 30 fps video sampled at 8 fps has step 3.75) from `start`."""
    return [start + round(k * step) for k in range(num_frames)]


def clip_span(*, num_frames: int, step: float) -> int:
    """How many source frames a clip covers (the last index + 1 from start 0)."""
    return clip_indices(num_frames=num_frames, step=step)[-1] + 1


class VideoFolderDataset(SkippingDataset):
    """Captioned video clips from `root` and a captions table.

    Args:
        root: folder the table's paths are relative to.
        captions: CSV or JSONL with columns `path,caption`, or WebVid's `videoid,name` (file `{videoid}.mp4`
            under root; other video extensions and the `page_dir` subfolder are tried too).
        num_frames: T, frames per clip.
        size: H x W of the output (an int for square).
        fps: sample at this frame rate (step = source fps / fps); exclusive with `frame_stride`.
        frame_stride: take every `frame_stride`-th source frame (when `fps` is None).
        random_start: start at a random frame (else at frame 0).
        random_flip: flip each clip horizontally with probability 1/2 (not for the shapes world: a flip turns
            "moving left" into "moving right").
        seed: with the epoch and the index, fixes the start frame and the flip.
        bad_rows: when given, caption rows without a file are left out and described here (else an error).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        captions: str | Path,
        num_frames: int,
        size: int | Sequence[int],
        fps: float | None = None,
        frame_stride: int = 1,
        random_start: bool = True,
        random_flip: bool = False,
        seed: int = 0,
        bad_rows: list[str] | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if fps is not None and (fps <= 0 or frame_stride != 1):
            raise ValueError(f"give either fps > 0 or frame_stride, not both (fps={fps}, frame_stride={frame_stride})")
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"video folder {self.root} does not exist")
        self.rows = read_captions(captions, extensions=VIDEO_EXTENSIONS, bad_rows=bad_rows)
        self.num_frames = num_frames
        self.size = parse_size(size)
        self.fps = fps
        self.frame_stride = frame_stride
        self.random_start = random_start
        self.random_flip = random_flip

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def captions(self) -> list[str]:
        return [row.caption for row in self.rows]

    def resolve(self, index: int) -> Path:
        """The video file of row `index`; SkipItem if none of its candidate paths exists."""
        row = self.rows[index]
        path = row.resolve(self.root)
        if path is None:
            raise SkipItem(self.root / row.candidates[0], "file not found")
        return path

    def frame_indices(self, index: int, rng: np.random.Generator) -> tuple[Path, list[int]]:
        """The file of row `index` and the source frame numbers of its clip; SkipItem if it is too short."""
        path = self.resolve(index)
        try:
            info = probe_video(path)
        except VideoReadError as err:
            raise SkipItem(path, err.reason) from err
        step = info.fps / self.fps if self.fps is not None else self.frame_stride
        span = clip_span(num_frames=self.num_frames, step=step)
        if info.num_frames < span:
            raise SkipItem(path, f"too short: {info.num_frames} frames, a clip needs {span}")
        start = int(rng.integers(0, info.num_frames - span + 1)) if self.random_start else 0
        return path, clip_indices(num_frames=self.num_frames, step=step, start=start)

    def read(self, path: Path, indices: Sequence[int], rng: np.random.Generator) -> torch.Tensor:
        """Decode, resize + crop and maybe flip -> (C, T, H, W) in [-1, 1]."""
        try:
            frames = read_video_frames(path, indices)  # (C, T, h, w)
        except VideoReadError as err:
            raise SkipItem(path, err.reason) from err
        video = resize_center_crop(frames.transpose(0, 1), self.size).transpose(0, 1)
        if self.random_flip and rng.random() < 0.5:
            video = video.flip(-1)
        return video.contiguous()

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        path, indices = self.frame_indices(index, rng)
        return {"video": self.read(path, indices, rng), "caption": self.rows[index].caption}


class FramesDataset(SkippingDataset):
    """Every frame of a video dataset as an image sample: `{"image": (C, H, W) in [-1, 1], "caption": str}`.

    Item i is frame `(i % frames_per_video) * frame_stride` of video `i // frames_per_video` (for image-LDM and
    autoencoder training on videos such as the shapes world). A frame past a video's end is skipped and reported.
    Other arguments as for `VideoFolderDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        captions: str | Path,
        size: int | Sequence[int],
        frames_per_video: int,
        frame_stride: int = 1,
        random_flip: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if frames_per_video < 1:
            raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
        self.videos = VideoFolderDataset(
            root, captions=captions, num_frames=1, size=size, frame_stride=frame_stride, random_flip=random_flip
        )
        self.frames_per_video = frames_per_video
        self.frame_stride = frame_stride

    def __len__(self) -> int:
        return len(self.videos) * self.frames_per_video

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        video, frame = divmod(index, self.frames_per_video)
        path = self.videos.resolve(video)
        image = self.videos.read(path, [frame * self.frame_stride], rng)[:, 0]
        return {"image": image, "caption": self.videos.rows[video].caption}
