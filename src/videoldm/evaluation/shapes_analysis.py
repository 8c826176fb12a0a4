"""Read a shapes-world video back into words: which colour, which shape, which way it moves, how steadily.

This is the task-specific evaluation of models trained on the shapes world (`videoldm.data.shapes`): per frame
the object is segmented as the largest 8-connected blob of saturated pixels (the background is grey); its colour
is the nearest of the four hues to the blob's mean hue; its shape comes from how lopsided its mass is (triangles)
and how much of its bounding box it fills (square 1.0, circle pi/4 ~ 0.785), both measured on soft coverage so
that the chroma blur of yuv420p video hardly moves them; its centroid is tracked. Per video the direction is the
dominant axis of a linear fit to the centroid track. `score_videos` compares all of it with the captions.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from videoldm.data.shapes import COLOURS, parse_caption

SATURATION_THRESHOLD = 0.35  # max - min of RGB in [0, 1]: about half the objects' saturation (0.67-0.8)
MIN_AREA_FRACTION = 0.01  # blobs smaller than this fraction of the frame are "no object" (41 px at 64 x 64)
TRIANGLE_SKEW = 0.25  # |skewness| of the mass along x or y above this: a triangle (upward one: 0.57)
TRIANGLE_FILL = 0.64  # fill ratio below this: a triangle (0.5) too
SQUARE_FILL = 0.9  # fill ratio at or above this: a square (1.0), else a circle (pi/4)
STATIC_SPEED = 0.25  # px per frame: slower fitted motion is "static"


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> hue in degrees [0, 360) (the hexagonal hue, as a smooth angle)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.degrees(np.arctan2(math.sqrt(3) * (g - b), 2 * r - g - b)) % 360


REFERENCE_HUES: dict[str, float] = {name: float(hue_degrees(np.array(rgb) / 255)) for name, rgb in COLOURS.items()}


@dataclass(frozen=True)
class FrameAnalysis:
    """The object found in one frame: colour and shape names, centroid (x, y) in pixels (pixel i covers
    [i, i + 1)), area in pixels (soft: edge pixels count by coverage), fill ratio, skewness of the mass (the
    larger of x and y), hue in degrees, and solidity: the share of its convex hull the object covers (~1 for the
    world's convex shapes; a five-pointed star, the dreambooth demo's new shape, ~0.5-0.7)."""

    colour: str
    shape: str
    centroid: tuple[float, float]
    area: float
    fill: float
    skew: float
    hue: float
    solidity: float = math.nan


@dataclass
class VideoAnalysis:
    """Per-frame findings (None where no object) and the per-video summary.

    direction is one of left/right/up/down, 'static' (fitted speed < STATIC_SPEED px/frame), or None (object in
    fewer than 2 frames). velocity is the fitted (vx, vy) in px/frame (y grows downwards). smoothness is the mean
    norm of the centroid's second difference in px/frame^2 (0 for constant speed; nan with < 3 consecutive frames).
    """

    frames: list[FrameAnalysis | None]
    colours: list[str | None]
    shapes: list[str | None]
    centroids: list[tuple[float, float] | None]
    colour: str | None
    shape: str | None
    direction: str | None
    velocity: tuple[float, float]
    consistent: bool
    tracked: bool
    smoothness: float

    @property
    def identity(self) -> bool:
        """One object throughout: consistent (same colour and shape in every frame) and tracked (it moves, it is
        not drawn anew elsewhere in each frame)."""
        return self.consistent and self.tracked

    @property
    def caption(self) -> str | None:
        """The caption this video shows, or None if any part of it is missing."""
        if self.colour is None or self.shape is None or self.direction in (None, "static"):
            return None
        return f"a {self.colour} {self.shape} moving {self.direction}"


def _spread_max(x: np.ndarray, radius: int) -> np.ndarray:
    """(T, H, W) -> max over each pixel's (2r+1) x (2r+1) neighbourhood (separable: rows, then columns)."""
    out = x.copy()
    padded = np.pad(x, ((0, 0), (0, 0), (radius, radius)))
    for d in range(2 * radius + 1):
        np.maximum(out, padded[:, :, d : d + x.shape[2]], out=out)
    padded = np.pad(out, ((0, 0), (radius, radius), (0, 0)))
    for d in range(2 * radius + 1):
        np.maximum(out, padded[:, d : d + x.shape[1]], out=out)
    return out


def _largest_blobs(mask: np.ndarray) -> np.ndarray:
    """(T, H, W) bool -> (T, H, W) bool: per frame, the largest 8-connected component of `mask`.

    Labels spread to their 3 x 3 neighbours (max) until stable: each pixel ends with its component's largest index.
    Only the box around all masked pixels is processed (the object is small).
    """
    out = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any((0, 2))), np.flatnonzero(mask.any((0, 1)))
    if not len(rows):
        return out
    box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    inside = mask[box]
    labels = np.where(inside, np.arange(1, inside.size + 1, dtype=np.int32).reshape(inside.shape), 0)
    while True:
        spread = np.where(inside, _spread_max(labels, 1), 0)
        if np.array_equal(spread, labels):
            break
        labels = spread
    for i, frame in enumerate(labels):
        values, counts = np.unique(frame[frame > 0], return_counts=True)
        if len(values):
            out[box][i] = frame == values[counts.argmax()]
    return out


def _nearest_colour(hue: float) -> str:
    return min(REFERENCE_HUES, key=lambda name: abs((hue - REFERENCE_HUES[name] + 180) % 360 - 180))


def _shape(cover: np.ndarray, area: float, xs: np.ndarray, ys: np.ndarray) -> tuple[str, float, float]:
    """Soft coverage (H, W) -> (shape name, fill ratio, skewness).

    Triangles are told apart by their lopsided mass (|skewness| along x or y: 0.57 for the upward triangle, 0 for
    the symmetric circle and square), squares from circles by the fill ratio area / (widest row * tallest column).
    """
    fill = area / float(cover.sum(1).max() * cover.sum(0).max())
    skews = []
    for coord in (xs, ys):
        mean = float((cover * coord).sum()) / area
        var = float((cover * (coord - mean) ** 2).sum()) / area
        skews.append(float((cover * (coord - mean) ** 3).sum()) / area / max(var, 1e-9) ** 1.5)
    skew = max(skews, key=abs)
    if abs(skew) > TRIANGLE_SKEW or fill < TRIANGLE_FILL:
        return "triangle", fill, skew
    return ("square" if fill >= SQUARE_FILL else "circle"), fill, skew


def _solidity(cover: np.ndarray) -> float:
    """Soft coverage (H, W) -> covered area / area of the convex hull of the pixels at least half covered (each
    pixel a unit square: the hull of their corners)."""
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(cover >= 0.5)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(np.float64)
    try:
        hull = ConvexHull(corners).volume  # in 2-D, `volume` is the area
    except (QhullError, ValueError):  # fewer than 3 distinct corners
        return math.nan
    return float(min(1.0, cover.sum() / hull))


def _analyse(rgb: np.ndarray) -> list[FrameAnalysis | None]:
    """(T, H, W, 3) RGB in [0, 1] -> the object in each frame, or None where there is no big enough blob."""
    saturation = rgb.max(-1) - rgb.min(-1)  # linear in coverage: grey + c * (object - grey) has c * sat(object)
    blobs = _largest_blobs(saturation > SATURATION_THRESHOLD)
    # Soft coverage near the blob (edges blurred by chroma subsampling count fractionally), so that area, widths
    # and moments are integrals that blur hardly moves.
    near = _spread_max(blobs, 2)
    results: list[FrameAnalysis | None] = []
    for frame, sat, blob, region in zip(rgb, saturation, blobs, near, strict=True):
        if not blob.any():
            results.append(None)
            continue
        # Work in the box around the blob's neighbourhood; coordinates are pixel centres (pixel i covers [i, i+1)).
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        ys, xs = np.mgrid[box].astype(np.float64) + 0.5
        cover = np.clip(sat[box] / np.quantile(sat[blob], 0.9), 0, 1) * region[box]
        area = float(cover.sum())
        if area < MIN_AREA_FRACTION * sat.size:
            results.append(None)
            continue
        shape, fill, skew = _shape(cover, area, xs, ys)
        # Circular mean of the hue over the blob, weighted by saturation.
        angles = np.radians(hue_degrees(frame[blob]))
        weights = sat[blob]
        hue = float(np.degrees(np.arctan2((weights * np.sin(angles)).sum(), (weights * np.cos(angles)).sum())) % 360)
        centroid = (float((cover * xs).sum()) / area, float((cover * ys).sum()) / area)
        solidity = _solidity(cover)
        results.append(FrameAnalysis(_nearest_colour(hue), shape, centroid, area, fill, skew, hue, solidity))
    return results


def analyse_frame(frame: torch.Tensor) -> FrameAnalysis | None:
    """One frame (C, H, W) in [-1, 1] -> the object in it, or None if there is no saturated blob big enough."""
    return analyse_video(frame[:, None]).frames[0]


def _direction(centroids: list[tuple[float, float] | None]) -> tuple[str | None, tuple[float, float]]:
    """Linear fit of x(t) and y(t) over the frames with an object -> direction name and (vx, vy) px/frame."""
    found = [(t, c) for t, c in enumerate(centroids) if c is not None]
    if len(found) < 2:
        return None, (0.0, 0.0)
    t = np.array([f[0] for f in found], dtype=np.float64)
    xy = np.array([f[1] for f in found], dtype=np.float64)
    vx, vy = (float(np.polyfit(t, xy[:, i], 1)[0]) for i in range(2))
    if max(abs(vx), abs(vy)) < STATIC_SPEED:
        return "static", (vx, vy)
    if abs(vx) >= abs(vy):
        return ("right" if vx > 0 else "left"), (vx, vy)
    return ("down" if vy > 0 else "up"), (vx, vy)


def _tracked(frames: list[FrameAnalysis | None]) -> bool:
    """An object in every frame, and between consecutive frames its centroid moves less than its radius
    (sqrt(area / pi), the smaller of the two): the two silhouettes overlap, so a tracker would call it the same
    object. A frame-by-frame image model draws the object anew at a random place in each frame instead."""
    if any(f is None for f in frames):
        return False
    return all(
        math.dist(a.centroid, b.centroid) < math.sqrt(min(a.area, b.area) / math.pi)
        for a, b in itertools.pairwise(frames)
    )


def _smoothness(centroids: list[tuple[float, float] | None]) -> float:
    second = [
        math.dist((a[0] - 2 * b[0] + c[0], a[1] - 2 * b[1] + c[1]), (0.0, 0.0))
        for a, b, c in zip(centroids, centroids[1:], centroids[2:], strict=False)
        if a is not None and b is not None and c is not None
    ]
    return float(np.mean(second)) if second else math.nan


def _majority(values: list[str | None]) -> str | None:
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def _analyse_on_torus(rgb: np.ndarray) -> list[FrameAnalysis | None]:
    """`_analyse` for a world that wraps around: each frame is rolled so that the object found last sits at the
    centre (an object leaving one edge and re-entering at the other is then one blob), and its centroid is put
    back on an unwrapped track: the step from the last centroid is taken modulo the frame size into
    [-size / 2, size / 2). The first frame is rolled to its own largest blob first."""
    size = np.array(rgb.shape[2:0:-1], dtype=np.float64)  # (W, H)
    results: list[FrameAnalysis | None] = []
    last: np.ndarray | None = None
    for frame in rgb:
        for attempt in range(2 if last is None else 1):
            anchor = last if last is not None else None
            shift = np.zeros(2) if anchor is None else np.floor(size / 2 - anchor)
            rolled = np.roll(frame, (int(shift[1]), int(shift[0])), axis=(0, 1))
            found = _analyse(rolled[None])[0]
            if found is None:
                break
            centroid = np.array(found.centroid) - shift  # back in the frame's coordinates, up to whole turns
            if anchor is not None:
                centroid = anchor + (centroid - anchor + size / 2) % size - size / 2
            if last is None and attempt == 0:  # roll the first frame to its object and look again
                last = centroid % size
                continue
            found = FrameAnalysis(**{**found.__dict__, "centroid": (float(centroid[0]), float(centroid[1]))})
        if found is not None:
            last = np.array(found.centroid)
        results.append(found)
    return results


def analyse_video(video: torch.Tensor, *, wrap: bool = False) -> VideoAnalysis:
    """A shapes-world video (C, T, H, W) in [-1, 1] -> per-frame and per-video findings. `wrap`: a world that
    wraps around (`videoldm data shapes --wrap`); the centroids are then an unwrapped track (`_analyse_on_torus`)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected an RGB video (C=3, T, H, W), got shape {tuple(video.shape)}")
    rgb = ((video.detach().cpu().double().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).numpy()
    frames = _analyse_on_torus(rgb) if wrap else _analyse(rgb)
    colours = [f.colour if f else None for f in frames]
    shapes = [f.shape if f else None for f in frames]
    centroids = [f.centroid if f else None for f in frames]
    direction, velocity = _direction(centroids)
    return VideoAnalysis(
        frames=frames,
        colours=colours,
        shapes=shapes,
        centroids=centroids,
        colour=_majority(colours),
        shape=_majority(shapes),
        direction=direction,
        velocity=velocity,
        consistent=all(f is not None for f in frames) and len(set(colours)) == 1 and len(set(shapes)) == 1,
        tracked=_tracked(frames),
        smoothness=_smoothness(centroids),
    )


def match_caption(caption: str, result: VideoAnalysis) -> dict[str, bool | float]:
    """What of `caption` a video's analysis shows: colour / shape / direction / all correct, consistent,
    identity (bools) and the video's smoothness."""
    colour, shape, direction = parse_caption(caption)
    return {
        "colour_correct": result.colour == colour,
        "shape_correct": result.shape == shape,
        "direction_correct": result.direction == direction,
        "all_correct": (result.colour, result.shape, result.direction) == (colour, shape, direction),
        "consistent": result.consistent,
        "identity": result.identity,
        "smoothness": result.smoothness,
    }


def score_videos(samples: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
    """(caption, video (C, T, H, W) in [-1, 1]) pairs -> fractions of videos whose colour / shape / direction
    match the caption (`all_correct`: all three), fractions `consistent` and `identity`, mean `smoothness`
    (px/frame^2, over the videos where it is defined) and the count `videos`."""
    rows = [match_caption(caption, analyse_video(video)) for caption, video in samples]
    if not rows:
        raise ValueError("score_videos needs at least one (caption, video) pair")
    scores = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "smoothness"}
    smooth = [r["smoothness"] for r in rows if math.isfinite(r["smoothness"])]
    scores["smoothness"] = float(np.mean(smooth)) if smooth else math.nan
    scores["videos"] = float(len(rows))
    return scores
