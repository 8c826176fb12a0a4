"""Long videos: the streaming decoder is frame-exact, the video writer writes pieces as one file (and nothing on
failure), the analysis follows an object around a wrapping world, and `videoldm generate` / `videoldm extend`
roll out with a tiny prediction model -- every bad input exits 2 with one line and no file."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from autoencoder_fixtures import perturb_temporal, smooth_latents, tiny_vae
from interpolation_fixtures import save_tiny_interpolation_model
from test_pipeline_fixtures import perturb_temporal as perturb_unet
from test_pipeline_fixtures import tiny_image_unet, write_tiny_video_ldm
from videoldm import VideoUNet
from videoldm.autoencoder import VideoAutoencoder
from videoldm.autoencoder.chunked_decode import StreamingDecoder
from videoldm.cli import app
from videoldm.data.shapes import render_shapes_video
from videoldm.evaluation.shapes_analysis import analyse_video
from videoldm.io import VideoWriter, probe_video, read_video, write_video
from videoldm.layout import PREDICTION, TEMPORAL
from videoldm.training.stages.prediction import write_prediction_config

CLIP = 4  # the tiny prediction model's clip: 2 context frames + 2 new ones


def add_prediction_model(folder: Path) -> Path:
    """Replace the folder's temporal/ with trained-looking layers that take a context, and say so."""
    unet = tiny_image_unet(seed=0, cross_attention_dim=384)  # write_tiny_video_ldm's spatial UNet
    perturb_unet(VideoUNet.from_image_unet(unet, context_in_channels=True), seed=3).save_temporal(folder / TEMPORAL)
    write_prediction_config(folder, num_frames=CLIP, frame_stride=1, context_frames=2)
    return folder


@pytest.fixture(scope="module")
def keyframe_model(tmp_path_factory) -> Path:
    return add_prediction_model(write_tiny_video_ldm(tmp_path_factory.mktemp("kf") / "model"))


@pytest.fixture(scope="module")
def stack_model(tmp_path_factory) -> Path:
    return add_prediction_model(save_tiny_interpolation_model(tmp_path_factory.mktemp("stack") / "model"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    frames = torch.rand((3, 20, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    return write_video(tmp_path_factory.mktemp("videos") / "in.mp4", frames, fps=8)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


# ------------------------------------------------------------------------------------------------ streaming pieces
def test_the_streaming_decoder_gives_each_frame_its_whole_clip_decode():
    ae = VideoAutoencoder.from_vae(tiny_vae(), frame_norm=True)
    perturb_temporal(ae)
    latents = smooth_latents(frames=23)
    radius = ae.temporal.temporal_radius()
    assert radius is not None and 0 < radius < 23
    with torch.no_grad():
        whole = ae.decode(latents)
        for pieces, chunk in (([23], 4), ([1] * 23, 6), ([5, 9, 9], 64)):
            decoder = StreamingDecoder(ae.decode, radius=radius, chunk_size=chunk)
            out, start = [], 0
            for n in pieces:
                out += decoder.push(latents[:, :, start : start + n])
                start += n
            out += decoder.flush()
            assert all(piece.shape[2] <= chunk for piece in out)
            assert torch.allclose(torch.cat(out, dim=2), whole, atol=1e-5)
    # too little context changes the frames near each cut: the radius is what makes it exact
    short = StreamingDecoder(ae.decode, radius=0, chunk_size=4)
    with torch.no_grad():
        cut = torch.cat(short.push(latents) + short.flush(), dim=2)
    assert not torch.allclose(cut, whole, atol=1e-3)


def test_the_writer_writes_pieces_as_one_file_and_nothing_on_failure(tmp_path):
    video = torch.rand((3, 10, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = write_video(tmp_path / "whole.mp4", video, fps=8)
    with VideoWriter(tmp_path / "pieces.mp4", fps=8) as writer:
        for piece in video.split([3, 1, 6], dim=1):
            writer.write(piece)
    assert writer.num_frames == 10
    assert (tmp_path / "pieces.mp4").read_bytes() == whole.read_bytes()
    with pytest.raises(RuntimeError, match="killed"), VideoWriter(tmp_path / "broken.mp4", fps=8) as writer:
        writer.write(video[:, :4])
        raise RuntimeError("killed half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pieces.mp4", "whole.mp4"]  # no file, no temporary


def test_the_analysis_follows_an_object_around_a_wrapping_world():
    for i, (colour, shape, direction) in enumerate([("red", "circle", "right"), ("green", "triangle", "up")]):
        video = render_shapes_video(colour, shape, direction, rng=i, num_frames=60, speed=(3, 3), wrap=True)
        found = analyse_video(video, wrap=True)
        assert (found.colour, found.shape, found.direction, found.identity) == (colour, shape, direction, True)
        assert max(abs(v) for v in found.velocity) == pytest.approx(3, abs=0.05)  # 180 px travelled: ~3 turns
        assert analyse_video(video).direction != direction  # the plain analysis loses it at the first wrap


# ------------------------------------------------------------------------------------------------ the commands
def test_generate_rolls_out_past_one_clip(tmp_path, keyframe_model, stack_model):
    out = tmp_path / "long.mp4"
    args = ["--steps", "2", "--seed", "0", "--output", str(out)]
    result = run("generate", "a red circle", "--model", str(keyframe_model), "--num-frames", "11", *args)
    assert result.exit_code == 0, result.output
    assert probe_video(out).num_frames == 11  # a clip of 4, then clips of 2 new frames, the last one cut
    first = out.read_bytes()
    assert run("generate", "a red circle", "--model", str(keyframe_model), "--num-frames", "11", *args).exit_code == 0
    assert out.read_bytes() == first  # same seed, same video

    # the stack: 6 key frames (more than one clip of 4) -> 81 frames, trimmed to 70
    result = run("generate", "a red circle", "--model", str(stack_model), "--num-frames", "70", *args)
    assert result.exit_code == 0, result.output
    assert probe_video(out).num_frames == 70


def test_conv_in_time_is_the_pipeline_within_one_window_and_any_length_beyond(tmp_path, keyframe_model):
    from videoldm.pipelines.conv_in_time import conv_in_time_latents
    from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(keyframe_model)
    pipe.set_progress_bar_config(disable=True)
    options = {"num_inference_steps": 2, "output_type": "latent"}
    clip = pipe("a red circle", num_frames=4, generator=torch.Generator().manual_seed(0), **options).frames
    one = conv_in_time_latents(
        pipe, "a red circle", num_frames=4, window=4, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(one, clip)  # one window: exactly the pipeline's clip
    long = conv_in_time_latents(
        pipe,
        "a red circle",
        num_frames=10,
        window=4,
        overlap=2,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert long.shape == (1, 4, 10, *clip.shape[-2:]) and torch.isfinite(long).all()

    out = tmp_path / "cit.mp4"
    args = ["generate", "a red circle", "--model", str(keyframe_model), "--num-frames", "11", "--conv-in-time"]
    result = run(*args, "--steps", "2", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert probe_video(out).num_frames == 11


def test_extend_keeps_the_input_and_adds_frames(tmp_path, keyframe_model, stack_model, clip):
    source, _ = read_video(clip)
    for model, extra in ((keyframe_model, []), (stack_model, ["--prompt", "a red circle"])):
        out = tmp_path / "extended.mp4"
        result = run(
            "extend",
            str(clip),
            "--num-frames",
            "27",
            "--output",
            str(out),
            "--model",
            str(model),
            "--steps",
            "2",
            *extra,
        )
        assert result.exit_code == 0, result.output
        assert "20 -> 27 frames" in result.output
        video, fps = read_video(out)
        assert video.shape == (3, 27, 16, 16) and fps == 8
        assert (video[:, :20] - source).abs().mean() < 0.05  # the input's own frames (re-encoded once)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("short", "needs at least 17"),
        ("not_longer", "--num-frames must be more than the input's 20 frames"),
        ("too_many", "at most 10000"),
        ("no_prediction", "no prediction model"),
        ("unreadable", "cannot read video"),
    ],
)
def test_extend_bad_input_exits_2_with_one_line_and_no_file(tmp_path, stack_model, clip, case, message):
    model, source, frames = stack_model, clip, "40"
    if case == "short":
        source = write_video(tmp_path / "short.mp4", torch.zeros(3, 10, 16, 16), fps=8)
    elif case == "not_longer":
        frames = "20"
    elif case == "too_many":
        frames = "10001"
    elif case == "no_prediction":
        model = write_tiny_video_ldm(tmp_path / "plain")
    elif case == "unreadable":
        source = tmp_path / "broken.mp4"
        source.write_bytes(b"not a video")
    out = tmp_path / "out" / "x.mp4"
    result = run("extend", str(source), "--num-frames", frames, "--output", str(out), "--model", str(model))
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_generate_without_a_prediction_model_refuses_more_than_one_clip(tmp_path, stack_model):
    plain = save_tiny_interpolation_model(tmp_path / "plain")
    out = tmp_path / "x.mp4"
    result = run("generate", "a red circle", "--model", str(plain), "--num-frames", "1010", "--output", str(out))
    assert result.exit_code == 2 and "without a prediction model" in result.output and not out.exists()
    (stack_model / PREDICTION).write_text(json.dumps({"num_frames": 4, "frame_stride": 1}))
    try:
        result = run("generate", "a red circle", "--model", str(stack_model), "--output", str(out))
        assert result.exit_code == 2 and "prediction.json" in result.output and not out.exists()
    finally:
        write_prediction_config(stack_model, num_frames=CLIP, frame_stride=1, context_frames=2)


def test_the_benchmark_scores_windows_on_the_unwrapped_track():
    from benchmarks.long_video import score_windows

    video = render_shapes_video("blue", "square", "left", rng=0, num_frames=60, speed=(3, 3), wrap=True)
    assert score_windows("a blue square moving left", video, window=10, step=10) == {
        "windows": 6,
        "direction": 1.0,
        "identity": 1.0,
        "first_break": None,
    }
    backwards = score_windows("a blue square moving left", video.flip(1), window=10, step=10)
    assert backwards["direction"] == 0.0 and backwards["identity"] == 1.0 and backwards["first_break"] == 0
    recoloured = score_windows("a red square moving left", video, window=10, step=10)
    assert recoloured["identity"] == 0.0 and recoloured["direction"] == 1.0


def test_conv_in_time_draws_a_long_video_frame_by_frame_and_one_window_with_the_layers_prior():
    from videoldm.pipelines.conv_in_time import conv_in_time_latents

    class Recording:
        _denoise = None

        def __init__(self) -> None:
            self.calls: list[dict] = []

        def __call__(self, prompt, **kwargs):
            self.calls.append(kwargs)
            return SimpleNamespace(frames=None)

    pipe = Recording()
    conv_in_time_latents(pipe, "a red circle", num_frames=64, window=8)
    conv_in_time_latents(pipe, "a red circle", num_frames=8, window=8)
    conv_in_time_latents(pipe, "a red circle", num_frames=64, window=8, noise_correlation=0.5)
    assert [c.get("noise_correlation") for c in pipe.calls] == [0.0, None, 0.5]


def test_predicted_clips_draw_with_the_layers_noise_prior(keyframe_model):
    from videoldm.diffusion import text_guidance
    from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline
    from videoldm.pipelines.rollout import predict_clip

    pipe = VideoLDMPipeline.from_pretrained(keyframe_model)
    pipe.set_progress_bar_config(disable=True)
    given = torch.randn(1, pipe.geometry.latent_channels, 2, 8, 8, generator=torch.Generator().manual_seed(1))

    def predict(correlation: float) -> torch.Tensor:
        pipe.unet.temporal.register_to_config(noise_correlation=correlation)
        cond = pipe.encode_prompt("a red circle", do_classifier_free_guidance=False)
        args = {"cond": cond, "guider": text_guidance(1.0), "num_frames": 4, "num_inference_steps": 2}
        return predict_clip(pipe, given, generator=torch.Generator().manual_seed(0), **args)

    plain, shared = predict(0.0), predict(0.8)
    torch.testing.assert_close(plain[:, :, :2], given, atol=0, rtol=0)  # the given frames either way
    torch.testing.assert_close(shared[:, :, :2], given, atol=0, rtol=0)
    assert not torch.allclose(plain[:, :, 2:], shared[:, :, 2:])  # the new frames start from the shared noise
