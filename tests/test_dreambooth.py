"""The dreambooth stage: a few pictures fine-tune a Video LDM folder's image UNet; its temporal layers move over
unchanged; prior preservation adds the class half's loss."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from test_pipeline_fixtures import write_tiny_stable_diffusion, write_tiny_video_ldm
from videoldm.io import write_image
from videoldm.training.batches import step_generator
from videoldm.training.cache import prepare_cache
from videoldm.training.config import ConfigError, read_config
from videoldm.training.stages import build_stage, load_config, stage_class
from videoldm.training.trainer import train
from videoldm.video_unet import VideoUNet

INSTANCE, CLASS = "a sks star", "a star"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_tiny_video_ldm(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """Three 16x16 pictures of a purple blob at different places, and one file that is not an image."""
    folder = tmp_path_factory.mktemp("pictures")
    for i in range(3):
        image = -torch.ones(3, 16, 16)
        image[:, 3 + 2 * i : 9 + 2 * i, 4 + i : 10 + i] = torch.tensor([0.6, -0.8, 0.9])[:, None, None]
        write_image(folder / f"star-{i}.png", image)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def dreambooth_config(tmp: Path, base: Path, pictures: Path, *, name: str = "db", data=None, **train) -> Path:
    sections = {
        "stage": "dreambooth",
        "output_dir": str(tmp / name),
        "data": {
            "images": str(pictures),
            "size": 16,
            "instance_prompt": INSTANCE,
            "class_prompt": CLASS,
            "num_class_images": 3,
            **(data or {}),
        },
        "model": {"pretrained": str(base)},
        "optim": {"lr": 1e-3},
        "train": {"max_steps": 2, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "caption_dropout": 0.0}
        | train,
    }
    sections["data"] = {k: v for k, v in sections["data"].items() if v is not None}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def test_the_export_keeps_the_base_temporal_layers_bit_identical_and_tunes_the_unet(tmp_path, base, pictures):
    model = train(load_config(dreambooth_config(tmp_path, base, pictures)))
    tuned, original = VideoUNet.from_pretrained(model), VideoUNet.from_pretrained(base)
    temporal = original.temporal.state_dict()
    assert all(torch.equal(v, temporal[k]) for k, v in tuned.temporal.state_dict().items())
    spatial = original.unet.state_dict()
    assert any(not torch.equal(v, spatial[k]) for k, v in tuned.unet.state_dict().items())
    # Every other part of the base folder is copied byte for byte; the record says what was learned.
    for file in (f for f in base.rglob("*") if f.is_file() and f.relative_to(base).parts[0] != "unet"):
        assert (model / file.relative_to(base)).read_bytes() == file.read_bytes(), file
    record = json.loads((model / "personalisation.json").read_text())
    assert record["instance_prompt"] == INSTANCE and record["class_prompt"] == CLASS


def lora_config(tmp: Path, base: Path, pictures: Path, *, name: str = "lora", **model) -> Path:
    path = dreambooth_config(tmp, base, pictures, name=name)
    raw = yaml.safe_load(path.read_text())
    raw["model"] |= {"lora_rank": 2} | model
    path.write_text(yaml.safe_dump(raw))
    return path


def test_lora_trains_only_low_rank_updates_of_the_targets_and_exports_a_plain_merged_unet(tmp_path, base, pictures):
    stage = build_stage(load_config(lora_config(tmp_path, base, pictures, lora_targets=["to_q", "to_v"])))
    trained = [n for n, p in stage.unet.named_parameters() if p.requires_grad]
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trained} == {"to_q", "to_v"}

    model = train(load_config(lora_config(tmp_path, base, pictures, lora_targets=["to_q", "to_v"])))
    tuned, original = VideoUNet.from_pretrained(model), VideoUNet.from_pretrained(base)
    temporal = original.temporal.state_dict()
    assert all(torch.equal(v, temporal[k]) for k, v in tuned.temporal.state_dict().items())
    spatial, merged = original.unet.state_dict(), tuned.unet.state_dict()
    assert merged.keys() == spatial.keys()  # a plain diffusers UNet: the LoRA is merged, no adapter keys
    changed = {k for k in spatial if not torch.equal(merged[k], spatial[k])}
    assert changed and all(k.endswith(("to_q.weight", "to_v.weight")) for k in changed)
    assert json.loads((model / "personalisation.json").read_text())["lora_rank"] == 2


def test_a_base_that_pads_circularly_is_fine_tuned_padding_circularly(tmp_path, base, pictures):
    circular = tmp_path / "circular-base"
    shutil.copytree(base, circular)
    config = circular / "temporal" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "spatial_padding": "circular"}))
    for folder, wraps in ((circular, True), (base, False)):
        path = lora_config(tmp_path, folder, pictures, name=f"lora-{wraps}", lora_targets=["conv1", "to_q"])
        stage = build_stage(load_config(path))
        convs = {
            n: m for n, m in stage.unet.named_modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
        }
        # The UNet's own convolutions and the LoRA's down-projections of them alike (the base runs that way).
        assert any(".lora_A." in n for n in convs)
        assert all(getattr(m, "wraps", False) is wraps for m in convs.values())


def test_the_merged_lora_unet_computes_what_the_adapted_one_does(tmp_path, base, pictures):
    stage = build_stage(load_config(lora_config(tmp_path, base, pictures, lora_alpha=4)))
    g = torch.Generator().manual_seed(0)
    for name, param in stage.unet.named_parameters():
        if ".lora_B." in name:  # zero at the start (the base model): give the update something to do
            param.data = 0.1 * torch.randn(param.shape, generator=g)
    x, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 384, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        adapted = stage.unet(x, t, encoder_hidden_states=text).sample
        merged = stage.tuned_unet()(x, t, encoder_hidden_states=text).sample
        again = stage.unet(x, t, encoder_hidden_states=text).sample
        original = VideoUNet.from_pretrained(base).unet(x, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)
    assert torch.equal(again, adapted)  # merging worked on a copy: the training UNet keeps its adapter
    assert not torch.allclose(adapted, original, atol=1e-3)


def test_pictures_then_class_images_in_the_cache_and_a_broken_picture_is_reported(tmp_path, base, pictures, caplog):
    stage = build_stage(load_config(dreambooth_config(tmp_path, base, pictures)))
    with caplog.at_level(logging.WARNING):
        captions, pixels = stage.load_pixels()
    assert captions == [INSTANCE] * 3 + [CLASS] * 3  # broken.png skipped
    assert pixels.shape == (6, 3, 1, 16, 16) and pixels.dtype == torch.uint8
    assert "broken.png" in caplog.text
    again = stage.load_pixels()[1]
    assert torch.equal(again, pixels)  # the class images are seeded: the same every time


def test_a_list_of_class_prompts_is_taken_in_turn(tmp_path, base, pictures):
    prompts = ["a red circle moving left", "a blue square moving right"]
    data = {"class_prompt": prompts}
    stage = build_stage(load_config(dreambooth_config(tmp_path, base, pictures, data=data)))
    captions, pixels = stage.load_pixels()
    assert captions == [INSTANCE] * 3 + [prompts[0], prompts[1], prompts[0]] and pixels.shape[0] == 6


def test_the_prior_loss_is_the_mse_on_the_class_half_of_the_batch(tmp_path, base, pictures):
    stage = build_stage(load_config(dreambooth_config(tmp_path, base, pictures, prior_loss_weight=0.5)))
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    text = torch.randn(4, 8, 384, generator=g)
    timesteps = torch.tensor([10, 500, 20, 900])
    loss = stage.module(latents=latents, text=text, noise=noise, timesteps=timesteps)
    scheduler = stage.noise_scheduler()
    pred = stage.unet(scheduler.add_noise(latents, noise, timesteps), timesteps, encoder_hidden_states=text).sample
    expected = F.mse_loss(pred[:2], noise[:2]) + 0.5 * F.mse_loss(pred[2:], noise[2:])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)


def batch_and_gradients(stage, g_seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """One batch of the stage's step 0, its loss and the gradients of the UNet's parameters."""
    cache = prepare_cache(stage, stage.config, is_main=True, wait=lambda: None)
    batch = stage.batch(cache, step_generator(stage.config.train.seed, 0))
    stage.unet.zero_grad()
    loss = stage.module(**batch)
    loss.backward()
    return batch, loss.detach(), [p.grad.clone() for p in stage.unet.parameters()]


def test_prior_weight_zero_equals_instance_only_training(tmp_path, base, pictures):
    """With weight 0 the batch's instance half is the instance-only run's batch, and the loss and every gradient
    are the instance-only run's (compared before the optimiser: Adam magnifies float noise in tiny gradients)."""
    alone = build_stage(load_config(dreambooth_config(tmp_path, base, pictures, name="a", data={"class_prompt": None})))
    zero = build_stage(load_config(dreambooth_config(tmp_path, base, pictures, name="z", prior_loss_weight=0.0)))
    one = build_stage(load_config(dreambooth_config(tmp_path, base, pictures, name="o", prior_loss_weight=1.0)))
    batch, loss, grads = batch_and_gradients(alone)
    zero_batch, zero_loss, zero_grads = batch_and_gradients(zero)
    assert zero_batch["latents"].shape[0] == 2 * batch["latents"].shape[0]
    for key, value in batch.items():
        assert torch.equal(zero_batch[key][: len(value)], value), key
    torch.testing.assert_close(zero_loss, loss, rtol=1e-5, atol=1e-7)
    for a, b in zip(zero_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    one_loss = batch_and_gradients(one)[1]
    assert one_loss > zero_loss  # the class half counts at weight 1


def test_config_errors_name_the_key(tmp_path, base, pictures):
    def error(match: str, *, stage: str = "dreambooth", pretrained: Path = base, **data) -> None:
        path = dreambooth_config(tmp_path, pretrained, pictures, data=data)
        raw = yaml.safe_load(path.read_text()) | {"stage": stage}
        raw["data"] = {k: v for k, v in raw["data"].items() if v is not None}
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=match):
            load_config(path)

    empty = tmp_path / "empty"
    empty.mkdir()
    error(r"data\.images: folder .*empty holds no pictures", images=str(empty))
    error(r"data\.images: folder .* does not exist", images=str(tmp_path / "nope"))
    error(r"data\.instance_prompt: required", instance_prompt=None)
    error(r"data\.class_prompt: must differ", class_prompt=INSTANCE)
    error(r"data\.class_prompt: must differ", class_prompt=[CLASS, INSTANCE])
    error(r"data\.class_prompt: expected a prompt or a list of them", class_prompt=[])
    error(r"data\.num_class_images: must be >= 1", num_class_images=0)
    error(r"data\.images: pictures of one concept, used by stage 'dreambooth'", stage="temporal")
    error(r"model\.pretrained: .* has no temporal/", pretrained=write_tiny_stable_diffusion(tmp_path / "sd"))
    error(r"data\.videos: missing required key .* data\.images: a picture folder", images=None)

    with pytest.raises(ConfigError, match=r"model\.lora_rank: must be >= 1, got 0"):
        load_config(lora_config(tmp_path, base, pictures, lora_rank=0))
    with pytest.raises(ConfigError, match=r"model\.lora_targets: expected a list of module names"):
        load_config(lora_config(tmp_path, base, pictures, lora_targets=[]))
    with pytest.raises(ConfigError, match=r"model\.lora_targets: .*no_such_layer"):
        build_stage(load_config(lora_config(tmp_path, base, pictures, lora_targets=["no_such_layer"])))
    other = read_config(lora_config(tmp_path, base, pictures))
    other.stage, other.data.images = "image", None  # the keys another stage reads are not the point here
    with pytest.raises(ConfigError, match=r"model\.lora_rank: only used by stage 'dreambooth', got stage 'image'"):
        stage_class(other)


def test_the_demo_scores_its_drawn_star_as_the_concept_and_the_world_shapes_as_not():
    from benchmarks.dreambooth_demo import is_concept, score, star_picture

    from videoldm.data.shapes import render_shapes_video
    from videoldm.evaluation.shapes_analysis import analyse_video

    rng = np.random.default_rng(0)
    star = torch.stack([star_picture(rng) for _ in range(4)], dim=1)  # 4 pictures as the frames of a "video"
    assert is_concept(analyse_video(star))
    for colour, shape in (("blue", "triangle"), ("red", "circle"), ("blue", "square")):
        assert not is_concept(analyse_video(render_shapes_video(colour, shape, "right", rng=1, num_frames=4)))
    moving = render_shapes_video("red", "circle", "left", rng=2, num_frames=8)
    assert score("a red circle moving left", moving) == {
        "concept": False,
        "identity": True,
        "direction": True,
        "colour_correct": True,
        "shape_correct": True,
        "direction_correct": True,
        "all_correct": True,
    }


def test_the_committed_demo_config_builds_its_lora_on_the_shipped_unet(monkeypatch):
    """docs/dreambooth/config.yaml (the demonstration's run) passes its checks, and every LoRA target it names is a
    module of the shipped UNet (peft refuses unknown names only when the stage is built)."""
    root = Path(__file__).parents[1]
    monkeypatch.chdir(root)
    config = load_config(root / "docs" / "dreambooth" / "config.yaml")
    assert config.model.lora_rank == 8
    stage = build_stage(config)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in stage.unet.named_parameters() if p.requires_grad}
    assert {t.rsplit(".", 1)[-1] for t in config.model.lora_targets} == adapted
