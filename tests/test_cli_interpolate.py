"""`videoldm interpolate`: a tiny saved interpolation model end to end, and every bad input -> exit 2, one line,
no output file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interpolation_fixtures import save_tiny_interpolation_model
from test_pipeline_fixtures import write_tiny_video_ldm
from videoldm.cli import app
from videoldm.io import read_video, write_video


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_interpolation_model(tmp_path_factory.mktemp("interpolation") / "model")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    frames = torch.rand((3, 3, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    return write_video(tmp_path_factory.mktemp("videos") / "keys.mp4", frames, fps=2)


def interpolate(*args: str) -> object:
    return CliRunner().invoke(app, ["interpolate", *args])


def test_interpolates_and_the_seed_fixes_the_video(tmp_path, model, video):
    outputs = []
    for name, extra in (("a", []), ("b", []), ("guided", ["--context-guidance", "2", "--prompt", "a red circle"])):
        out = tmp_path / f"{name}.mp4"
        result = interpolate(str(video), "--output", str(out), "--model", str(model), "--steps", "2", *extra)
        assert result.exit_code == 0, result.output
        outputs.append(out)
    assert "3 -> 9 frames at 8 fps" in result.output
    frames, fps = read_video(outputs[0])
    assert frames.shape == (3, 9, 16, 16) and fps == 8
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    assert outputs[0].read_bytes() != outputs[2].read_bytes()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("one frame", "needs at least 2"),
        ("no interpolation model", "has no interpolation/"),
        ("factor", "--factor must be 4 or 16, got 8"),
        ("unreadable", "cannot read video"),
        ("size", "multiple of 4"),
        ("window", "--window must be 4k+1"),
        ("strength", "--strength must be a number in [0, 1], got '1.5'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_file(tmp_path, model, video, case, message):
    source, folder, extra = video, model, []
    if case == "one frame":
        source = write_video(tmp_path / "one.mp4", torch.zeros(3, 1, 16, 16), fps=2)
    elif case == "no interpolation model":
        folder = write_tiny_video_ldm(tmp_path / "plain")
    elif case == "factor":
        extra = ["--factor", "8"]
    elif case == "unreadable":
        source = tmp_path / "broken.mp4"
        source.write_bytes(b"not a video")
    elif case == "size":
        source = write_video(tmp_path / "odd.mp4", torch.zeros(3, 2, 18, 18), fps=2)
    elif case == "strength":
        extra = ["--strength", "1.5"]
    else:
        extra = ["--window", "8"]
    out = tmp_path / "out" / "x4.mp4"
    result = interpolate(str(source), "--output", str(out), "--model", str(folder), "--steps", "1", *extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists() and not any(out.parent.glob("*x4*"))
