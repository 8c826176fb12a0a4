"""benchmarks.interpolation_quality on a tiny saved interpolation model: every stage and method scored, the
blend baseline exact where it must be, a report written."""

from __future__ import annotations

import pytest
import torch
from benchmarks import interpolation_quality

from interpolation_fixtures import save_tiny_interpolation_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny ops are fastest on one thread


def test_object_overlap_is_one_for_the_truth_and_sees_a_ghost_the_centroid_cannot():
    def square(x0: int) -> torch.Tensor:  # (3, 1, 32, 32): a red 10 x 10 square on grey at column x0
        frame = torch.zeros(3, 1, 32, 32)
        frame[0, :, 10:20, x0 : x0 + 10] = 0.8
        return frame

    truth = square(12)
    ghost = (square(10) + square(14)) / 2  # the blend of the squares 2 px to either side: same centroid
    assert interpolation_quality.object_overlap(truth, truth, [0]) == pytest.approx(1.0)
    overlap = interpolation_quality.object_overlap(ghost, truth, [0])
    assert overlap == pytest.approx((10 - 2) / (10 + 2), abs=1e-6)  # (w - d/2) / (w + d/2), d = 4 px apart


def test_benchmark_scores_both_stages_and_writes_its_report(tmp_path):
    model = save_tiny_interpolation_model(tmp_path / "model")
    out = tmp_path / "report.md"
    args = ["--model", str(model), "--num-videos", "1", "--clip-frames", "5", "--steps", "1", "--size", "24"]
    interpolation_quality.main([*args, "--output", str(out)])
    text = out.read_text()
    for stage in interpolation_quality.STAGES:
        for method in ("autoencoder", "blend", "latent blend", "model s=1", "model s=2"):
            assert f"| {stage} | {method} |" in text
    assert "x the blend's" in text and "object overlap" in text and "the captions as prompts" in text


def test_benchmark_scores_only_the_stage_asked_for(tmp_path):
    model = save_tiny_interpolation_model(tmp_path / "model")
    out = tmp_path / "report.md"
    args = ["--model", str(model), "--num-videos", "1", "--clip-frames", "5", "--steps", "1", "--size", "24"]
    interpolation_quality.main([*args, "--stage", "keys x4", "--output", str(out)])
    text = out.read_text()
    assert "| keys x4 | model s=1 |" in text and "x4 -> full" not in text
