"""Loading model folders from disk: a tiny Stable Diffusion folder in diffusers layout, builtin text encoders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from conftest import tiny_unet
from test_pipeline_fixtures import (
    tiny_clip_text_model,
    tiny_image_unet,
    tiny_vae,
    write_tiny_stable_diffusion,
)
from videoldm import VideoUNet
from videoldm.loading import ModelGeometry, load_scheduler, load_stable_diffusion, load_text_encoder
from videoldm.text import BUILTIN_FILE, MINILM


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return write_tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "tiny-sd")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_stable_diffusion_gives_the_saved_models(sd_folder: Path) -> None:
    sd = load_stable_diffusion(sd_folder)
    assert sd.folder == sd_folder
    assert isinstance(sd.unet, UNet2DConditionModel) and _same_weights(sd.unet, tiny_image_unet())
    assert isinstance(sd.vae, AutoencoderKL) and _same_weights(sd.vae, tiny_vae())
    assert _same_weights(sd.text_encoder.model, tiny_clip_text_model())
    assert isinstance(sd.scheduler, DDIMScheduler)
    assert sd.scheduler.config.beta_schedule == "scaled_linear" and sd.scheduler.config.steps_offset == 1

    # the tokenizer really tokenizes the words (not all-unknown), at the tokenizer's model_max_length
    tokens = sd.text_encoder.tokenizer(["a red circle"]).input_ids[0]
    assert len(tokens) == 5 and len(set(tokens)) == 5
    text = sd.text_encoder(["a red circle moving left", "a blue square"])
    assert text.shape == (2, 12, 32)
    assert not torch.allclose(text[0], text[1])


@torch.no_grad()
def test_loaded_unet_becomes_a_video_unet_that_runs(sd_folder: Path) -> None:
    sd = load_stable_diffusion(sd_folder)
    video_unet = VideoUNet.from_image_unet(sd.unet).eval()
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 3, 8, 8, generator=g)
    text = sd.text_encoder(["a red circle moving left"])
    out = video_unet(sample, 500, encoder_hidden_states=text).sample
    assert out.shape == (1, 4, 3, 8, 8)
    # fresh temporal layers: the image UNet, frame by frame
    frames = sample.permute(0, 2, 1, 3, 4).reshape(3, 4, 8, 8)
    image = sd.unet(frames, 500, encoder_hidden_states=text.expand(3, -1, -1)).sample
    torch.testing.assert_close(out[0].permute(1, 0, 2, 3), image, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("missing", ["unet", "vae", "text_encoder", "tokenizer", "scheduler"])
def test_missing_subfolder_is_named(sd_folder: Path, tmp_path: Path, missing: str) -> None:
    folder = tmp_path / "sd"
    shutil.copytree(sd_folder, folder)
    shutil.rmtree(folder / missing)
    with pytest.raises(FileNotFoundError, match=f"has no {missing}/ subfolder"):
        load_stable_diffusion(folder)


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_stable_diffusion(tmp_path / "does-not-exist")


def test_fp16_weights_load_as_float32(sd_folder: Path, tmp_path: Path) -> None:
    """The shipped model stores fp16 safetensors; on CPU it must run in float32."""
    folder = tmp_path / "sd16"
    shutil.copytree(sd_folder, folder)
    UNet2DConditionModel.from_pretrained(folder / "unet").half().save_pretrained(folder / "unet")
    sd = load_stable_diffusion(folder)
    assert sd.unet.dtype == torch.float32
    reference = tiny_image_unet().half().float()
    assert _same_weights(sd.unet, reference)


def test_builtin_text_encoder_marker(tmp_path: Path) -> None:
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    (folder / BUILTIN_FILE).write_text(json.dumps({"builtin": MINILM, "max_length": 8}))
    encoder = load_text_encoder(folder)
    assert encoder.max_length == 8 and encoder.hidden_size == 384
    assert encoder(["a red circle"]).shape == (1, 8, 384)

    (folder / BUILTIN_FILE).write_text(json.dumps({"name": MINILM}))
    with pytest.raises(ValueError, match="builtin"):
        load_text_encoder(folder)


def test_unknown_scheduler_class_is_named(tmp_path: Path) -> None:
    sched = tmp_path / "scheduler"
    sched.mkdir()
    (sched / "scheduler_config.json").write_text(json.dumps({"_class_name": "NoSuchScheduler"}))
    with pytest.raises(ValueError, match="NoSuchScheduler"):
        load_scheduler(sched)


def test_geometry_from_configs_alone(sd_folder: Path) -> None:
    geometry = ModelGeometry.read(sd_folder)
    assert geometry == ModelGeometry(vae_scale_factor=2, num_down_blocks=2, sample_size=8, latent_channels=4)
    assert geometry.size_multiple == 4 and geometry.default_size == 16
    geometry.check_size("height", 12)
    with pytest.raises(ValueError, match=r"--width must be a positive multiple of 4 .* got 10"):
        geometry.check_size("--width", 10)


def test_geometry_latent_channels_are_the_vaes_not_the_unet_inputs() -> None:
    """An upsampler's UNet takes the latents plus low-resolution frames; the latents keep the VAE's channels."""
    unet = tiny_unet(extra_channels=3)
    vae = tiny_vae()
    assert unet.config.in_channels == 7
    assert ModelGeometry.of(unet.config, vae.config).latent_channels == vae.config.latent_channels == 4
