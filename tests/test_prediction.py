"""The prediction stage: a key-frame model given a zero-init context encoder (the same model until trained), its
batches (the first S frames given, S per clip), config errors, and a 2-step run whose export rolls out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_interpolation_training import FRAMES, fake_cache
from test_interpolation_training import image_model as image_model
from test_interpolation_training import shapes as shapes
from test_pipeline_fixtures import tiny_image_unet
from test_training import write_config
from videoldm import VideoUNet
from videoldm.data.shapes import sample_clip
from videoldm.layout import INTERPOLATION, PREDICTION, TEMPORAL, UNET
from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline
from videoldm.pipelines.rollout import PredictionSpec, rollout_latents
from videoldm.temporal.context import is_context_parameter
from videoldm.training.batches import step_generator
from videoldm.training.config import ConfigError
from videoldm.training.stages import build_stage, load_config
from videoldm.training.stages.prediction import in_view_frames, with_context_encoder
from videoldm.training.trainer import train


def config(tmp: Path, shapes: Path, pretrained: Path, *, temporal=None, **train_options) -> Path:
    model = {"pretrained": str(pretrained)}
    if temporal is not None:
        model["temporal"] = temporal
    return write_config(
        tmp / "prediction.yaml",
        stage="prediction",
        output_dir=str(tmp / "run"),
        data={"videos": str(shapes), "size": 32, "num_frames": 5, "cache_frames": FRAMES},
        model=model,
        optim={"lr": 1e-3},
        train={"max_steps": 2, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, **train_options},
    )


def test_a_context_encoder_added_to_saved_layers_changes_nothing_until_trained(tmp_path):
    unet = tiny_image_unet(seed=0, cross_attention_dim=16)
    base = VideoUNet.from_image_unet(unet, kernel_size=(3, 1, 1))
    with torch.no_grad():
        for p in base.temporal.parameters():
            p.add_(0.1 * torch.randn_like(p))
    base.save_temporal(tmp_path / TEMPORAL)
    model = with_context_encoder(unet, tmp_path / TEMPORAL)
    assert model.temporal.context_encoder is not None
    sample, text = torch.randn(2, 4, 5, 8, 8), torch.randn(2, 3, 16)
    context = torch.randn(2, 5, 5, 8, 8)
    with torch.no_grad():
        expected = base(sample, 10, text).sample
        assert torch.equal(model(sample, 10, text, context=context).sample, expected)
        assert torch.equal(model(sample, 10, text).sample, expected)


def test_batches_give_each_clip_its_first_s_frames(tmp_path, shapes, image_model):
    stage = build_stage(load_config(config(tmp_path, shapes, image_model, batch_size=64)))
    batch = stage.batch(fake_cache(), step_generator(0, 0))
    given = batch["context"][:, 4, :, 0, 0]  # the mask channel, per clip and frame
    counts = given.sum(dim=1).long()
    assert set(counts.tolist()) == {0, 1, 2}  # default shares 0.2 / 0.2 / 0.6: all three drawn in 64 clips
    assert (counts == 2).sum() > (counts == 0).sum()
    for mask, s in zip(given, counts, strict=True):
        assert mask.tolist() == [1.0] * s + [0.0] * (5 - s)  # the clip's first S frames
    assert torch.equal(batch["loss_mask"], 1 - given)  # the loss on the new frames only
    frames = batch["context"][:, :4]
    assert torch.equal(frames, batch["latents"] * given[:, None, :, None, None])  # clean given frames, zeros after
    assert stage.module(**batch).ndim == 0

    only_two = build_stage(load_config(config(tmp_path, shapes, image_model, context_frame_probs=[0, 0, 1])))
    assert only_two.batch(fake_cache(), step_generator(0, 0))["loss_mask"].tolist() == [[0, 0, 1, 1, 1]] * 2


def test_config_errors_name_the_key(tmp_path, shapes, image_model):
    with pytest.raises(ConfigError, match=r"train\.context_frame_probs: shares .* sum to 1"):
        load_config(config(tmp_path, shapes, image_model, context_frame_probs=[0.5, 0.6]))
    with pytest.raises(ConfigError, match=r"train\.context_frame_probs: up to 5 context frames"):
        load_config(config(tmp_path, shapes, image_model, context_frame_probs=[0, 0, 0, 0, 0, 1]))
    with pytest.raises(ConfigError, match=r"train\.context_dropout: only used by stages 'interpolation' and"):
        load_config(config(tmp_path, shapes, image_model, context_dropout=0.1))
    for key, value in (("context_frame_probs", [0.5, 0.5]), ("context_only", True)):
        interpolation = write_config(
            tmp_path / "i.yaml",
            stage="interpolation",
            output_dir=str(tmp_path / "i"),
            data={"videos": str(shapes), "size": 32, "num_frames": 5, "cache_frames": FRAMES},
            model={"pretrained": str(image_model)},
            train={key: value},
        )
        with pytest.raises(ConfigError, match=rf"train\.{key}: only used by stage 'prediction'"):
            load_config(interpolation)


def test_a_short_run_exports_a_folder_that_rolls_out(tmp_path, shapes, image_model):
    model = train(load_config(config(tmp_path, shapes, image_model, temporal={"kernel_size": [3, 1, 1]})))
    assert json.loads((model / PREDICTION).read_text()) == {"num_frames": 5, "frame_stride": 1, "context_frames": 2}
    assert (model / UNET).is_dir() and not (model / INTERPOLATION).exists()  # the image model had none to copy
    spec = PredictionSpec.read(model)
    pipe = VideoLDMPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.temporal.context_encoder is not None

    def roll(seed: int, frames: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return list(
            rollout_latents(pipe, "a red circle", num_frames=frames, spec=spec, num_inference_steps=2, generator=g)
        )

    pieces = roll(0, 12)
    # the first clip (5 frames), then clips of 3 new frames each, the last one cut: 5 + 3 + 3 + 1 = 12
    assert [p.shape[2] for p in pieces] == [5, 3, 3, 1]
    assert all(torch.equal(a, b) for a, b in zip(pieces, roll(0, 12), strict=True))  # same seed, same rollout
    assert not torch.equal(pieces[1], roll(1, 12)[1])


def test_in_view_frames_see_an_object_crossing_the_edge_of_the_wrapping_world():
    clip = sample_clip("red", "square", "right", rng=np.random.default_rng(3), num_frames=32, speed=(4, 4), wrap=True)
    pixels = ((clip.render() + 1) * 127.5).round().to(torch.uint8)[None]  # (1, 3, T, H, W)
    in_view = in_view_frames(pixels)[0]
    x = clip.centres()[:, 0] % clip.size
    from_edge = np.minimum(x, clip.size - x)  # the object moves along x; its y stays put
    inside = from_edge > clip.object_size  # the whole object is well inside the frame
    across = from_edge < clip.object_size / 4  # the object straddles the edge
    assert inside.any() and across.any()
    assert in_view[torch.from_numpy(inside)].all() and not in_view[torch.from_numpy(across)].any()


def test_context_free_clips_keep_their_object_in_view(tmp_path, shapes, image_model):
    videos = 3
    cache = fake_cache(videos=videos)
    cache.latents += 100 * torch.arange(videos, dtype=torch.float16)[:, None, None, None, None]  # video v, frame f
    cache.pixels = torch.full((videos, 3, FRAMES, 8, 8), 128, dtype=torch.uint8)  # grey: in view
    cache.pixels[0, :, :, 0, 3] = torch.tensor([250, 20, 20], dtype=torch.uint8)[:, None]  # video 0: never in view
    cache.pixels[2, :, 6, 7, 7] = torch.tensor([20, 20, 250], dtype=torch.uint8)  # video 2: not in view at frame 6
    options = {"batch_size": 64, "context_frame_probs": [0.5, 0.5], "context_free_in_view": True}
    batch = build_stage(load_config(config(tmp_path, shapes, image_model, **options))).batch(
        cache, step_generator(0, 0)
    )
    code = batch["latents"][:, 0, :, 0, 0].round().long()  # (B, T): 100 * video + frame
    free = batch["loss_mask"].all(dim=1)
    assert 10 < free.sum() < 54
    for clip, is_free in zip(code, free, strict=True):
        video, frames = int(clip[0]) // 100, (clip % 100).tolist()
        if is_free:
            assert video == 1 or (video == 2 and 6 not in frames), (video, frames)
    assert (code[~free] // 100 == 0).any(), "clips with context still come from every video"
    with pytest.raises(ConfigError, match=r"train\.context_free_in_view: only used by stage 'prediction'"):
        load_config(
            write_config(
                tmp_path / "t.yaml",
                stage="temporal",
                output_dir=str(tmp_path / "t"),
                data={"videos": str(shapes), "size": 32, "num_frames": 5, "cache_frames": FRAMES},
                model={"pretrained": str(image_model)},
                train={"context_free_in_view": True},
            )
        )


def test_context_only_trains_the_context_parameters_alone(tmp_path, shapes, image_model):
    # Trained layers first: fresh ones end in zero-initialised projections, which pass no gradient to the context.
    first = tmp_path / "first"
    first.mkdir()
    pretrained = train(load_config(config(first, shapes, image_model, temporal={"kernel_size": [3, 1, 1]})))
    cfg = load_config(config(tmp_path, shapes, pretrained, context_only=True, context_frame_probs=[0, 1]))
    torch.manual_seed(cfg.train.seed)  # the trainer's own seeding: the same fresh layers as the run starts from
    before = build_stage(cfg).video_unet.temporal.state_dict()
    after = VideoUNet.from_pretrained(train(cfg)).temporal.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # Only what acts on the context moved, so an S = 0 clip (the key frames) is bit-identical to before.
    assert changed and all(is_context_parameter(k) for k in changed)
    assert any(k.startswith("context_encoder.") for k in changed) or any("context_proj" in k for k in changed)
