"""`videoldm generate`: a video file from a tiny model folder; bad input exits 2 with one line and no file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import videoldm.assets
from test_pipeline_fixtures import write_tiny_video_ldm
from videoldm.cli import app
from videoldm.io import read_video
from videoldm.pipelines import VideoLDMPipeline

PROMPT = "a red circle moving left"
FAST = ["--num-frames", "3", "--steps", "2"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_video_ldm(tmp_path_factory.mktemp("model") / "tiny")


def _run(*args: str):
    return CliRunner().invoke(app, ["generate", *args])


def _generate(model_dir: Path, output: Path, *extra: str) -> bytes:
    result = _run(PROMPT, "--model", str(model_dir), *FAST, "--output", str(output), *extra)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(output)
    return output.read_bytes()


def test_writes_mp4_and_gif_and_same_seed_gives_same_video(model_dir: Path, tmp_path: Path) -> None:
    first = _generate(model_dir, tmp_path / "a.mp4", "--seed", "3")
    again = _generate(model_dir, tmp_path / "b.mp4", "--seed", "3")
    other = _generate(model_dir, tmp_path / "c.mp4", "--seed", "4")
    assert first == again  # same seed, same frames, byte-identical file
    assert first != other
    video, _ = read_video(tmp_path / "a.mp4")
    assert video.shape == (3, 3, 16, 16)  # (C, T, H, W) at the model's default size

    _generate(model_dir, tmp_path / "d.gif", "--seed", "3", "--fps", "4", "--width", "24")
    gif, fps = read_video(tmp_path / "d.gif")
    assert gif.shape == (3, 3, 16, 24) and fps == pytest.approx(4, rel=0.05)


def test_image_only_and_other_samplers_run(model_dir: Path, tmp_path: Path) -> None:
    aligned = _generate(model_dir, tmp_path / "aligned.mp4", "--seed", "1", "--scheduler", "dpm++")
    image = _generate(model_dir, tmp_path / "image.mp4", "--seed", "1", "--scheduler", "dpm++", "--image-only")
    assert aligned != image  # --image-only switches the temporal layers off
    _generate(model_dir, tmp_path / "euler.mp4", "--seed", "1", "--scheduler", "euler", "--image-decoder")


def test_noise_correlation_option_overrides_the_models_prior_for_this_run(model_dir: Path, tmp_path: Path) -> None:
    config = (model_dir / "temporal" / "config.json").read_text()  # the tiny model's prior: 0 (i.i.d.)
    default = _generate(model_dir, tmp_path / "default.mp4", "--seed", "6")
    assert _generate(model_dir, tmp_path / "zero.mp4", "--seed", "6", "--noise-correlation", "0") == default
    assert _generate(model_dir, tmp_path / "shared.mp4", "--seed", "6", "--noise-correlation", "0.9") != default
    assert (model_dir / "temporal" / "config.json").read_text() == config  # the folder is not changed


def test_bf16_weights_give_the_float32_video_within_bf16_rounding(model_dir: Path, tmp_path: Path) -> None:
    _generate(model_dir, tmp_path / "fp32.mp4", "--seed", "5", "--device", "cpu")
    _generate(model_dir, tmp_path / "bf16.mp4", "--seed", "5", "--device", "cpu", "--dtype", "bf16")
    fp32, _ = read_video(tmp_path / "fp32.mp4")
    bf16, _ = read_video(tmp_path / "bf16.mp4")
    # Frames in [-1, 1] after h264: bf16 ran (the videos differ) and agrees with fp32 to within 2.5% of the range
    # on average (bf16 keeps 8 mantissa bits; this random tiny model measured 1.0-1.1%).
    assert 0 < (fp32 - bf16).abs().mean() < 0.05


def test_compile_flag_compiles_the_video_unet(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import torch

    from videoldm import VideoUNet

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **_: compiled.append(module) or module)
    _generate(model_dir, tmp_path / "plain.mp4", "--seed", "2")
    assert not compiled  # off by default
    _generate(model_dir, tmp_path / "compiled.mp4", "--seed", "2", "--compile")
    assert len(compiled) == 1 and isinstance(compiled[0], VideoUNet)


def test_default_model_and_default_output_name(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(videoldm.assets, "shipped_model_dir", lambda: model_dir)
    monkeypatch.chdir(tmp_path)
    result = _run(PROMPT, *FAST, "--seed", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "videoldm-5.mp4"
    assert (tmp_path / "videoldm-5.mp4").is_file()


def test_missing_shipped_model_is_a_clean_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(videoldm.assets, "SHIPPED_MODEL", "not-trained-yet")
    with pytest.raises(FileNotFoundError, match="--model"):
        videoldm.assets.shipped_model_dir()
    result = _run(PROMPT, "--output", str(tmp_path / "x.mp4"))
    assert result.exit_code == 2
    assert "shipped model is not installed" in result.stderr
    assert not list(tmp_path.iterdir())


BAD_INPUT = [
    (["", "--model", "{model}"], "PROMPT must not be empty"),
    ([PROMPT, "--model", "{model}", "--num-frames", "0"], "--num-frames must be >= 1"),
    ([PROMPT, "--model", "{model}", "--steps", "0"], "--steps must be >= 1"),
    ([PROMPT, "--model", "{model}", "--height", "18"], "--height must be a positive multiple of 4"),
    ([PROMPT, "--model", "{model}", "--width", "0"], "--width must be a positive multiple of 4"),
    ([PROMPT, "--model", "{model}", "--scheduler", "plms"], "--scheduler must be one of"),
    ([PROMPT, "--model", "{out}/no-model"], "no-model does not exist"),
    ([PROMPT, "--model", "{out}"], "has no unet/ subfolder"),
    ([PROMPT, "--model", "{model}", "--output", "{out}/missing/v.mp4"], "does not exist"),
    ([PROMPT, "--model", "{model}", "--output", "{out}/v.avi"], "unknown extension '.avi'"),
    ([PROMPT, "--model", "{model}", "--output", "{out}"], "is a folder"),
    ([PROMPT, "--model", "{model}", "--fps", "0"], "--fps must be a positive number"),
    ([PROMPT, "--model", "{model}", "--dtype", "fp64"], "--dtype must be one of fp32, bf16, fp16"),
    ([PROMPT, "--model", "{model}", "--dtype", "fp16", "--device", "cpu"], "--dtype fp16 needs a GPU"),
    ([PROMPT, "--model", "{model}", "--noise-correlation", "1"], "--noise-correlation must be in [0, 1), got 1.0"),
    ([PROMPT, "--model", "{model}", "--noise-correlation", "0.5", "--image-only"], "exclude each other"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line_before_loading(
    model_dir: Path, tmp_path: Path, monkeypatch, args: list[str], message: str
) -> None:
    def must_not_load(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(VideoLDMPipeline, "from_pretrained", must_not_load)
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(model=model_dir, out=out) for a in args]
    if "--output" not in args:
        args += ["--output", str(out / "video.mp4")]
    result = _run(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not list(out.iterdir())  # no partial file


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_folder(model_dir: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = _run(PROMPT, "--model", str(model_dir), "--output", str(locked / "v.mp4"))
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "not writable" in result.stderr
    assert not list(locked.iterdir())


def test_broken_model_folder_is_a_clean_error(model_dir: Path, tmp_path: Path) -> None:
    """A folder that passes the layout checks but whose temporal adapter does not fit the UNet."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "temporal" / "config.json").write_text('{"layer_specs": [], "bogus_option": 1}')
    result = _run(PROMPT, "--model", str(broken), *FAST, "--output", str(tmp_path / "v.mp4"))
    assert result.exit_code == 2
    assert "cannot load model" in result.stderr and "bogus_option" in result.stderr
    assert not (tmp_path / "v.mp4").exists()


# ---------------------------------------------------------------------------------------------------- the stack
STACK_FAST = ["--steps", "2", "--interpolation-steps", "2"]


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory) -> Path:
    from interpolation_fixtures import save_tiny_interpolation_model

    return save_tiny_interpolation_model(tmp_path_factory.mktemp("stack") / "tiny")


def test_stack_is_the_default_with_an_interpolation_model(stack_dir: Path, tmp_path: Path) -> None:
    first = _run(
        PROMPT,
        "--model",
        str(stack_dir),
        *STACK_FAST,
        "--num-frames",
        "20",
        "--seed",
        "3",
        "-o",
        str(tmp_path / "a.mp4"),
    )
    assert first.exit_code == 0, first.output
    video, fps = read_video(tmp_path / "a.mp4")
    assert video.shape == (3, 20, 16, 16) and fps == pytest.approx(30, rel=0.05)  # 3 key frames -> 33, trimmed
    again = _run(
        PROMPT,
        "--model",
        str(stack_dir),
        *STACK_FAST,
        "--num-frames",
        "20",
        "--seed",
        "3",
        "-o",
        str(tmp_path / "b.mp4"),
    )
    assert again.exit_code == 0 and (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_keyframes_only_is_todays_generate(model_dir: Path, stack_dir: Path, tmp_path: Path) -> None:
    # the stack folder's text-to-video model is the plain folder's (same fixture weights): same bytes
    keyframes = _generate(stack_dir, tmp_path / "k.mp4", "--seed", "3", "--keyframes-only")
    assert keyframes == _generate(model_dir, tmp_path / "plain.mp4", "--seed", "3")
    _, fps = read_video(tmp_path / "k.mp4")
    assert fps == pytest.approx(8, rel=0.05)
    # --image-only in a stack folder: the image model on the stack's frame count and rate
    _generate(stack_dir, tmp_path / "image.mp4", "--seed", "3", "--image-only", "--num-frames", "5")
    image, fps = read_video(tmp_path / "image.mp4")
    assert image.shape[1] == 5 and fps == pytest.approx(30, rel=0.05)


STACK_BAD_INPUT = [
    (["--keyframes-only", "--image-only"], "--keyframes-only and --image-only exclude each other"),
    (["--num-frames", "1"], "--num-frames must be in [2, 10000]"),
    (["--num-frames", "10001"], "--num-frames must be in [2, 10000]"),
    (["--num-frames", "1010"], "without a prediction model (prediction.json) the stack makes at most 1009 frames"),
    (["--interpolation-steps", "0"], "--interpolation-steps must be >= 1"),
    (["--context-guidance", "-1"], "--context-guidance must be a number >= 0"),
    (["--interpolation-strength", "1.5"], "--interpolation-strength must be a number or 2 comma-separated"),
    (["--interpolation-strength", "0.4,0,0"], "--interpolation-strength must be a number or 2 comma-separated"),
    (["--interpolation-strength", "a,b"], "--interpolation-strength must be a number or 2 comma-separated"),
    (["--keyframes-only", "--interpolation-strength", "0.5"], "--interpolation-strength: only the stack uses it"),
    (["--keyframes-only", "--interpolation-steps", "4"], "--interpolation-steps: only the stack uses it"),
    (["--image-only", "--context-guidance", "2"], "--context-guidance: only the stack uses it"),
]


@pytest.mark.parametrize(("args", "message"), STACK_BAD_INPUT)
def test_stack_bad_input_exits_2_with_one_line_before_loading(
    stack_dir: Path, tmp_path: Path, monkeypatch, args: list[str], message: str
) -> None:
    from videoldm.pipelines import VideoLDMStackPipeline

    def must_not_load(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(VideoLDMPipeline, "from_pretrained", must_not_load)
    monkeypatch.setattr(VideoLDMStackPipeline, "from_pretrained", must_not_load)
    result = _run(PROMPT, "--model", str(stack_dir), *args, "--output", str(tmp_path / "v.mp4"))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not list(tmp_path.iterdir())


def test_stack_options_without_interpolation_model_exit_2(model_dir: Path, tmp_path: Path) -> None:
    result = _run(PROMPT, "--model", str(model_dir), "--context-guidance", "2", "--output", str(tmp_path / "v.mp4"))
    assert result.exit_code == 2 and "no interpolation/ in the model folder" in result.stderr
