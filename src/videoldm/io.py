"""Video and image files <-> tensors, with PyAV.

A video tensor is (C, T, H, W) float in [-1, 1] (RGB); a batch of videos is (B, C, T, H, W). Reading decodes only
the frames asked for (it seeks near the first one and stops after the last), writing is atomic: a temporary file in
the same folder, then `os.replace`, so a crash never leaves a half-written video behind.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".gif", ".avi", ".m4v")
WRITE_EXTENSIONS = (".mp4", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Seeking costs a keyframe search; below this many frames from the start, decoding through is cheaper.
_SEEK_MIN_FRAMES = 48


class VideoReadError(RuntimeError):
    """A video file that cannot be read (missing, corrupt, no video stream, too few frames)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (num_frames counted from packets if not stored)."""

    num_frames: int
    fps: float
    height: int
    width: int


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(C, T, H, W) float in [-1, 1] -> (T, H, W, C) uint8 (RGB; a single channel is repeated to RGB)."""
    if video.ndim != 4 or video.shape[0] not in (1, 3):
        raise ValueError(f"expected a video of shape (C, T, H, W) with C in (1, 3), got {tuple(video.shape)}")
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.expand(3, -1, -1, -1) if x.shape[0] == 1 else x
    return x.permute(1, 2, 3, 0).cpu().numpy()


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (C, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.require(frames, requirements=["C", "W"])).permute(3, 0, 1, 2).float() / 127.5 - 1


def _stream_fps(stream) -> float:
    """The average rate, unless the guessed rate is a close clean number (GIF delays are in 1/100 s)."""
    average, guessed = stream.average_rate, stream.guessed_rate
    if guessed and (not average or abs(float(guessed) - float(average)) <= 0.1 * float(guessed)):
        return float(guessed)
    if average:
        return float(average)
    raise ValueError("the video stream has no frame rate")


@contextmanager
def _open_video(path: str | Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open `path` for reading; every failure becomes a VideoReadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoReadError(path, f"not a readable video container ({err})") from err
    try:
        if not container.streams.video:
            raise VideoReadError(path, "no video stream")
        yield container, container.streams.video[0]
    finally:
        container.close()


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, fps and size of a video without decoding it (packets are counted if the count is not stored)."""
    with _open_video(path) as (container, stream):
        try:
            fps = _stream_fps(stream)
            count = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        except (av.FFmpegError, ValueError) as err:
            raise VideoReadError(path, str(err)) from err
        return VideoInfo(num_frames=int(count), fps=fps, height=stream.height, width=stream.width)


def _decode_frames(container, stream, indices: Sequence[int], fps: float) -> dict[int, np.ndarray]:
    """Decode the frames at `indices` (0-based, in presentation order) -> {index: (H, W, 3) uint8}."""
    wanted, last = set(indices), max(indices)
    first = min(indices)
    index = 0
    if first >= _SEEK_MIN_FRAMES and stream.time_base:
        # Seek to the keyframe before the first wanted frame; the index of the first decoded frame then comes
        # from its timestamp and later ones are counted (robust to odd timestamps after the first).
        start = stream.start_time or 0
        container.seek(start + int((first - 0.5) / fps / stream.time_base), stream=stream, backward=True)
        index = None
    out: dict[int, np.ndarray] = {}
    to_rgb = VideoReformatter()  # one scaler for all frames: a fresh one per frame costs 3x the decoding
    for frame in container.decode(stream):
        if index is None:
            if frame.pts is None:
                raise ValueError("frames have no timestamps after seeking")
            index = round(float((frame.pts - (stream.start_time or 0)) * stream.time_base) * fps)
        if index in wanted:
            out[index] = to_rgb.reformat(frame, format="rgb24").to_ndarray()
        if index >= last:
            break
        index += 1
    return out


def read_video_frames(path: str | Path, indices: Sequence[int]) -> torch.Tensor:
    """The frames at `indices` (0-based; repeats allowed) -> (C, len(indices), H, W) in [-1, 1].

    Decodes only from (the keyframe before) the first index to the last; VideoReadError if any index is missing.
    """
    if not indices or min(indices) < 0:
        raise ValueError(f"indices must be a non-empty list of frame numbers >= 0, got {list(indices)[:8]}")
    with _open_video(path) as (container, stream):
        try:
            frames = _decode_frames(container, stream, indices, _stream_fps(stream))
        except (av.FFmpegError, ValueError) as err:
            raise VideoReadError(path, f"decoding failed ({err})") from err
    missing = sorted(set(indices) - frames.keys())
    if missing:
        raise VideoReadError(path, f"frame {missing[0]} not found: the video is shorter than {missing[-1] + 1} frames")
    return from_uint8(np.stack([frames[i] for i in indices]))


def read_video(path: str | Path, *, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """Decode a whole video (or its first `max_frames` frames) -> ((C, T, H, W) in [-1, 1], fps).

    Supports whatever FFmpeg reads (mp4, webm, mkv, mov, gif, ...); VideoReadError on unreadable files.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    with _open_video(path) as (container, stream):
        try:
            fps = _stream_fps(stream)
            frames = []
            to_rgb = VideoReformatter()
            for frame in container.decode(stream):
                frames.append(to_rgb.reformat(frame, format="rgb24").to_ndarray())
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except (av.FFmpegError, ValueError) as err:
            raise VideoReadError(path, f"decoding failed ({err})") from err
    if not frames:
        raise VideoReadError(path, "no frames could be decoded")
    return from_uint8(np.stack(frames)), fps


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder as `path` (same suffix); on success it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> even H and W by repeating the last row/column (yuv420p needs even sizes)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else frames


def _palette_frame(frame: np.ndarray) -> av.VideoFrame:
    """(H, W, 3) uint8 -> a pal8 frame with its own adaptive 256-colour palette (better than a fixed one)."""
    from PIL import Image

    image = Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    rgb = np.array(image.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
    argb = np.zeros((256, 4), dtype=np.uint8)
    argb[:, 0] = 255
    argb[: len(rgb), 1:] = rgb
    return av.VideoFrame.from_ndarray((np.asarray(image), argb), format="pal8")


class VideoWriter:
    """Write a video piece by piece to `.mp4` (h264, yuv420p) or `.gif`, atomically: the frames go to a temporary
    file in the same folder, renamed into place when the `with` block ends without an error and removed when it
    ends with one (or the process dies: only a hidden `.NAME.tmp-PID` file can remain). Memory does not grow
    with the video's length: a long rollout writes each piece as it is made.

        with VideoWriter("out.mp4", fps=30) as writer:
            for piece in pieces:  # (C, t, H, W) in [-1, 1]
                writer.write(piece)

    mp4: `crf` 12 keeps the saturated colours of the shapes world; odd sizes are padded to even by repeating the
    last row/column. The same frames give a byte-identical file, however they are split into pieces.
    `lossless` (mp4 only): RGB without loss (x264's RGB encoder at qp 0; 1.4x the size on the shapes world), for
    training data whose fine detail is the point -- yuv420p halves the colour's resolution, so an upsampler trained
    on it learns the blurred colour edges of the codec, not the true ones.
    """

    def __init__(self, path: str | Path, *, fps: float = 8, crf: int = 12, lossless: bool = False) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in WRITE_EXTENSIONS:
            raise ValueError(
                f"cannot write video {self.path}: extension {self.path.suffix!r} not in {list(WRITE_EXTENSIONS)}"
            )
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.rate = Fraction(fps).limit_denominator(1001)
        if lossless and self.suffix != ".mp4":
            raise ValueError(f"cannot write {self.path} losslessly: only .mp4 can be")
        self.crf = crf
        self.lossless = lossless
        self.num_frames = 0
        self._atomic = None
        self._container = None
        self._stream = None

    def __enter__(self) -> VideoWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._container = av.open(str(tmp), "w", format=self.suffix[1:])
        return self

    def write(self, video: torch.Tensor) -> None:
        """Append frames: (C, t, H, W) in [-1, 1], the same H and W every time."""
        assert self._container is not None, "use VideoWriter in a with block"
        frames = to_uint8(video)
        if self.suffix == ".mp4":
            frames = _pad_even(frames)
        if self._stream is None:
            self._stream = self._open_stream(frames.shape[2], frames.shape[1])
        elif (frames.shape[2], frames.shape[1]) != (self._stream.width, self._stream.height):
            raise ValueError(
                f"{self.path}: frames of {frames.shape[2]}x{frames.shape[1]} after {self._stream.width}x"
                f"{self._stream.height}"
            )
        for frame in frames:
            image = _palette_frame(frame) if self.suffix == ".gif" else av.VideoFrame.from_ndarray(frame, "rgb24")
            self._container.mux(self._stream.encode(image))
        self.num_frames += len(frames)

    def _open_stream(self, width: int, height: int):
        if self.suffix == ".gif":
            stream = self._container.add_stream("gif", rate=self.rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
            return stream
        # Byte-identical output run to run needs one encoder thread and no macroblock-tree rate control: with
        # mbtree on, x264 turned identical YUV input into different streams in about 1 process in 4 (decoded
        # frames up to 9/255 apart), with one thread and with timestamps set; mbtree=0 or asm=0 both fixed it.
        quality = {"qp": "0"} if self.lossless else {"crf": str(self.crf)}
        options = {**quality, "preset": "medium", "x264-params": "mbtree=0"}
        codec, pix_fmt = ("libx264rgb", "rgb24") if self.lossless else ("libx264", "yuv420p")
        stream = self._container.add_stream(codec, rate=self.rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.thread_count = 1
        return stream

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._atomic is not None and self._container is not None
        try:
            if exc_type is None:
                if self._stream is None:
                    raise ValueError(f"{self.path}: no frames were written")
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None
        if exc_type is None:
            self._atomic.__exit__(None, None, None)  # renames into place
        else:
            self._atomic.__exit__(exc_type, exc, tb)  # removes the temporary file


def write_video(
    path: str | Path, video: torch.Tensor, *, fps: float = 8, crf: int = 12, lossless: bool = False
) -> Path:
    """Write a (C, T, H, W) video in [-1, 1] to `.mp4` (h264, yuv420p; RGB without loss with `lossless`) or `.gif`,
    atomically; returns the path. See `VideoWriter` (this is one piece of it): the same tensor gives a
    byte-identical file."""
    with VideoWriter(path, fps=fps, crf=crf, lossless=lossless) as writer:
        writer.write(video)
    return Path(path)


def image_grid(images: torch.Tensor, *, columns: int | None = None, padding: int = 2) -> torch.Tensor:
    """Tile images into one: (N, C, H, W) -> (C, H', W') with `columns` per row (default ceil(sqrt(N))), or a
    batch of videos (B, C, T, H, W) -> one row per video, one column per frame. Padding is white."""
    if images.ndim == 5:
        columns = images.shape[2]
        images = images.permute(0, 2, 1, 3, 4).reshape(-1, *images.shape[1:2], *images.shape[3:])
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected images (N, C, H, W) or videos (B, C, T, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = images.new_ones(c, rows * (h + padding) + padding, columns * (w + padding) + padding)
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        grid[:, top : top + h, left : left + w] = image
    return grid


def write_image(path: str | Path, image: torch.Tensor) -> Path:
    """Write a (C, H, W) image in [-1, 1] as PNG/JPEG (by extension), atomically; returns the path."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write image {path}: extension {path.suffix!r} not in {list(IMAGE_EXTENSIONS)}")
    pixels = to_uint8(image.unsqueeze(1))[0]
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])
    return path


def write_image_grid(path: str | Path, images: torch.Tensor, *, columns: int | None = None, padding: int = 2) -> Path:
    """Write `image_grid(images)` (images (N, C, H, W) or videos (B, C, T, H, W), in [-1, 1]) as an image."""
    return write_image(path, image_grid(images, columns=columns, padding=padding))


def read_image(path: str | Path) -> torch.Tensor:
    """An image file -> (C, H, W) RGB in [-1, 1]; ValueError naming the file if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return from_uint8(pixels[None])[:, 0]
