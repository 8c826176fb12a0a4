"""The interpolation stage: per-clip frame rates, batch shapes, context dropout, config errors, and a 2-step run
whose export `videoldm interpolate` loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from typer.testing import CliRunner

from test_training import TINY_UNET, TINY_VAE, write_config
from videoldm.cli import app
from videoldm.data.shapes import write_shapes_dataset
from videoldm.diffusion.masks import linear_blend
from videoldm.io import read_video, write_video
from videoldm.layout import INTERPOLATION, SCHEDULER, TEMPORAL, UNET
from videoldm.training.batches import noise_from, pick_clips, step_generator
from videoldm.training.cache import VideoCache
from videoldm.training.config import ConfigError
from videoldm.training.stages import build_stage, load_config
from videoldm.training.trainer import train

FRAMES = 17  # source frames per video: a 5-frame clip of the coarse condition spans 4 * 4 + 1


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), videos=4, seed=0, num_frames=FRAMES, size=32)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image_model")
    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE).save_pretrained(root / "vae")
    UNet2DConditionModel(**TINY_UNET).save_pretrained(root / UNET)
    for sub in ("text_encoder", "tokenizer"):
        (root / sub).mkdir()
        (root / sub / "builtin.json").write_text('{"builtin": "all-MiniLM-L6-v2"}')
    return root


def config(tmp: Path, shapes: Path, pretrained: Path, *, temporal=None, data=None, **train_options) -> Path:
    return write_config(
        tmp / "interpolation.yaml",
        stage="interpolation",
        output_dir=str(tmp / "run"),
        data={"videos": str(shapes), "size": 32, "num_frames": 5, "cache_frames": FRAMES, **(data or {})},
        model={"pretrained": str(pretrained), "temporal": {"kernel_size": [3, 1, 1], **(temporal or {})}},
        optim={"lr": 1e-3},
        train={"max_steps": 2, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, **train_options},
    )


def fake_cache(videos: int = 3, frames: int = FRAMES) -> VideoCache:
    g = torch.Generator().manual_seed(0)
    latents = torch.arange(frames, dtype=torch.float16)[None, None, :, None, None].expand(videos, 4, frames, 16, 16)
    return VideoCache(
        captions=["a red circle moving right"] * videos,
        pixels=torch.zeros((videos, 3, frames, 1, 1), dtype=torch.uint8),
        latents=latents.clone(),
        text=torch.randn((2, 3, 384), generator=g).half(),
        text_index=torch.ones(videos, dtype=torch.long),
    )


def test_clips_take_each_clips_own_stride():
    cache = fake_cache()
    strides = torch.tensor([1, 4, 4, 1])
    videos, frames = pick_clips(cache, batch_size=4, num_frames=5, generator=torch.Generator(), strides=strides)
    assert frames.shape == (4, 5) and videos.shape == (4,)
    assert torch.equal(frames.diff(dim=1), strides[:, None].expand(-1, 4))
    assert frames.min() >= 0 and frames.max() < FRAMES
    with pytest.raises(ValueError, match="spans 33 frames"):
        pick_clips(cache, batch_size=1, num_frames=9, generator=torch.Generator(), strides=torch.tensor([4]))


def test_batches_hold_the_context_condition_and_loss_mask(tmp_path, shapes, image_model):
    stage = build_stage(load_config(config(tmp_path, shapes, image_model, batch_size=8, context_dropout=0.0)))
    batch = stage.batch(fake_cache(), step_generator(0, 0))
    assert batch["latents"].shape == (8, 4, 5, 16, 16) and batch["context"].shape == (8, 5, 5, 16, 16)
    assert batch["loss_mask"].tolist() == [[0, 1, 1, 1, 0]] * 8
    assert set(batch["condition"].tolist()) <= {0, 1}
    # the fake latents hold their source frame number: the clip's spacing is 4 ** condition
    spacing = batch["latents"][:, 0, :, 0, 0].diff(dim=1)
    assert torch.equal(spacing, (4 ** batch["condition"]).float()[:, None].expand(-1, 4))
    context = batch["context"]
    assert torch.equal(context[:, :4, 0], batch["latents"][:, :, 0]) and not context[:, :4, 1:4].any()
    assert context[:, 4, :, 0, 0].tolist() == [[1, 0, 0, 0, 1]] * 8
    assert stage.module(**batch).ndim == 0

    dropped = build_stage(load_config(config(tmp_path, shapes, image_model, batch_size=8, context_dropout=1.0)))
    assert not dropped.batch(fake_cache(), step_generator(0, 0))["context"].any()


def test_noise_from_noises_the_start_while_the_target_stays_the_truth():
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    g = torch.Generator().manual_seed(0)
    start, latents, noise = (torch.randn(3, 4, 5, 8, 8, generator=g) for _ in range(3))
    t = torch.tensor([1, 200, 999])
    shifted = noise_from(start, latents, noise, t, scheduler.alphas_cumprod)
    torch.testing.assert_close(scheduler.add_noise(latents, shifted, t), scheduler.add_noise(start, noise, t))
    assert torch.equal(noise_from(latents, latents, noise, t, scheduler.alphas_cumprod), noise)


def test_blend_start_clips_are_noised_from_the_blend_of_their_given_frames(tmp_path, shapes, image_model):
    options = {"batch_size": 16, "blend_start": 0.5, "blend_start_range": [300, 310], "timestep_range": [0, 100]}
    stage = build_stage(load_config(config(tmp_path, shapes, image_model, **options)))
    cache = fake_cache()
    cache.latents = cache.latents.float().pow(2).div(16).half()  # frame k holds k**2 / 16: not linear in time
    batch = stage.batch(cache, step_generator(0, 0))
    chosen = batch["timesteps"] >= 300
    assert 0 < chosen.sum() < 16 and batch["timesteps"][chosen].max() <= 310
    scheduler = stage.module.scheduler
    noisy = scheduler.add_noise(batch["latents"], batch["noise"], batch["timesteps"])
    latents = batch["latents"][chosen]
    blend = linear_blend(latents[:, :, ::4])
    assert not torch.allclose(blend, latents)
    plain = noisy[chosen] - scheduler.add_noise(blend, torch.zeros_like(blend), batch["timesteps"][chosen])
    # what is left after the blend's share is the drawn noise, scaled: x_t = sqrt(a) blend + sqrt(1 - a) n
    a = scheduler.alphas_cumprod[batch["timesteps"][chosen]].reshape(-1, 1, 1, 1, 1)
    assert (plain / (1 - a).sqrt()).std().item() == pytest.approx(1.0, abs=0.05)
    torch.testing.assert_close(
        noisy[chosen][:, :, ::4],
        scheduler.add_noise(latents, batch["noise"][chosen], batch["timesteps"][chosen])[:, :, ::4],
    )
    unchosen = batch["noise"][~chosen]
    assert unchosen.std().item() == pytest.approx(1.0, abs=0.05)  # the other clips: plain noise, times in [0, 100]
    assert batch["timesteps"][~chosen].max() <= 100
    assert stage.module(**batch).isfinite()


def test_config_errors_name_the_key(tmp_path, shapes, image_model):
    with pytest.raises(ConfigError, match=r"data\.num_frames: .*4 \* k \+ 1"):
        load_config(config(tmp_path, shapes, image_model, data={"num_frames": 8}))
    with pytest.raises(ConfigError, match=r"data\.cache_frames \(9\): clips of the coarsest condition .* >= 17"):
        load_config(config(tmp_path, shapes, image_model, data={"cache_frames": 9}))
    with pytest.raises(ConfigError, match=r"train\.context_dropout"):
        load_config(config(tmp_path, shapes, image_model, context_dropout=1.5))
    with pytest.raises(ConfigError, match=r"train\.blend_start: a share in \[0, 1\]"):
        load_config(config(tmp_path, shapes, image_model, blend_start=-0.1))
    with pytest.raises(ConfigError, match=r"train\.blend_start_range: expected \[first, last\]"):
        load_config(config(tmp_path, shapes, image_model, blend_start=0.5, blend_start_range=[500, 2000]))
    with pytest.raises(ConfigError, match=r"train\.sample_every"):
        load_config(config(tmp_path, shapes, image_model, sample_every=1))
    temporal = write_config(
        tmp_path / "t.yaml",
        stage="temporal",
        output_dir=str(tmp_path / "t"),
        data={"videos": str(shapes), "size": 32, "num_frames": 4, "cache_frames": 8},
        model={"pretrained": str(image_model)},
        train={"context_dropout": 0.1},
    )
    with pytest.raises(ConfigError, match=r"train\.context_dropout: only used by stages 'interpolation' and"):
        load_config(temporal)
    temporal.write_text(temporal.read_text().replace("context_dropout: 0.1", "blend_start: 0.1"))
    with pytest.raises(ConfigError, match=r"train\.blend_start: only used by stage 'interpolation'"):
        load_config(temporal)


def test_a_short_run_exports_a_folder_that_videoldm_interpolate_loads(tmp_path, shapes, image_model):
    model = train(load_config(config(tmp_path, shapes, image_model, context_dropout=0.5)))
    part = model / INTERPOLATION
    assert (part / TEMPORAL / "diffusion_pytorch_model.safetensors").is_file() and (part / SCHEDULER).is_dir()
    assert json.loads((part / "config.json").read_text())["frame_strides"] == [1, 4]
    assert (model / UNET).is_dir() and not (part / UNET).exists()  # the spatial UNet is shared, not copied
    source = write_video(tmp_path / "in.mp4", read_video(shapes / "00000.mp4")[0][:, :3], fps=4)
    for factor, frames in (("4", 9), ("16", 33)):
        out = tmp_path / f"x{factor}.mp4"
        args = ["interpolate", str(source), "--output", str(out), "--model", str(model), "--steps", "1"]
        result = CliRunner().invoke(app, [*args, "--factor", factor])
        assert result.exit_code == 0, result.output
        video, fps = read_video(out)
        assert video.shape == (3, frames, 32, 32) and fps == 4 * int(factor)

    (tmp_path / "again").mkdir()
    again = config(tmp_path / "again", shapes, model, temporal={"kernel_size": [3, 1, 1]})
    with pytest.raises(ConfigError, match="already has interpolation/"):
        load_config(again)
