"""Each benchmark function on the tiniest config: rows with the right keys and positive numbers (no timing
assertions). One thread: on a shared 2-core machine two threads can be 20x slower for tiny ops."""

from __future__ import annotations

import pytest
import torch
from benchmarks import ceiling, param_counts, training, unet_compare
from benchmarks.common import current_rss_mb, markdown_table, run_in_subprocess
from benchmarks.models import CONFIGS, MODELS, build, image_unet, inputs, output

TINY = CONFIGS["tiny"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def positive(row, keys):
    missing = [k for k in keys if k not in row]
    assert not missing, f"row lacks {missing}: {row}"
    assert all(row[k] > 0 for k in keys), row


def test_the_three_unets_take_matched_inputs_and_return_videos_of_the_same_shape():
    shapes = {}
    for model in MODELS:
        with torch.no_grad():
            out = output(build(model, TINY).eval(), inputs(model, TINY))
        shapes[model] = out.shape if model != "svd" else out.permute(0, 2, 1, 3, 4).shape  # SVD: (B, T, C, H, W)
    assert set(shapes.values()) == {(TINY.batch, 4, TINY.frames, TINY.latent, TINY.latent)}


def test_unet_comparison_rows(tmp_path):
    rows = unet_compare.add_ratios(unet_compare.time_config(TINY, warmup=0, repeats=1))
    assert [r["model"] for r in rows] == list(MODELS)
    for row in rows:
        positive(row, ("params_total", "params_temporal", "forward_s", "train_temporal_s", "forward_s_ratio"))
        assert row["params_temporal"] < row["params_total"]
    assert rows[0]["forward_s_ratio"] == 1.0
    paths = unet_compare.write_results(rows, "machine line", tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
    assert "| tiny | svd |" in (tmp_path / "unet_comparison.md").read_text()


def test_peak_memory_in_a_fresh_subprocess():
    mem = run_in_subprocess(
        "benchmarks.unet_compare", "memory_probe", {"config": "tiny", "model": "videoldm", "task": "train"}
    )
    positive(mem, ("peak_mb", "step_mb"))


def test_parameter_counts_on_meta_equal_those_on_cpu():
    config = dict(image_unet(TINY).config)
    meta, cpu = param_counts.count_rows(config), param_counts.count_rows(config, device="cpu")
    assert meta == cpu
    small, large = meta[0], meta[1]  # kernel (3, 1, 1), (3, 3, 3)
    assert small["params_spatial"] == sum(p.numel() for p in image_unet(TINY).parameters())
    assert large["params_temporal"] > small["params_temporal"] > 0
    assert meta[-1]["params_temporal"] == 649_000_000  # the paper's row


def test_ceiling_rows():
    config = dict(image_unet(TINY).config)
    ceilings, rows = ceiling.measure(config, frames=2, latent=8, repeats=1, matmul_sizes=(128,))
    assert ceilings["fp32"] > 0 and ceilings["bf16"] > 0
    assert len(rows) == (4 if ceilings["bf16_native"] else 2)
    for row in rows:
        positive(row, ("gflop", "forward_s", "gflops_per_s", "ceiling_gflops_per_s", "fraction_of_ceiling"))
    video, image = rows[0]["gflop"], rows[-1]["gflop"]
    assert video > image  # the temporal layers add work on top of the image UNet


def test_training_rows_and_memory_probe():
    rows = training.measure("tiny", checkpointing=("none", "temporal"), repeats=1, memory=False)
    assert [(r["trainable"], r["checkpointing"]) for r in rows] == [
        ("temporal", "none"),
        ("temporal", "temporal"),
        ("full", "none"),
        ("full", "temporal"),
    ]
    for row in rows:
        positive(row, ("step_s", "clips_per_s"))
    mem = training.memory_probe(baseline_mb=current_rss_mb(), config="tiny", mode="temporal", checkpointing="temporal")
    positive(mem, ("peak_mb",))
    assert markdown_table(rows, ("trainable", "step_s")).count("\n") == len(rows) + 1
