"""`videoldm upscale`: a tiny saved upsampler end to end, and every bad input -> exit 2, one line, no file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from upsampler_fixtures import save_tiny_model
from videoldm.cli import app
from videoldm.io import read_video, write_video


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("upsampler") / "model", levels=4)  # inputs: multiples of 4


@pytest.fixture(scope="module")
def low_res(tmp_path_factory) -> Path:
    frames = torch.rand((3, 6, 8, 8), generator=torch.Generator().manual_seed(0)) * 2 - 1
    return write_video(tmp_path_factory.mktemp("videos") / "low.mp4", frames, fps=8)


def upscale(*args: str) -> object:
    return CliRunner().invoke(app, ["upscale", *args])


def test_upscales_a_video_and_the_seed_fixes_it(tmp_path, model, low_res):
    outputs = []
    for name, extra in (("a", []), ("b", []), ("image", ["--image-only"])):
        out = tmp_path / f"{name}.mp4"
        result = upscale(str(low_res), "--output", str(out), "--model", str(model), "--steps", "2", *extra)
        assert result.exit_code == 0, result.output
        outputs.append(out)
    assert "image upsampler" in result.output  # the last run: --image-only
    video, fps = read_video(outputs[0])
    assert video.shape == (3, 6, 16, 16) and fps == 8
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    assert outputs[0].read_bytes() != outputs[2].read_bytes()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("size", "multiple of 8"),
        ("unreadable", "cannot read video"),
        ("no upsampler", "upsampler"),
        ("negative level", "--noise-level must be >= 0"),
        ("level too high", "noise_level must be an integer in [0, 100)"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_file(tmp_path, model, low_res, case, message):
    source, folder, extra = low_res, model, []
    if case == "size":
        source = write_video(tmp_path / "odd.mp4", torch.zeros(3, 2, 10, 10), fps=8)
    elif case == "unreadable":
        source = tmp_path / "broken.mp4"
        source.write_bytes(b"not a video")
    elif case == "no upsampler":
        folder = tmp_path / "empty_model"
        folder.mkdir()
    elif case == "negative level":
        extra = ["--noise-level", "-1"]
    else:
        extra = ["--noise-level", "100"]
    out = tmp_path / "out" / "up.mp4"
    result = upscale(str(source), "--output", str(out), "--model", str(folder), "--steps", "1", *extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists() and not any(out.parent.glob("*up*"))


def test_generate_upscale_runs_the_folders_upsampler_after_the_stack(tmp_path):
    from test_pipeline_fixtures import write_tiny_video_ldm

    folder = write_tiny_video_ldm(tmp_path / "stack")
    args = ["generate", "a red circle moving right", "--model", str(folder), "--num-frames", "3", "--steps", "2"]
    result = CliRunner().invoke(app, [*args, "--seed", "0", "--output", str(tmp_path / "no.mp4"), "--upscale"])
    assert result.exit_code == 2 and "has no upsampler/" in result.output
    assert not (tmp_path / "no.mp4").exists()
    save_tiny_model(folder)  # adds upsampler/ beside the text-to-video parts
    result = CliRunner().invoke(app, [*args, "--seed", "0", "--output", str(tmp_path / "up.mp4"), "--upscale"])
    assert result.exit_code == 0, result.output
    assert read_video(tmp_path / "up.mp4")[0].shape == (3, 3, 32, 32)  # the model's 16 x 16, upscaled x2
