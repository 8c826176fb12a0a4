"""The shapes world: a synthetic text-to-video dataset small enough to train on a CPU.

Each clip shows one object -- a circle, square or triangle in red, green, blue or yellow -- moving at constant
speed left, right, up or down over a grey background (a random grey level plus a smooth grey gradient, so no
saturated colour but the object's). The caption is exactly `a {colour} {shape} moving {direction}`: 48 captions.
The object stays fully inside the frame for the whole clip -- or, with `wrap`, the world is a torus: the object
leaves one edge and re-enters at the opposite one (long videos need it: no speed keeps an object in view for 1,000
frames and still moves it). The dataset is written as real mp4 files plus `captions.csv` (columns
`path,caption`), so it goes through the same loader as real data.

Frame rates: by default the object moves 0.75-1.25 px per frame (at size 64), so consecutive frames differ by
about a quarter of a latent pixel (the VAE downsamples by 4). The paper's text-to-video model sees 8 key frames
at a low rate and interpolates 3 frames between each pair twice (8 -> 29 -> 113 frames, PAPER.md section 5):
`PAPER_FRAMES` frames with `PAPER_SPEED` move the object by >= 4 px (one latent pixel) between key frames (every
`PAPER_KEYFRAME_STRIDE`-th frame), by a sub-pixel step between full-rate frames, and keep it in view.

Everything is a function of the seed: clip i draws from `numpy.random.default_rng([seed, i])`, so the same seed
gives byte-identical files and a bigger dataset starts with the smaller one's clips.

Texture (`texture="static" | "pan" | "mixed" | "any"`, off by default): the grey background gains a grey texture -- soft
blotches plus a fine grain at the scale of the rendered pixel -- fixed in the world ("static") or panned by a slow
camera ("pan", `PAN_SPEED`); "mixed" draws one of the two per clip, "any" one of plain, static and pan (a model
that must not add grain where the video has none, as an upsampler run after the plain world's generator). Per-frame
processing (an image decoder, an image upsampler) flickers where detail is uncertain, and the plain world has
almost none (docs/upsampler.md). The texture is periodic and band-limited and is moved by a phase shift in Fourier
space, so a sub-pixel pan keeps its contrast in every frame: the true video has no flicker of its own. Its draws
come after all others, so without a texture a seed gives the clips it always gave.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videoldm.io import atomic_path, write_video

# Saturated RGB (0-255) with clearly distinct hues: red 0, yellow ~54, green ~124, blue ~234 degrees.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 60, 230),
    "yellow": (235, 215, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Unit motion (dx, dy) in image coordinates: x to the right, y downwards.
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

OBJECT_SIZE = (14.0, 20.0)  # pixels at size 64 (circle diameter, square side, triangle base and height)
SPEED = (0.75, 1.25)  # pixels per frame at size 64
# The paper's rates: 8 key frames every 16th frame span 7 * 16 + 1 = 113 frames. 0.25-0.375 px per frame is
# 4-6 px (1-1.5 latent pixels) per key frame, and at most 0.375 * 112 = 42 px of travel fits the narrowest
# allowed centre range (64 - 2 * MARGIN - 20 px object = 42 px), so no clip is slowed down to stay in view.
PAPER_FRAMES = 113
PAPER_KEYFRAME_STRIDE = 16
PAPER_SPEED = (0.25, 0.375)
# Texture: contrast (std on the [0, 1] scale) of the blotches and of the grain; pan speed in px per frame at
# size 64 (slow: a third of the object's default speed); grain up to GRAIN_CUTOFF cycles per rendered pixel.
TEXTURES: tuple[str, ...] = ("static", "pan", "mixed", "any")
BLOTCH_CONTRAST = (0.04, 0.08)
GRAIN_CONTRAST = (0.03, 0.06)
PAN_SPEED = (0.15, 0.35)
GRAIN_CUTOFF = 0.4
MARGIN = 1.0  # pixels between the object and the frame edge, at the closest
_SUPERSAMPLE = 4  # sub-pixel samples per axis: anti-aliased edges and sub-pixel motion


def all_captions() -> list[str]:
    """The 48 captions of the shapes world, in a fixed order (colour, then shape, then direction)."""
    return [f"a {c} {s} moving {d}" for c in COLOURS for s in SHAPES for d in DIRECTIONS]


def parse_caption(caption: str) -> tuple[str, str, str]:
    """`a {colour} {shape} moving {direction}` -> (colour, shape, direction); ValueError otherwise."""
    words = caption.strip().split()
    if (
        len(words) != 5
        or words[0] != "a"
        or words[3] != "moving"
        or words[1] not in COLOURS
        or words[2] not in SHAPES
        or words[4] not in DIRECTIONS
    ):
        raise ValueError(
            f"not a shapes-world caption: {caption!r}; expected 'a {{colour}} {{shape}} moving {{direction}}' "
            f"with colour in {list(COLOURS)}, shape in {list(SHAPES)}, direction in {list(DIRECTIONS)}"
        )
    return words[1], words[2], words[4]


@dataclass(frozen=True)
class ShapesClip:
    """Everything that defines one clip; `render()` turns it into pixels.

    Positions are the object's centre in pixels (x right, y down) at frame 0; it moves `speed` px per frame.
    With `wrap` the frame is a torus: the object is drawn at its centre modulo `size` on both axes, so a part
    past one edge shows at the opposite one.
    """

    colour: str
    shape: str
    direction: str
    object_size: float
    speed: float
    start: tuple[float, float]
    grey: float  # background grey level in [0, 1]
    gradient: tuple[float, float]  # background grey change across the frame along x and y
    num_frames: int
    size: int
    wrap: bool = False
    texture: str | None = None  # None, "static" or "pan"
    texture_seed: int = 0  # seeds the texture's random spectrum
    texture_contrast: tuple[float, float] = (0.0, 0.0)  # (blotches, grain) std on the [0, 1] scale
    pan: tuple[float, float] = (0.0, 0.0)  # the texture's motion (x, y) in px per frame ("pan" only)

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} moving {self.direction}"

    def centres(self) -> np.ndarray:
        """(T, 2) the object's centre (x, y) in pixel coordinates (pixel i covers [i, i+1)) per frame; with
        `wrap` not reduced modulo `size` (a continuous track: displacement is a difference of centres)."""
        dx, dy = DIRECTIONS[self.direction]
        steps = np.arange(self.num_frames, dtype=np.float64)[:, None] * self.speed
        return np.asarray(self.start)[None] + steps * np.array([dx, dy], dtype=np.float64)[None]

    def render(self) -> torch.Tensor:
        """-> (C, T, H, W) float in [-1, 1]."""
        return _render(self)


def sample_clip(
    colour: str,
    shape: str,
    direction: str,
    *,
    rng: np.random.Generator,
    num_frames: int = 32,
    size: int = 64,
    speed: tuple[float, float] = SPEED,
    wrap: bool = False,
    texture: str | None = None,
) -> ShapesClip:
    """Draw object size, speed, start position and background for a clip.

    `speed` (min, max) is in px per frame at size 64 (scaled with `size`). Without `wrap` the object stays fully
    visible: a clip too long for its speed is slowed down to fit. With `wrap` it starts anywhere and keeps its
    speed. `texture`: None, "static", "pan", "mixed" or "any" (see the module docstring). The draws without `wrap` and
    `texture` are today's, in today's order: same seed, same clip.
    """
    parse_caption(f"a {colour} {shape} moving {direction}")  # validates the three words
    check_texture(texture)
    if num_frames < 2 or size < 24:
        raise ValueError(f"need num_frames >= 2 and size >= 24, got num_frames={num_frames}, size={size}")
    check_speed(speed)
    scale = size / 64
    extent = rng.uniform(*OBJECT_SIZE) * scale
    dx, dy = DIRECTIONS[direction]
    if wrap:
        # Any start on the torus; the speed is never reduced (there is no edge to stay inside).
        step = rng.uniform(*speed) * scale
        on_axis, across = rng.uniform(0, size), rng.uniform(0, size)
    else:
        lo, hi = MARGIN + extent / 2, size - MARGIN - extent / 2  # allowed centre range along each axis
        step = min(rng.uniform(*speed) * scale, (hi - lo) / (num_frames - 1))  # long clips slow down to fit
        travel = step * (num_frames - 1)
        # Start position on the motion axis, before orienting it. A slowed-down clip travels exactly hi - lo, and
        # rounding can put hi - travel a hair below lo (numpy refuses high < low): max() changes no other draw.
        along = rng.uniform(lo, max(lo, hi - travel))
        across = rng.uniform(lo, hi)
        on_axis = along if dx + dy > 0 else size - along  # moving towards 0: start from the far side
    start = (on_axis, across) if dx else (across, on_axis)
    grey = rng.uniform(0.25, 0.75)
    angle = rng.uniform(0, 2 * math.pi)
    amplitude = rng.uniform(0.05, 0.2)  # a visible but gentle gradient
    textured = _draw_texture(texture, rng, scale) if texture is not None else {}
    return ShapesClip(
        colour=colour,
        shape=shape,
        direction=direction,
        object_size=float(extent),
        speed=float(step),
        start=(float(start[0]), float(start[1])),
        grey=float(grey),
        gradient=(float(amplitude * math.cos(angle)), float(amplitude * math.sin(angle))),
        num_frames=num_frames,
        size=size,
        wrap=wrap,
        **textured,
    )


def _draw_texture(texture: str, rng: np.random.Generator, scale: float) -> dict:
    """The texture's draws (after all others, so untextured clips keep theirs) as ShapesClip fields."""
    kinds = {"mixed": ("static", "pan"), "any": ("plain", "static", "pan")}.get(texture, (texture,))
    kind = kinds[int(rng.integers(len(kinds)))] if len(kinds) > 1 else kinds[0]
    contrast = (float(rng.uniform(*BLOTCH_CONTRAST)), float(rng.uniform(*GRAIN_CONTRAST)))
    seed = int(rng.integers(2**63))
    angle, speed = rng.uniform(0, 2 * math.pi), rng.uniform(*PAN_SPEED) * scale
    pan = (float(speed * math.cos(angle)), float(speed * math.sin(angle))) if kind == "pan" else (0.0, 0.0)
    if kind == "plain":  # drawn all the same: a clip's draws do not depend on its kind
        return {}
    return {"texture": kind, "texture_seed": seed, "texture_contrast": contrast, "pan": pan}


def check_texture(texture: str | None) -> None:
    """ValueError unless `texture` is None or one of `TEXTURES`."""
    if texture is not None and texture not in TEXTURES:
        raise ValueError(f"texture must be None or one of {TEXTURES}, got {texture!r}")


def check_speed(speed: tuple[float, float]) -> None:
    """ValueError unless `speed` is (min, max) px per frame with 0 < min <= max (a caption says 'moving')."""
    if len(speed) != 2 or not 0 < speed[0] <= speed[1] or not math.isfinite(speed[1]):
        raise ValueError(f"speed must be (min, max) px per frame at size 64 with 0 < min <= max, got {speed}")


# Frames rendered at once: bounds the supersampled masks' memory for long videos (1,000 frames at size 64 would
# be ~1 GB at once); every frame is computed on its own, so the chunking does not change a pixel.
_CHUNK_FRAMES = 64


def _coverage(clip: ShapesClip) -> torch.Tensor:
    """(T, H, W) fraction of each pixel covered by the object, from supersampled inside tests."""
    centres = torch.from_numpy(clip.centres())
    chunks = [_coverage_of(clip, centres[i : i + _CHUNK_FRAMES]) for i in range(0, len(centres), _CHUNK_FRAMES)]
    return torch.cat(chunks)


def _coverage_of(clip: ShapesClip, centres: torch.Tensor) -> torch.Tensor:
    s, n = _SUPERSAMPLE, clip.size
    coords = (torch.arange(n * s, dtype=torch.float64) + 0.5) / s
    x = coords[None, None, :] - centres[:, 0, None, None]  # (T, 1, W*s)
    y = coords[None, :, None] - centres[:, 1, None, None]  # (T, H*s, 1)
    if clip.wrap:
        # The offset to the nearest copy of the centre on the torus, in [-n/2, n/2): the object (<= 20/64 of
        # the frame) is drawn whole, split across the edges when it straddles them.
        x = torch.remainder(x + n / 2, n) - n / 2
        y = torch.remainder(y + n / 2, n) - n / 2
    half = clip.object_size / 2
    if clip.shape == "circle":
        inside = x**2 + y**2 <= half**2
    elif clip.shape == "square":
        inside = (x.abs() <= half) & (y.abs() <= half)
    else:  # isosceles triangle pointing up, base = height = object_size: half the bounding box
        rel = (y + half) / clip.object_size  # 0 at the apex, 1 at the base
        inside = (rel >= 0) & (rel <= 1) & (x.abs() <= half * rel)
    inside = inside.expand(len(centres), n * s, n * s).float()  # coverage k/16 is exact in float32
    return torch.nn.functional.avg_pool2d(inside, s).double()


def _texture(clip: ShapesClip) -> torch.Tensor:
    """(T or 1, H, W) the texture's grey offsets: a periodic field (period 2 x size) of soft blotches (amplitude
    ~ 1/f) plus grain (flat up to GRAIN_CUTOFF cycles per pixel), each scaled to its contrast, moved by
    `pan * t` px with a Fourier phase shift (exact for a band-limited field: no blur, no contrast change)."""
    n = clip.size
    period = 2 * n
    rng = np.random.default_rng(clip.texture_seed)
    f = np.fft.fftfreq(period)  # cycles per pixel
    radius = np.hypot(f[None, :], f[:, None])
    blotches = np.where((radius > 0) & (radius <= 0.1), 1 / np.maximum(radius, 1e-9), 0.0)
    grain = np.where((radius > 0.1) & (radius <= GRAIN_CUTOFF), 1.0, 0.0)
    spectrum = np.zeros((period, period), dtype=np.complex128)
    for shape, contrast in zip((blotches, grain), clip.texture_contrast, strict=True):
        part = np.fft.fft2(rng.standard_normal((period, period))) * shape
        spectrum += part * (contrast / np.real(np.fft.ifft2(part)).std())
    steps = np.arange(clip.num_frames)[:, None] if clip.texture == "pan" else np.zeros((1, 1))
    shifts = steps * np.asarray(clip.pan)[None]  # (T or 1, 2): (x, y) in px
    frames = []
    for dx, dy in shifts:  # the view at offset (dx, dy): texture(x + dx, y + dy)
        phase = np.exp(2j * np.pi * (f[None, :] * dx + f[:, None] * dy))
        frames.append(np.real(np.fft.ifft2(spectrum * phase))[:n, :n])
    return torch.from_numpy(np.stack(frames))


def _render(clip: ShapesClip) -> torch.Tensor:
    n = clip.size
    ramp = (torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5
    background = clip.grey + clip.gradient[0] * ramp[None, :] + clip.gradient[1] * ramp[:, None]  # (H, W)
    if clip.texture is not None:
        background = (background[None] + _texture(clip)).clamp(0, 1)  # (T or 1, H, W)
    colour = torch.tensor(COLOURS[clip.colour], dtype=torch.float64) / 255
    cover = _coverage(clip)[None]  # (1, T, H, W)
    video = cover * colour[:, None, None, None] + (1 - cover) * background[None]
    return (video * 2 - 1).float()


def render_shapes_video(
    colour: str,
    shape: str,
    direction: str,
    *,
    rng: np.random.Generator | int,
    num_frames: int = 32,
    size: int = 64,
    speed: tuple[float, float] = SPEED,
    wrap: bool = False,
    texture: str | None = None,
) -> torch.Tensor:
    """Render one clip without writing files -> (C, T, H, W) float in [-1, 1], C = 3."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    clip = sample_clip(
        colour, shape, direction, rng=rng, num_frames=num_frames, size=size, speed=speed, wrap=wrap, texture=texture
    )
    return clip.render()


def balanced_captions(count: int, *, seed: int) -> list[str]:
    """`count` captions cycling through all 48, each cycle shuffled by the seed (balanced within +-1)."""
    captions = all_captions()
    order: list[str] = []
    for cycle in range(math.ceil(count / len(captions))):
        perm = np.random.default_rng([seed, cycle, 48]).permutation(len(captions))
        order.extend(captions[i] for i in perm)
    return order[:count]


def dataset_clips(
    videos: int,
    *,
    seed: int,
    num_frames: int = 32,
    size: int = 64,
    speed: tuple[float, float] = SPEED,
    wrap: bool = False,
    texture: str | None = None,
) -> Iterator[tuple[str, ShapesClip]]:
    """The (caption, clip) pairs of a dataset with this seed, one at a time: captions balanced over the 48, clip i
    drawn with the generator seeded [seed, i]. `write_shapes_dataset` writes them; evaluations render held-out ones
    from an unused seed. Arguments as for `sample_clip`."""
    for i, caption in enumerate(balanced_captions(videos, seed=seed)):
        colour, shape, direction = parse_caption(caption)
        rng = np.random.default_rng([seed, i])
        clip = sample_clip(
            colour, shape, direction, rng=rng, num_frames=num_frames, size=size, speed=speed, wrap=wrap, texture=texture
        )
        yield caption, clip


def write_shapes_dataset(
    out_dir: str | Path,
    *,
    videos: int,
    seed: int,
    num_frames: int = 32,
    size: int = 64,
    fps: float = 8,
    speed: tuple[float, float] = SPEED,
    wrap: bool = False,
    texture: str | None = None,
    lossless: bool = False,
) -> Path:
    """Write `videos` clips as `{i:05d}.mp4` plus `captions.csv` (path,caption) into `out_dir`; returns it.
    `speed`, `wrap` and `texture` as for `sample_clip`; `lossless`: RGB mp4 without loss (`VideoWriter`)."""
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    check_speed(speed)
    check_texture(texture)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output folder {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    clips = dataset_clips(videos, seed=seed, num_frames=num_frames, size=size, speed=speed, wrap=wrap, texture=texture)
    for i, (caption, clip) in enumerate(clips):
        name = f"{i:05d}.mp4"
        write_video(out_dir / name, clip.render(), fps=fps, lossless=lossless)
        rows.append((name, caption))
    # captions.csv last: a folder with it is complete.
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "caption"])
    writer.writerows(rows)
    with atomic_path(out_dir / "captions.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    return out_dir
