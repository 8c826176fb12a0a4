"""`videoldm reconstruct`: image vs temporal decoder from a model folder, and bad input exits with code 2."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from autoencoder_fixtures import perturb_temporal, tiny_vae, tiny_video
from videoldm.autoencoder import VideoAutoencoder
from videoldm.cli import app
from videoldm.io import read_video, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    video_ae = VideoAutoencoder.from_vae(tiny_vae())
    perturb_temporal(video_ae, scale=0.3)
    video_ae.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def input_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "clip.mp4"
    write_video(path, tiny_video(batch=1, frames=6, size=16)[0], fps=8)
    return path


def run(*args):
    return runner.invoke(app, ["reconstruct", *map(str, args)])


def test_reconstruct_writes_the_temporal_and_the_image_decoder_reconstruction(model_dir, input_video, tmp_path):
    result = run(input_video, "--output", tmp_path / "temporal.mp4", "--model", model_dir, "--chunk-size", "4")
    assert result.exit_code == 0, result.output
    assert "temporal decoder" in result.output
    result = run(input_video, "--output", tmp_path / "image.mp4", "--model", model_dir, "--image-decoder")
    assert result.exit_code == 0, result.output
    assert "image decoder" in result.output
    temporal, fps = read_video(tmp_path / "temporal.mp4")
    image, _ = read_video(tmp_path / "image.mp4")
    assert temporal.shape == image.shape == (3, 6, 16, 16) and fps == pytest.approx(8)
    assert (temporal - image).abs().mean() > 1e-3  # the temporal layers were used, and switched off


def test_reconstruct_without_temporal_decoder_uses_the_image_decoder(input_video, tmp_path):
    tiny_vae().save_pretrained(tmp_path / "model" / "vae")
    result = run(input_video, "--output", tmp_path / "out.gif", "--model", tmp_path / "model")
    assert result.exit_code == 0, result.output
    assert "image decoder" in result.output and (tmp_path / "out.gif").is_file()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_input", "file not found"),
        ("bad_input_extension", "unknown extension"),
        ("bad_output_extension", "unknown extension"),
        ("unwritable_output", "cannot create its folder"),
        ("missing_model", "no-model does not exist"),
        ("model_without_vae", "has no vae/ subfolder"),
        ("bad_chunk", "--chunk-size"),
        ("corrupt_input", "cannot read video"),
    ],
)
def test_bad_input_exits_with_code_2_and_writes_nothing(case, message, model_dir, input_video, tmp_path):
    output = tmp_path / "out.mp4"
    args = [input_video, "--output", output, "--model", model_dir]
    if case == "missing_input":
        args[0] = tmp_path / "nope.mp4"
    elif case == "bad_input_extension":
        args[0] = tmp_path / "clip.txt"
        args[0].write_text("x")
    elif case == "bad_output_extension":
        output = args[2] = tmp_path / "out.avi"
    elif case == "unwritable_output":
        (tmp_path / "file").write_text("x")
        output = args[2] = tmp_path / "file" / "out.mp4"
    elif case == "missing_model":
        args[4] = tmp_path / "no-model"
    elif case == "model_without_vae":
        args[4] = tmp_path / "empty-model"
        args[4].mkdir()
    elif case == "bad_chunk":
        args += ["--chunk-size", "0"]
    elif case == "corrupt_input":
        args[0] = tmp_path / "corrupt.mp4"
        args[0].write_bytes(b"not a video")
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_frames_not_multiple_of_the_vae_factor_are_refused(model_dir, tmp_path):
    odd = tmp_path / "odd.gif"  # GIF keeps odd sizes (mp4 pads to even)
    write_video(odd, torch.zeros(3, 2, 17, 17), fps=8)
    result = run(odd, "--output", tmp_path / "out.mp4", "--model", model_dir)
    assert result.exit_code == 2 and "multiples of 2" in result.output
    assert not (tmp_path / "out.mp4").exists()
