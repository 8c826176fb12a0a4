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

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from videoldm.autoencoder.scaling import scale_latents
from videoldm.data.shapes import DIRECTIONS, sample_clip
from videoldm.diffusion.noise import correlate_frames, sampling_correlation
from videoldm.evaluation.shapes_analysis import analyse_video
from videoldm.temporal.layers import frames_to_video, video_to_frames

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
    "static": it did not move); one_object[g][k]: that video showed one object throughout (`VideoAnalysis.identity`:
    same colour and shape in every frame, tracked from frame to frame); drawn[g][k]: the (colour, shape) it showed
    (the per-video majority, None where not found)."""

    groups: list[tuple[str, str]]
    moved: list[list[str | None]] = field(default_factory=list)
    one_object: list[list[bool]] = field(default_factory=list)
    drawn: list[list[tuple[str | None, str | None]]] = field(default_factory=list)
    advantage: dict[int, dict[str, float]] = field(default_factory=dict)  # `word_advantage`, when measured

    @property
    def right(self) -> int:
        """Videos whose object moved the way its prompt says."""
        return sum(m == d for row in self.moved for m, d in zip(row, DIRECTIONS, strict=True))

    @property
    def identity(self) -> int:
        """Videos that showed one object throughout."""
        return sum(sum(row) for row in self.one_object)

    @property
    def colour_right(self) -> int:
        """Videos that showed their group's colour."""
        return sum(c == colour for (colour, _), row in zip(self.groups, self.drawn, strict=True) for c, _ in row)

    @property
    def shape_right(self) -> int:
        """Videos that showed their group's shape."""
        return sum(s == shape for (_, shape), row in zip(self.groups, self.drawn, strict=True) for _, s in row)

    @property
    def total(self) -> int:
        return len(self.moved) * len(DIRECTIONS)

    def extend(self, other: ProbeResult) -> None:
        """Append another probe's rows (another seed's): the counts then add up over both."""
        self.groups += other.groups
        self.moved += other.moved
        self.one_object += other.one_object
        self.drawn += other.drawn

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
        advantage = {f"{key}_t{t}": v for t, row in self.advantage.items() for key, v in row.items()}
        drawn = {"colour": self.colour_right / self.total, "shape": self.shape_right / self.total} if self.drawn else {}
        return {
            "direction_right": self.right / self.total,
            "axis_right": self.axis_right / self.total,
            "four_ways": self.four_ways / len(self.moved),
            "identity": self.identity / self.total,
            **drawn,
            **advantage,
        }

    def line(self) -> str:
        words = ", ".join(
            f"t={t}: {row['advantage']:+.2%} ({row['accuracy']:.0%})" for t, row in self.advantage.items()
        )
        n = self.total
        return (
            f"direction probe: {self.right}/{n} right, {self.axis_right}/{n} on the right axis, "
            f"four words -> four motions in {self.four_ways}/{len(self.moved)} groups, "
            f"one object throughout in {self.identity}/{n}"
            + (f", colour right in {self.colour_right}/{n}, shape in {self.shape_right}/{n}" if self.drawn else "")
            + (f"; word advantage (own word best) {words}" if words else "")
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
    wrap: bool = False,
    noise_correlation: float | None = None,
) -> ProbeResult:
    """Run the probe with a `VideoLDMPipeline` (or anything with its call signature and `geometry`).

    Group g's four videos start from one noise tensor (1, c, T, h, w) drawn with seed `seed + g`; they are
    decoded with the image decoder (the probe asks about motion, not the decoder) and analysed frame by frame;
    `wrap`: for a model trained on the wrapping world (the object may leave one edge and re-enter at the other).
    `noise_correlation`: the frames' noise correlation (the shared part from the same generator); default: the
    pipeline's (its temporal layers', 0 with `image_only`).
    """
    geometry = pipe.geometry
    size = geometry.sample_size
    if noise_correlation is None:
        noise_correlation = sampling_correlation(getattr(pipe, "unet", None), image_only=image_only)
    result = ProbeResult(groups=list(groups))
    for g, (colour, shape) in enumerate(groups):
        prompts = [f"a {colour} {shape} moving {d}" for d in DIRECTIONS]
        shape_ = (1, geometry.latent_channels, num_frames, size, size)
        generator = torch.Generator().manual_seed(seed + g)
        noise = randn_tensor(shape_, generator=generator, dtype=torch.float32)
        noise = correlate_frames(noise, noise_correlation, generator=generator)
        videos = pipe(
            prompts,
            num_frames=num_frames,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            latents=noise.expand(len(prompts), -1, -1, -1, -1).clone(),
            image_only=image_only,
            image_decoder=True,
        ).frames
        analyses = [analyse_video(v.float().cpu(), wrap=wrap) for v in videos]
        result.moved.append([a.direction for a in analyses])
        result.one_object.append([a.identity for a in analyses])
        result.drawn.append([(a.colour, a.shape) for a in analyses])
    return result


# Noise levels at which `word_advantage` compares the direction words (DDPM timesteps of a 1000-step schedule).
ADVANTAGE_TIMESTEPS: tuple[int, ...] = (200, 500, 800, 950)


@torch.no_grad()
def word_advantage(
    unet: Any,
    vae: Any,
    text_encoder: Any,
    scheduler: Any,
    *,
    groups: Sequence[tuple[str, str]] = GROUPS[:4],
    timesteps: Sequence[int] = ADVANTAGE_TIMESTEPS,
    num_frames: int = 8,
    frame_stride: int = 4,
    size: int = 64,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """How much the model's denoising uses the direction word, per noise level: a continuous signal that moves
    long before sampled videos change direction.

    True shapes-world clips (`size` px, every `frame_stride`-th frame, one per group and direction) are noised once per
    timestep and denoised under each of the four direction words. Returns {t: {"advantage": mean relative
    increase of the eps error when the word is wrong instead of right, "accuracy": share of clips whose own word
    gives the lowest error}}. A model that ignores the word: advantage ~0, accuracy ~1/4.
    """
    rng = np.random.default_rng(seed)
    words = list(DIRECTIONS)
    clips = [
        sample_clip(c, s, d, rng=rng, num_frames=(num_frames - 1) * frame_stride + 1, size=size).render()[
            :, ::frame_stride
        ]
        for c, s in groups
        for d in words
    ]
    truth = torch.tensor([k for _ in groups for k in range(len(words))])
    pixels = torch.stack(clips).to(vae.device, vae.dtype)  # (N, 3, T, H, W)
    latents = vae.encode(video_to_frames(pixels)).latent_dist.mean
    latents = frames_to_video(scale_latents(latents, vae.config), num_frames).float()
    texts = [text_encoder([f"a {c} {s} moving {w}" for c, s in groups for _ in words]) for w in words]
    # Drawn on the CPU (the same noise on every device), then moved to the latents' device.
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents.device)
    truth = truth.to(latents.device)
    result = {}
    for t in timesteps:
        steps = torch.full((latents.shape[0],), t, dtype=torch.long, device=latents.device)
        noisy = scheduler.add_noise(latents, noise, steps)
        errors = torch.stack(
            [
                (unet(noisy, steps, encoder_hidden_states=text).sample.float() - noise).square().flatten(1).mean(1)
                for text in texts
            ],
            dim=1,
        )  # (N, 4): the eps error under each word
        own = errors[torch.arange(len(truth), device=truth.device), truth]
        wrong = (errors.sum(1) - own) / (len(words) - 1)
        result[int(t)] = {
            "advantage": float(((wrong - own) / own).mean()),
            "accuracy": float((errors.argmin(1) == truth).float().mean()),
        }
    return result
