"""The upsampler stage: an image upsampler on patches, then temporal layers on it; what it exports; config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from upsampler_fixtures import TINY_UPSAMPLER_CONFIG, TINY_UPSAMPLER_UNET
from videoldm.data.shapes import write_shapes_dataset
from videoldm.pipelines.upscale import VideoUpscalePipeline
from videoldm.training.batches import step_generator
from videoldm.training.config import ConfigError
from videoldm.training.stages import build_stage, load_config
from videoldm.training.trainer import train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(root, videos=4, seed=0, num_frames=8, size=32, texture="mixed")


def config(tmp: Path, shapes: Path, name: str, *, model: dict, num_frames: int = 1, patch_size: int = 16) -> Path:
    path = tmp / f"{name}.yaml"
    sections = {
        "stage": "upsampler",
        "output_dir": str(tmp / name),
        "data": {
            "videos": str(shapes),
            "size": 32,
            "num_frames": num_frames,
            "cache_frames": 8,
            "patch_size": patch_size,
        },
        "model": model,
        "optim": {"lr": 1e-3},
        "train": {"max_steps": 2, "batch_size": 2, "checkpoint_every": 2, "log_every": 1},
    }
    path.write_text(yaml.safe_dump(sections))
    return path


def image_model() -> dict:
    return {"unet": TINY_UPSAMPLER_UNET, "upsampler": dict(TINY_UPSAMPLER_CONFIG)}


def test_batches_are_aligned_patches_with_one_noise_level_per_clip(tmp_path, shapes):
    stage = build_stage(load_config(config(tmp_path, shapes, "image", model=image_model(), num_frames=4)))
    from videoldm.training.cache import prepare_cache

    cache = prepare_cache(stage, stage.config, is_main=True, wait=lambda: None)
    batch = stage.batch(cache, step_generator(0, 0))
    assert set(batch) == {"latents", "noise", "timesteps", "condition", "noise_level"}
    assert batch["latents"].shape == batch["condition"].shape == (2, 3, 4, 16, 16)
    assert batch["noise_level"].shape == batch["timesteps"].shape == (2,)
    assert batch["noise_level"].max() < TINY_UPSAMPLER_CONFIG["max_noise_level"]
    again = stage.batch(cache, step_generator(0, 0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)  # a pure function of the step's generator
    assert torch.isfinite(stage.module(**batch))


def test_context_dropout_zeroes_the_input_of_that_share_of_clips(tmp_path, shapes):
    from videoldm.training.cache import prepare_cache

    path = config(tmp_path, shapes, "dropout", model=image_model(), num_frames=2)
    raw = yaml.safe_load(path.read_text())
    kept = build_stage(load_config(path))
    cache = prepare_cache(kept, kept.config, is_main=True, wait=lambda: None)
    path.write_text(yaml.safe_dump({**raw, "train": {**raw["train"], "batch_size": 4, "context_dropout": 1.0}}))
    dropped = build_stage(load_config(path)).batch(cache, step_generator(0, 0))
    assert dropped["condition"].shape[0] == 4 and (dropped["condition"] == 0).all()
    assert all(c.abs().sum() > 0 for c in kept.batch(cache, step_generator(0, 0))["condition"])  # share 0
    assert dropped["noise_level"].shape == (4,)  # the level is still given: the input is absent, not noisier
    path.write_text(yaml.safe_dump({**raw, "train": {**raw["train"], "context_dropout": 1.5}}))
    with pytest.raises(ConfigError, match=r"train.context_dropout: a share in \[0, 1\], got 1.5"):
        load_config(path)


def test_a_residual_upsampler_trains_on_the_scaled_residual_over_bicubic(tmp_path, shapes):
    from videoldm.training.cache import prepare_cache
    from videoldm.upsampler import downscale, upscale_bicubic

    plain = build_stage(load_config(config(tmp_path, shapes, "plain", model=image_model(), num_frames=2)))
    model = image_model()
    model["upsampler"] = {**model["upsampler"], "residual": True, "residual_scale": 4.0}
    residual = build_stage(load_config(config(tmp_path, shapes, "residual", model=model, num_frames=2)))
    cache = prepare_cache(plain, plain.config, is_main=True, wait=lambda: None)
    a, b = plain.batch(cache, step_generator(0, 3)), residual.batch(cache, step_generator(0, 3))
    high = a["latents"]
    assert torch.allclose(b["latents"], (high - upscale_bicubic(downscale(high, 2), 2)) * 4.0, atol=1e-6)
    assert all(torch.equal(a[k], b[k]) for k in ("noise", "timesteps", "condition", "noise_level"))


def test_image_then_temporal_upsampler_export_model_folders(tmp_path, shapes):
    image = train(load_config(config(tmp_path, shapes, "image", model=image_model())))
    part = image / "upsampler"
    assert {p.name for p in part.iterdir()} >= {"unet", "scheduler", "low_res_scheduler", "upsampler_config.json"}
    assert not (part / "temporal").exists()
    temporal_model = {"pretrained": str(image), "temporal": {"kernel_size": [3, 1, 1]}}
    video = train(load_config(config(tmp_path, shapes, "temporal", model=temporal_model, num_frames=4)))
    assert (video / "upsampler" / "temporal").is_dir()
    pipe = VideoUpscalePipeline.from_pretrained(video)
    assert pipe.upsampler.video_unet.temporal.config.temporal_norm == "frame"
    # the frozen image upsampler is the image stage's
    trained = VideoUpscalePipeline.from_pretrained(image).upsampler.video_unet.unet.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in pipe.upsampler.video_unet.unet.state_dict().items())
    out = pipe(torch.zeros(1, 3, 5, 8, 8), num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 3, 5, 16, 16)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({}, "model.unet: required"),
        ({**image_model(), "upsampler": {"scale_factor": 3}}, "model.upsampler: scale_factor must be 2 or 4"),
        ({**image_model(), "upsampler": {"patch": 16}}, "model.upsampler.patch: unknown key"),
        ({**image_model(), "temporal": {"kernel_size": [3, 1, 1]}}, "model.temporal: the temporal layers go on"),
    ],
)
def test_config_errors_name_the_key(tmp_path, shapes, model, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config(tmp_path, shapes, "bad", model=model))


@pytest.mark.parametrize("patch_size", [15, 0, 64])
def test_patch_size_must_lie_on_the_input_grid_within_the_frame(tmp_path, shapes, patch_size):
    path = config(tmp_path, shapes, "bad", model=image_model(), patch_size=patch_size)
    with pytest.raises(ConfigError, match=r"data.patch_size: a multiple of the scale_factor \(2\) up to data.size"):
        load_config(path)


def test_temporal_layers_need_frame_norm(tmp_path, shapes):
    folder = tmp_path / "image_model"
    from upsampler_fixtures import save_tiny_model

    save_tiny_model(folder, temporal=False)
    model = {"pretrained": str(folder), "temporal": {"temporal_norm": "clip"}}
    with pytest.raises(ConfigError, match="temporal_norm: must be 'frame'"):
        load_config(config(tmp_path, shapes, "bad", model=model))
    with pytest.raises(ConfigError, match=r"model\.unet: leave it out"):
        load_config(config(tmp_path, shapes, "bad", model={"pretrained": str(folder), "unet": TINY_UPSAMPLER_UNET}))
    with pytest.raises(ConfigError, match=r"model\.upsampler\.scale_factor: set by"):
        load_config(
            config(tmp_path, shapes, "bad", model={"pretrained": str(folder), "upsampler": {"scale_factor": 2}})
        )


def test_temporal_layers_predict_what_the_image_upsampler_predicts(tmp_path, shapes):
    """The temporal stage's loss must use the frozen image upsampler's parametrisation: a mismatch is refused."""
    from upsampler_fixtures import save_tiny_model

    folder = save_tiny_model(tmp_path / "image_model", temporal=False)
    saved = json.loads((folder / "upsampler" / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]
    other = "v_prediction" if saved == "epsilon" else "epsilon"
    model = {"pretrained": str(folder), "temporal": {"kernel_size": [3, 1, 1]}, "prediction_type": other}
    with pytest.raises(ConfigError, match=f"model.prediction_type: '{other}', but .* predicts '{saved}'"):
        load_config(config(tmp_path, shapes, "bad", model=model))
    load_config(config(tmp_path, shapes, "good", model={**model, "prediction_type": saved}))
