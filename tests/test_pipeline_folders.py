"""VideoLDMPipeline.save_pretrained / from_pretrained: the model folder layout, markers, errors, the decoder seam."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from test_pipeline_fixtures import perturb_temporal, write_tiny_stable_diffusion, write_tiny_video_ldm
from videoldm import VideoLDMPipeline
from videoldm.text import BUILTIN_FILE, MINILM

PROMPT = "a green square moving down"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_video_ldm(tmp_path_factory.mktemp("vldm") / "tiny-video-ldm")


def _sample(pipe: VideoLDMPipeline, **kwargs) -> torch.Tensor:
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    return pipe(PROMPT, num_frames=2, num_inference_steps=2, generator=g, **kwargs).frames


def test_folder_layout_with_builtin_text_encoder(model_dir: Path) -> None:
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == ["scheduler", "temporal", "text_encoder", "tokenizer", "unet", "vae"]
    for sub in ("text_encoder", "tokenizer"):  # a marker, not MiniLM's weights
        assert [p.name for p in (model_dir / sub).iterdir()] == [BUILTIN_FILE]
        assert json.loads((model_dir / sub / BUILTIN_FILE).read_text()) == {"builtin": MINILM, "max_length": 8}
    assert not list(model_dir.parent.glob(".*tmp*"))  # the temporary folder was renamed into place


def test_save_load_round_trip_gives_the_same_video(model_dir: Path, tmp_path: Path) -> None:
    pipe = VideoLDMPipeline.from_pretrained(model_dir)
    assert pipe.text_encoder.max_length == 8 and pipe.text_encoder_marker["builtin"] == MINILM
    first = _sample(pipe)
    again = pipe.save_pretrained(tmp_path / "copy")
    reloaded = VideoLDMPipeline.from_pretrained(again)
    torch.testing.assert_close(_sample(reloaded), first, atol=0, rtol=0)

    # saving over an existing folder replaces it whole
    (again / "stale.txt").write_text("old")
    reloaded.save_pretrained(again)
    assert not (again / "stale.txt").exists()


def test_round_trip_with_a_text_encoder_that_has_weights(tmp_path: Path) -> None:
    """A CLIP text encoder is written as weights + tokenizer, and loads back at the same token length."""
    pipe = VideoLDMPipeline.from_stable_diffusion(write_tiny_stable_diffusion(tmp_path / "sd"))
    perturb_temporal(pipe.unet)
    pipe.text_encoder.max_length = 6  # shorter than the tokenizer's model_max_length (12)
    first = _sample(pipe)
    reloaded = VideoLDMPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "video"))
    assert reloaded.text_encoder.max_length == 6
    assert pipe.text_encoder.tokenizer.model_max_length == 12  # saving did not change the live tokenizer
    torch.testing.assert_close(_sample(reloaded), first, atol=0, rtol=0)


def test_fp16_folder_runs_in_float32(model_dir: Path, tmp_path: Path) -> None:
    """The shipped model is stored in fp16; it loads as float32 for CPU sampling."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "fp16"
    shutil.copytree(model_dir, folder)
    for path in folder.rglob("*.safetensors"):
        save_file({k: v.half() for k, v in load_file(str(path)).items()}, str(path))
    pipe = VideoLDMPipeline.from_pretrained(folder)
    assert pipe.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in pipe.unet.parameters())
    assert torch.isfinite(_sample(pipe)).all()


@pytest.mark.parametrize("missing", ["temporal", "scheduler", "tokenizer"])
def test_missing_part_is_named(model_dir: Path, tmp_path: Path, missing: str) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    shutil.rmtree(folder / missing)
    with pytest.raises(FileNotFoundError, match=f"has no {missing}/ subfolder"):
        VideoLDMPipeline.from_pretrained(folder)


def test_temporal_decoder_is_loaded_only_when_its_folder_exists(model_dir: Path, tmp_path: Path) -> None:
    from videoldm.autoencoder import VideoAutoencoder

    folder = tmp_path / "with-decoder"
    shutil.copytree(model_dir, folder)
    pipe = VideoLDMPipeline.from_pretrained(folder)
    assert isinstance(pipe.autoencoder, VideoAutoencoder) and pipe.autoencoder.temporal is None
    assert pipe.vae is pipe.autoencoder.vae
    VideoAutoencoder.from_vae(pipe.vae).save_temporal(folder / "temporal_decoder")

    with_decoder = VideoLDMPipeline.from_pretrained(folder)
    assert with_decoder.autoencoder.temporal is not None
    assert VideoLDMPipeline.from_pretrained(folder, image_decoder=True).autoencoder.temporal is None
    # a fresh temporal decoder is the image decoder frame by frame
    latents = _sample(with_decoder, output_type="latent")
    torch.testing.assert_close(with_decoder.decode_latents(latents), pipe.decode_latents(latents), atol=1e-5, rtol=1e-5)
    saved = with_decoder.save_pretrained(tmp_path / "resaved")
    assert (saved / "temporal_decoder").is_dir()
