"""benchmarks.precision_curve (paired fp32 / bf16 loss curves) and benchmarks.train_speed's report."""

import json

import pytest
import torch
from benchmarks.precision_curve import compare, report, train_curve


def test_compare_windows_pair_the_steps():
    rows = compare([1.0, 2.0, 4.0], [1.1, 1.8, 4.0], window=2)
    assert [r["steps"] for r in rows] == ["1-2", "3-3"]
    assert rows[0]["fp32_loss"] == pytest.approx(1.5) and rows[0]["bf16_loss"] == pytest.approx(1.45)
    assert rows[0]["median_rel_diff"] == pytest.approx(0.0)  # median of +0.1 and -0.1
    assert rows[0]["mean_abs_rel_diff"] == pytest.approx(0.1)
    assert rows[1]["mean_abs_rel_diff"] == 0.0


def test_the_two_runs_see_the_same_inputs():
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(3, 4, 8, 16, 16, generator=g), torch.randn(3, 16, 384, generator=g)
    args = {"steps": 2, "latents": latents, "text": text, "batch_size": 2}
    first = train_curve("tiny-shapes/keyframes", bf16=False, **args)["loss"]
    again = train_curve("tiny-shapes/keyframes", bf16=False, **args)["loss"]
    assert first == again  # a fixed init, batch order, noise and times: the paired differences are precision only
    bf16 = train_curve("tiny-shapes/keyframes", bf16=True, **args)["loss"]
    assert bf16 != first and bf16 == pytest.approx(first, rel=0.05)


def test_report_writes_the_curves_table_and_plot(tmp_path):
    curves = {
        "fp32": {"loss": [1.0, 0.5, 0.4], "seconds": [4.0, 4.0, 5.0]},
        "bf16": {"loss": [1.0, 0.6, 0.4], "seconds": [2.0, 2.0, 3.0]},
    }
    rows = report(tmp_path, curves, config_name="tiny-shapes/keyframes", videos=3, header="Machine: test")
    assert [r["steps"] for r in rows] == ["1-3"]
    assert json.loads((tmp_path / "precision_curve.json").read_text()) == curves
    text = (tmp_path / "precision_curve.md").read_text()
    assert "fp32 4.00 s, bf16 2.00 s (2.00x)" in text and "--steps 3 --videos 3" in text
    assert (tmp_path / "precision_curve.png").stat().st_size > 0


def test_train_speed_tables_name_the_command_that_made_them():
    from benchmarks.train_speed import VARIANTS, command

    assert command("tiny-shapes/keyframes", list(VARIANTS), 3) == "python -m benchmarks.train_speed"
    assert (
        command("tiny-shapes/keyframes", ["base", "bf16+fused"], 5)
        == "python -m benchmarks.train_speed --variants base bf16+fused --repeats 5"
    )
