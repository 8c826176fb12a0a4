"""The trainer: config validation, every stage end to end on tiny models, exact resume after SIGKILL, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file

from videoldm.data.shapes import write_shapes_dataset
from videoldm.training.checkpoint import latest_checkpoint
from videoldm.training.config import ConfigError
from videoldm.training.stages import build_stage, load_config
from videoldm.training.trainer import FAULT_ENV, Trainer, train
from videoldm.video_unet import VideoUNet

TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 32,
}
TINY_UNET = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [16, 32],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "cross_attention_dim": 384,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), videos=6, seed=0, num_frames=32, size=32)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    """A tiny image-LDM folder (vae/, unet/, builtin MiniLM text encoder) as the image stage exports it."""
    root = tmp_path_factory.mktemp("image_model")
    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE).save_pretrained(root / "vae")
    UNet2DConditionModel(**TINY_UNET).save_pretrained(root / "unet")
    for sub in ("text_encoder", "tokenizer"):
        (root / sub).mkdir()
        (root / sub / "builtin.json").write_text('{"builtin": "all-MiniLM-L6-v2"}')
    return root


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def temporal_config(tmp: Path, shapes: Path, image_model: Path, **train) -> Path:
    return write_config(
        tmp / "temporal.yaml",
        stage="temporal",
        output_dir=str(tmp / "run"),
        data={"videos": str(shapes), "size": 32, "num_frames": 4, "cache_frames": 8, "cache_dir": str(tmp / "cache")},
        model={"pretrained": str(image_model), "temporal": {"kernel_size": [3, 1, 1]}},
        optim={"lr": 1e-3},
        train={"max_steps": 4, "batch_size": 2, "checkpoint_every": 2, "ema_decay": 0.9, "log_every": 1, **train},
    )


def test_config_errors_name_the_key(tmp_path, shapes):
    base = {"stage": "autoencoder", "output_dir": str(tmp_path / "out"), "data": {"videos": str(shapes)}}
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key"):
        load_config(write_config(tmp_path / "a.yaml", **base, model={"vae": TINY_VAE}, train={"learning_rate": 1}))
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected an integer"):
        load_config(write_config(tmp_path / "b.yaml", **base, model={"vae": TINY_VAE}, train={"batch_size": "8"}))
    with pytest.raises(ConfigError, match=r"data\.videos: folder .* does not exist"):
        load_config(write_config(tmp_path / "c.yaml", **{**base, "data": {"videos": str(tmp_path / "nope")}}))
    with pytest.raises(ConfigError, match=r"model\.vae: required"):
        load_config(write_config(tmp_path / "d.yaml", **base))
    with pytest.raises(ConfigError, match=r"stage: expected one of \['autoencoder', 'image', 'temporal', 'decoder'"):
        load_config(write_config(tmp_path / "e.yaml", **{**base, "stage": "video"}, model={"vae": TINY_VAE}))
    for stage in ("image", "temporal", "decoder"):
        with pytest.raises(ConfigError, match=r"model\.pretrained: required for stage"):
            load_config(write_config(tmp_path / "f.yaml", **{**base, "stage": stage}))


def test_image_stage_needs_a_unet_config_or_a_pretrained_unet(tmp_path, shapes, image_model):
    no_unet = tmp_path / "no_unet"
    (no_unet / "vae").mkdir(parents=True)
    base = {"stage": "image", "output_dir": str(tmp_path / "out"), "data": {"videos": str(shapes)}}
    with pytest.raises(ConfigError, match=r"model\.unet: required for stage 'image' unless model\.pretrained"):
        load_config(write_config(tmp_path / "a.yaml", **base, model={"pretrained": str(no_unet)}))
    load_config(write_config(tmp_path / "b.yaml", **base, model={"pretrained": str(no_unet), "unet": TINY_UNET}))
    load_config(write_config(tmp_path / "c.yaml", **base, model={"pretrained": str(image_model)}))


def test_autoencoder_stage_exports_a_vae_with_measured_scaling_factor(tmp_path, shapes):
    config = write_config(
        tmp_path / "ae.yaml",
        stage="autoencoder",
        output_dir=str(tmp_path / "run"),
        data={"videos": str(shapes), "size": 32, "cache_frames": 8},
        model={"vae": TINY_VAE},
        train={"max_steps": 3, "batch_size": 4, "checkpoint_every": 3, "sample_every": 3},
    )
    model = train(load_config(config))
    assert (tmp_path / "run" / "samples" / "step-0000003.png").is_file()
    vae = AutoencoderKL.from_pretrained(model / "vae")
    assert vae.config.scaling_factor != AutoencoderKL(**TINY_VAE).config.scaling_factor
    assert 0 < vae.config.scaling_factor < 1e3


def test_image_stage_trains_the_unet_and_writes_a_model_folder(tmp_path, shapes, image_model):
    config = write_config(
        tmp_path / "image.yaml",
        stage="image",
        output_dir=str(tmp_path / "run"),
        data={"videos": str(shapes), "size": 32, "cache_frames": 8},
        model={"pretrained": str(image_model), "unet": TINY_UNET},
        train={"max_steps": 2, "batch_size": 4, "checkpoint_every": 2, "sample_every": 2},
    )
    model = train(load_config(config))
    assert (tmp_path / "run" / "samples" / "step-0000002.gif").is_file()
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (model / sub).is_dir(), sub


def test_image_stage_fine_tunes_the_pretrained_unet_when_model_unet_is_left_out(tmp_path, shapes, image_model):
    sections = {
        "stage": "image",
        "output_dir": str(tmp_path / "run"),
        "data": {"videos": str(shapes), "size": 32, "cache_frames": 8},
        "optim": {"lr": 1e-3},
        "train": {"max_steps": 2, "batch_size": 4, "checkpoint_every": 2},
    }
    pretrained = UNet2DConditionModel.from_pretrained(image_model / "unet").state_dict()
    scratch = build_stage(
        load_config(
            write_config(
                tmp_path / "scratch.yaml", **sections, model={"pretrained": str(image_model), "unet": TINY_UNET}
            )
        )
    )
    assert any(not torch.equal(v, pretrained[k]) for k, v in scratch.unet.state_dict().items()), "fresh weights"

    config = load_config(write_config(tmp_path / "tune.yaml", **sections, model={"pretrained": str(image_model)}))
    stage = build_stage(config)
    assert stage.unet.training
    for key, value in stage.unet.state_dict().items():
        assert torch.equal(value, pretrained[key]), key
    tuned = UNet2DConditionModel.from_pretrained(train(config) / "unet").state_dict()
    assert tuned.keys() == pretrained.keys()
    assert any(not torch.equal(tuned[k], pretrained[k]) for k in pretrained), "training moved the UNet"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videoldm", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=600,
    )


def test_resume_after_sigkill_matches_the_uninterrupted_run(tmp_path, shapes, image_model):
    straight = tmp_path / "straight"
    straight.mkdir()
    # Both runs in fresh processes with the same thread count: CPU reductions then run in the same order.
    assert run_cli("train", str(temporal_config(straight, shapes, image_model))).returncode == 0

    killed = tmp_path / "killed"
    killed.mkdir()
    config = temporal_config(killed, shapes, image_model)
    first = run_cli("train", str(config), env={FAULT_ENV: "2"})
    assert first.returncode == -9, first.stderr[-2000:]
    assert latest_checkpoint(killed / "run").name == "step-0000002"
    assert not (killed / "run" / "model").exists()
    second = run_cli("train", str(config), "--resume")
    assert second.returncode == 0, second.stderr[-2000:]

    a = load_file(str(latest_checkpoint(straight / "run") / "weights.safetensors"))
    b = load_file(str(latest_checkpoint(killed / "run") / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    ema_a = load_file(str(straight / "run" / "model" / "temporal" / "diffusion_pytorch_model.safetensors"))
    ema_b = load_file(str(killed / "run" / "model" / "temporal" / "diffusion_pytorch_model.safetensors"))
    for key in ema_a:
        torch.testing.assert_close(ema_a[key], ema_b[key], rtol=1e-5, atol=1e-6)
    # Training moved the temporal layers away from their zero initialisation.
    assert any("conv2.weight" in k and a[k].abs().sum() > 0 for k in a)


def test_two_process_ddp_on_cpu_stays_in_sync(tmp_path, shapes, image_model):
    config = temporal_config(tmp_path, shapes, image_model, checkpoint_every=1, max_steps=2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "videoldm",
            "train",
            str(config),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    # Each checkpoint all-gathers a parameter checksum per rank and fails the run if they differ.
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    assert (tmp_path / "run" / "model" / "temporal" / "config.json").is_file()


def test_decoder_stage_trains_the_temporal_decoder_against_the_discriminator(tmp_path, shapes, image_model):
    from videoldm.autoencoder import VideoAutoencoder

    config = write_config(
        tmp_path / "decoder.yaml",
        stage="decoder",
        output_dir=str(tmp_path / "run"),
        data={"videos": str(shapes), "size": 32, "num_frames": 4, "cache_frames": 8},
        model={"pretrained": str(image_model)},
        optim={"lr": 1e-3, "disc_start_step": 1},
        train={"max_steps": 3, "batch_size": 2, "checkpoint_every": 3, "sample_every": 3},
    )
    trainer = Trainer(load_config(config))
    model = trainer.fit()
    # The explicit adversary protocol: the stage's discriminator got its own optimiser, and the generator loss
    # saw each step (its adversarial term starts at optim.disc_start_step).
    assert trainer.adversary is trainer.stage.adversary is not None
    assert trainer.stage.module.step == 2  # begin_step(0..2) for max_steps=3
    assert (tmp_path / "run" / "samples" / "step-0000003.gif").is_file()
    for sub in ("unet", "temporal_decoder", "vae", "text_encoder"):  # the pretrained folder, plus the decoder
        assert (model / sub).is_dir(), sub
    video_ae = VideoAutoencoder.from_model_dir(model)
    assert any(p.abs().sum() > 0 for n, p in video_ae.temporal.named_parameters() if "conv2" in n)
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert (checkpoint / "adversary.pt").is_file() and (checkpoint / "adversary_optimizer.pt").is_file()


@pytest.mark.parametrize("stage", ["decoder", "temporal"])
def test_patch_size_is_the_upsamplers_alone(tmp_path, shapes, image_model, stage):
    # the decoder's mid-block attention sees the whole frame: a decoded crop is not the crop of a decoded frame
    path = write_config(
        tmp_path / "patches.yaml",
        stage=stage,
        output_dir=str(tmp_path / "run"),
        data={"videos": str(shapes), "size": 32, "num_frames": 4, "cache_frames": 8, "patch_size": 16},
        model={"pretrained": str(image_model)},
    )
    with pytest.raises(ConfigError, match=rf"data.patch_size: only used by stage 'upsampler', got stage '{stage}'"):
        load_config(path)


def test_temporal_stage_continues_from_a_video_ldm_folder(tmp_path, shapes, image_model):
    first = tmp_path / "first"
    first.mkdir()
    config = temporal_config(first, shapes, image_model, max_steps=1, checkpoint_every=1, noise_correlation=0.5)
    model = train(load_config(config))
    before = load_file(str(model / "temporal" / "diffusion_pytorch_model.safetensors"))
    # The export records the noise prior it trained with: the pipelines sample with it.
    assert VideoUNet.from_pretrained(model).noise_correlation == 0.5

    second = tmp_path / "second"
    second.mkdir()
    config = temporal_config(second, shapes, model, max_steps=1, checkpoint_every=1, seed=1)
    raw = yaml.safe_load(config.read_text())
    with pytest.raises(ValueError, match="already has temporal/"):
        train(load_config(config))
    del raw["model"]["temporal"]
    raw["model"]["spatial_padding"] = "circular_continued"  # a continued run may switch to a wrapping padding
    config.write_text(yaml.safe_dump(raw))
    after = load_file(str(train(load_config(config)) / "temporal" / "diffusion_pytorch_model.safetensors"))
    assert before.keys() == after.keys()
    conv = next(k for k in before if k.endswith("conv2.weight"))
    assert before[conv].abs().sum() > 0, "the first run trained the zero-initialised output"
    assert not torch.equal(before[conv], after[conv]), "the second run continued from it"
    continued = VideoUNet.from_pretrained(second / "run" / "model")
    assert continued.noise_correlation == 0.0  # trained i.i.d.
    assert continued.spatial_padding == "circular_continued"
    assert VideoUNet.from_pretrained(model).spatial_padding == "zeros"
