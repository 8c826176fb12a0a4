"""Sample grids written during training, to see when a stage is good enough.

Samples use the cached caption embeddings, so a run whose text cache was built elsewhere needs no text
encoder; the current (not EMA) weights; DDIM with 25 steps and a fixed seed, so grids of successive
checkpoints are comparable. Written to `output_dir/samples/step-NNNNNNN.gif` (videos, prompts side by side)
or `.png` (autoencoder reconstructions). `probe_direction` runs the shapes-world direction probe the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from videoldm.data.shapes import DIRECTIONS
from videoldm.evaluation.direction_probe import GROUPS, ProbeResult, direction_probe, word_advantage
from videoldm.io import write_image_grid, write_video
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache

NUM_PROMPTS = 4


class CachedTextEncoder:
    """prompts -> (B, L, D) from the cache's embeddings; "" is the empty prompt (row 0)."""

    def __init__(self, cache: VideoCache) -> None:
        assert cache.text is not None and cache.text_index is not None
        self.text = cache.text
        self.rows = {"": 0} | {c: int(r) for c, r in zip(cache.captions, cache.text_index.tolist(), strict=True)}

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in prompts if p not in self.rows]
        if missing:
            raise KeyError(f"no cached embedding for prompts {missing}")
        return self.text[[self.rows[p] for p in prompts]].float()

    def to(self, *args: object, **kwargs: object) -> CachedTextEncoder:
        return self


def sample_prompts(cache: VideoCache) -> list[str]:
    return sorted(set(cache.captions))[:: max(1, len(set(cache.captions)) // NUM_PROMPTS)][:NUM_PROMPTS]


def sampling_pipeline(stage, text_encoder) -> tuple[object, bool]:
    """A `VideoLDMPipeline` on a diffusion stage's current (training) weights, decoding with the image decoder,
    and whether to run it image-only (the image stage: independent frames). Callers restore train mode."""
    from videoldm.autoencoder import VideoAutoencoder
    from videoldm.pipelines import VideoLDMPipeline

    video_unet, image_only = stage.sampling_unet()
    pipe = VideoLDMPipeline(
        unet=video_unet,
        autoencoder=VideoAutoencoder.from_vae(stage.vae, image_only=True),  # the image decoder, frame by frame
        text_encoder=text_encoder,
        scheduler=stage.sampling_scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, image_only


@contextlib.contextmanager
def _eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    modes = [m.training for m in modules]
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)


@torch.no_grad()
def write_samples(stage, cache: VideoCache, step: int, directory: Path, device: torch.device) -> Path:
    """Write this step's sample grid for `stage`; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    if stage.config.stage == "autoencoder":
        return _reconstructions(stage, cache, directory / f"step-{step:07d}.png", device)
    if stage.config.stage == "decoder":
        return _video_reconstructions(stage, cache, directory / f"step-{step:07d}.gif", device)
    with _eval_mode(stage.sampling_unet()[0], stage.vae):
        pipe, image_only = sampling_pipeline(stage, CachedTextEncoder(cache))
        frames = pipe(
            sample_prompts(cache),
            num_frames=stage.config.data.num_frames,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(0),
            image_only=image_only,
        ).frames  # (B, 3, T, H, W)
    side_by_side = torch.cat(list(frames.float().cpu()), dim=-1)  # (3, T, H, B*W)
    return write_video(directory / f"step-{step:07d}.gif", side_by_side, fps=8)


@torch.no_grad()
def probe_direction(stage, cache: VideoCache) -> ProbeResult | None:
    """The direction probe (`videoldm.evaluation.direction_probe`) on the stage's current weights, with the
    cached caption embeddings, over the probe's colour/shape groups whose four captions the dataset has (None
    when it has none: not a shapes-world dataset)."""
    text = CachedTextEncoder(cache)
    groups = [g for g in GROUPS if all(f"a {g[0]} {g[1]} moving {d}" in text.rows for d in DIRECTIONS)]
    if not groups:
        return None
    with _eval_mode(stage.sampling_unet()[0], stage.vae):
        pipe, image_only = sampling_pipeline(stage, text)
        result = direction_probe(
            pipe,
            groups=groups,
            num_frames=stage.config.data.num_frames,
            image_only=image_only,
            noise_correlation=stage.config.train.noise_correlation,
        )
        if not image_only:  # an image model cannot tell the directions apart: nothing to measure
            result.advantage = stage_word_advantage(stage, pipe.unet, text, groups=groups[:4])
        return result


def stage_word_advantage(
    stage, unet, text_encoder, *, groups: list[tuple[str, str]] | tuple[tuple[str, str], ...] = GROUPS[:4]
) -> dict[int, dict[str, float]]:
    """`word_advantage` of `unet` on clips shaped as the stage's config trains on them (frames, stride, size)."""
    data = stage.config.data
    return word_advantage(
        unet,
        stage.vae,
        text_encoder,
        stage.noise_scheduler(),
        groups=groups,
        num_frames=data.num_frames,
        frame_stride=data.frame_stride,
        size=data.size,
    )


def _reconstructions(stage, cache: VideoCache, path: Path, device: torch.device) -> Path:
    g = torch.Generator().manual_seed(0)
    videos, starts = B.pick_clips(cache, batch_size=8, num_frames=1, generator=g)
    frames = B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, 1)[:, :, 0]).to(device)
    was_training = stage.vae.training
    stage.vae.eval()
    reconstruction = stage.vae.decode(stage.vae.encode(frames).latent_dist.mode()).sample.clamp(-1, 1)
    stage.vae.train(was_training)
    return write_image_grid(path, torch.cat([frames, reconstruction]).cpu(), columns=8)


def _video_reconstructions(stage, cache: VideoCache, path: Path, device: torch.device) -> Path:
    """True clips, image-decoder and temporal-decoder reconstructions, side by side."""
    g = torch.Generator().manual_seed(0)
    t = stage.config.data.num_frames
    videos, starts = B.pick_clips(cache, batch_size=2, num_frames=t, generator=g)
    true = B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, t))
    latents = B.gather_clips(cache.latents, videos, starts, t).float().to(device)
    image = stage.video_ae.decode(latents, image_decoder=True).clamp(-1, 1).cpu()
    temporal = stage.video_ae.decode(latents).clamp(-1, 1).cpu()
    rows = [torch.cat([a, b, c], dim=-1) for a, b, c in zip(true, image, temporal, strict=True)]
    return write_video(path, torch.cat(rows, dim=-2), fps=8)
