"""Rough edges of the trainer met while measuring (issue 13): unquoted `mixed_precision: no`, `--resume` with a
changed `optim`, the progress bar under a time budget, fresh temporal layers on a Video LDM folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import UNet2DConditionModel

import test_training
from test_training import TINY_VAE, temporal_config, write_config
from videoldm.training import trainer as trainer_module
from videoldm.training.checkpoint import latest_checkpoint
from videoldm.training.config import ConfigError
from videoldm.training.stages import build_stage, load_config
from videoldm.training.trainer import Trainer, progress_settings, train
from videoldm.video_unet import VideoUNet

# test_training's tiny shapes dataset and image LDM folder (module-scoped fixtures), reused here.
shapes = test_training.shapes
image_model = test_training.image_model


def _autoencoder_yaml(tmp_path: Path, train_section: str) -> Path:
    """A config written by hand: yaml.safe_dump would quote `no`, and the point is the unquoted word."""
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    (videos / "captions.csv").write_text("path,caption\n")
    path = tmp_path / "ae.yaml"
    path.write_text(
        f"stage: autoencoder\noutput_dir: {tmp_path / 'out'}\ndata:\n  videos: {videos}\n"
        f"model:\n  vae: {{latent_channels: 4}}\ntrain:\n{train_section}\n"
    )
    return path


def test_unquoted_no_means_mixed_precision_no_and_other_booleans_ask_for_quotes(tmp_path):
    for word in ("no", "off", "false", '"no"'):
        config = load_config(_autoencoder_yaml(tmp_path, f"  mixed_precision: {word}"))
        assert config.train.mixed_precision == "no", word
    assert load_config(_autoencoder_yaml(tmp_path, "  mixed_precision: bf16")).train.mixed_precision == "bf16"
    for word in ("yes", "on", "true"):
        with pytest.raises(ConfigError, match=r"train\.mixed_precision: .*YAML boolean true.*quote the value, e\.g\."):
            load_config(_autoencoder_yaml(tmp_path, f"  mixed_precision: {word}"))
    with pytest.raises(
        ConfigError, match=r"train\.mixed_precision: expected one of \['no', 'fp16', 'bf16'\], got 'fp8'"
    ):
        load_config(_autoencoder_yaml(tmp_path, "  mixed_precision: fp8"))


def _edit(config: Path, **sections: dict) -> Path:
    raw = yaml.safe_load(config.read_text())
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    config.write_text(yaml.safe_dump(raw))
    return config


def test_resume_applies_the_configs_optimiser_settings_and_keeps_the_moments(tmp_path, shapes, image_model, capsys):
    config = temporal_config(tmp_path, shapes, image_model, max_steps=1, checkpoint_every=1)
    train(load_config(config))  # one step at lr 1e-3, no warmup: a checkpoint at step 1
    saved = torch.load(latest_checkpoint(tmp_path / "run") / "optimizer.pt", weights_only=True)

    same = Trainer(load_config(_edit(config, train={"max_steps": 3})))
    capsys.readouterr()
    same.resume()
    assert "changed since the checkpoint" not in capsys.readouterr().out, "nothing changed: nothing to say"

    changed = _edit(config, optim={"lr": 2e-4, "betas": [0.8, 0.99], "weight_decay": 0.01, "warmup_steps": 2})
    trainer = Trainer(load_config(changed))
    trainer.resume()
    out = capsys.readouterr().out
    assert "optim.lr 0.001 -> 0.0002" in out
    assert "optim.betas (0.9, 0.999) -> (0.8, 0.99)" in out
    assert "optim.weight_decay 0.0 -> 0.01" in out
    group = trainer.optimizer.param_groups[0]
    assert group["betas"] == (0.8, 0.99) and group["weight_decay"] == 0.01
    assert trainer.lr_scheduler.base_lrs == [2e-4]
    # Step 1 of a 2-step warmup: half the new lr, now and in what the scheduler reports.
    assert group["lr"] == pytest.approx(1e-4) and trainer.lr_scheduler.get_last_lr() == [pytest.approx(1e-4)]
    trainer.lr_scheduler.step()
    assert group["lr"] == pytest.approx(2e-4), "the schedule continues from the new base lr"
    # The moment estimates of the checkpoint are kept.
    state = trainer.optimizer.state_dict()["state"]
    assert state.keys() == saved["state"].keys()
    for index, moments in saved["state"].items():
        assert torch.equal(state[index]["exp_avg"], moments["exp_avg"])
        assert torch.equal(state[index]["exp_avg_sq"], moments["exp_avg_sq"])


def test_progress_bar_counts_the_time_budget_not_max_steps(tmp_path, shapes, image_model, monkeypatch):
    assert progress_settings(step=7, max_steps=100, max_minutes=None) == {"total": 100, "initial": 7, "unit": "step"}
    budget = progress_settings(step=7, max_steps=100_000, max_minutes=45)
    assert (budget["total"], budget["initial"], budget["unit"]) == (2700, 0, "s")
    assert "time budget" in budget["bar_format"]

    bars = []

    class Recorder(trainer_module.tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(trainer_module, "tqdm", Recorder)
    config = temporal_config(tmp_path, shapes, image_model, max_steps=2, checkpoint_every=2, max_minutes=60)
    train(load_config(config))
    (bar,) = bars
    assert bar.total == 3600, "an ETA for the budget, not for max_steps"
    assert 0 < bar.n < 3600
    assert bar.postfix.startswith("loss=") and "step=2/2" in bar.postfix


def _video_ldm_folder(root: Path, image_ldm: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A Video LDM folder whose temporal layers are far from their zero initialisation (as if trained)."""
    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_pretrained(image_ldm / "unet")
    video_unet = VideoUNet.from_image_unet(unet, kernel_size=[3, 1, 1])
    with torch.no_grad():
        for p in video_unet.temporal.parameters():
            p.add_(0.1 * torch.randn_like(p))
    video_unet.save_pretrained(root)
    for sub in ("vae", "text_encoder", "tokenizer"):
        shutil.copytree(image_ldm / sub, root / sub)
    return root, {k: v.clone() for k, v in video_unet.temporal.state_dict().items()}


def _is_identity(video_unet: VideoUNet) -> bool:
    """Zero-initialised temporal layers: the video model is the image model on every frame."""
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 3, 8, 8, generator=g)
    text = torch.randn(1, 5, 384, generator=g)
    with torch.no_grad():
        video = video_unet(sample, 10, text).sample
        image = video_unet(sample, 10, text, image_only=True).sample
    return torch.allclose(video, image, atol=1e-5)


def test_fresh_temporal_builds_new_layers_on_a_folder_that_has_temporal(tmp_path, shapes, image_model):
    folder, saved = _video_ldm_folder(tmp_path / "video_ldm", image_model)
    config = temporal_config(tmp_path, shapes, folder)
    options = {"kernel_size": [1, 1, 1], "temporal_norm": "frame", "cross_attention": False}

    _edit(config, model={"temporal": options})
    with pytest.raises(ConfigError, match=r"model\.temporal: .* already has temporal/.*model\.fresh_temporal"):
        load_config(config)

    fresh = build_stage(load_config(_edit(config, model={"fresh_temporal": True})))
    adapter = fresh.video_unet.temporal
    assert tuple(adapter.config.kernel_size) == (1, 1, 1)
    assert adapter.config.temporal_norm == "frame" and adapter.config.cross_attention is False
    assert _is_identity(fresh.video_unet), "new layers start as the identity"

    raw = yaml.safe_load(config.read_text())
    del raw["model"]["temporal"], raw["model"]["fresh_temporal"]
    config.write_text(yaml.safe_dump(raw))
    continued = build_stage(load_config(config))  # today's behaviour: the saved layers are continued
    for key, value in continued.video_unet.temporal.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not _is_identity(continued.video_unet)


def test_fresh_temporal_is_refused_outside_the_temporal_stage(tmp_path, shapes):
    config = write_config(
        tmp_path / "ae.yaml",
        stage="autoencoder",
        output_dir=str(tmp_path / "out"),
        data={"videos": str(shapes)},
        model={"vae": TINY_VAE, "fresh_temporal": True},
    )
    with pytest.raises(
        ConfigError,
        match=r"model\.fresh_temporal: only used by stages 'temporal', 'interpolation' and 'prediction', got stage "
        r"'autoencoder'",
    ):
        load_config(config)


@pytest.mark.parametrize("stage", ["temporal", "interpolation", "prediction"])
def test_layers_on_a_saved_denoiser_must_predict_what_it_predicts(tmp_path, shapes, image_model, stage):
    """Temporal, interpolation and prediction layers train on the frozen saved UNet: its parametrisation (the
    saved scheduler/'s prediction_type) must be the config's, or the loss trains layers against it."""
    from diffusers import DDIMScheduler

    folder, _ = _video_ldm_folder(tmp_path / "video_ldm", image_model)
    DDIMScheduler(prediction_type="epsilon").save_pretrained(folder / "scheduler")
    config = _edit(temporal_config(tmp_path, shapes, folder), model={"prediction_type": "v_prediction"})
    raw = yaml.safe_load(config.read_text())
    raw["stage"] = stage
    del raw["model"]["temporal"]
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"model\.prediction_type: 'v_prediction', but .* predicts 'epsilon'"):
        load_config(config)
    if stage == "temporal":
        load_config(_edit(config, model={"prediction_type": "epsilon"}))
