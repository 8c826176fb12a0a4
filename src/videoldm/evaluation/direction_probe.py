"""A few-second check of whether a shapes-world model moves the object the way the prompt says.

For each (colour, shape) group, the four prompts "a {colour} {shape} moving {left|right|up|down}" are sampled
from THE SAME initial noise: a model that ignores the direction word gives four videos that move one way; a model
that follows it gives four videos that move four ways. Cheap enough (few steps, a handful of groups) to run on a
checkpoint every few hundred training steps, so a run that does not learn direction is stopped after minutes.
`videoldm evaluate shapes` is the full measurement (all 48 captions, more steps, several seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from videoldm.data.shapes import DIRECTIONS
from videoldm.evaluation.shapes_analysis import analyse_video

# Colour/shape groups in a fixed order: every colour and every shape appears within the first four.
GROUPS: tuple[tuple[str, str], ...] = (
    ("red", "circle"),
    ("green", "square"),
    ("blue", "triangle"),
    ("yellow", "circle"),
    ("red", "square"),
    ("green", "triangle"),
)


@dataclass
class ProbeResult:
    """moved[g][k]: the direction the object of group g moved under direction word k (None: no object found;
    "static": it did not move)."""

    groups: list[tuple[str, str]]
    moved: list[list[str | None]] = field(default_factory=list)

    @property
    def right(self) -> int:
        """Videos whose object moved the way its prompt says."""
        return sum(m == d for row in self.moved for m, d in zip(row, DIRECTIONS, strict=True))

    @property
    def total(self) -> int:
        return len(self.moved) * len(DIRECTIONS)

    @property
    def four_ways(self) -> int:
        """Groups in which the four words gave four different directions of motion."""
        return sum(len({m for m in row if m not in (None, "static")}) == len(DIRECTIONS) for row in self.moved)

    @property
    def axis_right(self) -> int:
        """Videos that moved along the prompt's axis (sideways for left/right, vertically for up/down)."""
        axis = {"left": "x", "right": "x", "up": "y", "down": "y"}
        return sum(axis.get(m or "") == axis[d] for row in self.moved for m, d in zip(row, DIRECTIONS, strict=True))

    def summary(self) -> dict[str, Any]:
        return {
            "direction_right": self.right / self.total,
            "axis_right": self.axis_right / self.total,
            "four_ways": self.four_ways / len(self.moved),
        }

    def line(self) -> str:
        return (
            f"direction probe: {self.right}/{self.total} right, {self.axis_right}/{self.total} on the right axis, "
            f"four words -> four motions in {self.four_ways}/{len(self.moved)} groups"
        )


@torch.no_grad()
def direction_probe(
    pipe: Any,
    *,
    groups: Sequence[tuple[str, str]] = GROUPS,
    num_frames: int = 8,
    num_inference_steps: int = 10,
    guidance_scale: float = 7.5,
    seed: int = 0,
    image_only: bool = False,
) -> ProbeResult:
    """Run the probe with a `VideoLDMPipeline` (or anything with its call signature and `geometry`).

    Group g's four videos start from one noise tensor (1, c, T, h, w) drawn with seed `seed + g`; they are
    decoded with the image decoder (the probe asks about motion, not the decoder) and analysed frame by frame.
    """
    geometry = pipe.geometry
    size = geometry.sample_size
    result = ProbeResult(groups=list(groups))
    for g, (colour, shape) in enumerate(groups):
        prompts = [f"a {colour} {shape} moving {d}" for d in DIRECTIONS]
        shape_ = (1, geometry.latent_channels, num_frames, size, size)
        noise = randn_tensor(shape_, generator=torch.Generator().manual_seed(seed + g), dtype=torch.float32)
        videos = pipe(
            prompts,
            num_frames=num_frames,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            latents=noise.expand(len(prompts), -1, -1, -1, -1).clone(),
            image_only=image_only,
            image_decoder=True,
        ).frames
        result.moved.append([analyse_video(v.float().cpu()).direction for v in videos])
    return result
