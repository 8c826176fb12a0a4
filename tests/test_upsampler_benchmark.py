"""benchmarks.upsampler_quality on a tiny saved upsampler: every method scored, costs measured, a report written."""

from __future__ import annotations

import pytest
from benchmarks import upsampler_quality

from upsampler_fixtures import save_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny ops are fastest on one thread


def test_benchmark_scores_every_method_and_writes_its_report(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "report.md"
    args = ["--model", str(model), "--num-videos", "1", "--frames", "3", "--steps", "1", "--size", "32"]
    upsampler_quality.main([*args, "--cost-frames", "--output", str(out)])  # no fresh processes: slow imports
    text = out.read_text()
    for method in upsampler_quality.METHODS:
        assert f"| {method} |" in text
    assert "flicker ratio aligned / image" in text
    cost = upsampler_quality.upscale_cost(baseline_mb=0.0, model=str(model), frames=3, size=32, steps=1, chunk_size=2)
    assert cost["s_per_frame"] > 0 and cost["peak_mb"] > 0
