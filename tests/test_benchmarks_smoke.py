"""Each benchmark function on the tiniest config: rows with the right keys and positive numbers (no timing
assertions). One thread: on a shared 2-core machine two threads can be 20x slower for tiny ops."""

from __future__ import annotations

import inspect

import pytest
import torch
from benchmarks import ceiling, generate_e2e, param_counts, prompt_sensitivity, training, unet_compare
from benchmarks.common import current_rss_mb, markdown_table, run_in_subprocess
from benchmarks.models import CONFIGS, MODELS, build, image_unet, inputs, output

import videoldm.io
from test_pipeline_fixtures import write_tiny_video_ldm
from videoldm.data.shapes import parse_caption
from videoldm.pipelines import VideoLDMPipeline
from videoldm.pipelines.interpolate import VideoInterpolationPipeline

TINY = CONFIGS["tiny"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny ops are fastest on one thread


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
        positive(row, ("forward_gflop", "forward_gflops_per_s"))
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
    assert len(rows) == (6 if ceilings["bf16_native"] else 2)
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
    # In a fresh process, as the benchmark runs it: in this one, earlier tests leave freed heap that the step can
    # reuse without the RSS growing, and the peak above the current RSS can be 0.
    kwargs = {"config": "tiny", "mode": "temporal", "checkpointing": "temporal"}
    positive(run_in_subprocess("benchmarks.training", "memory_probe", kwargs), ("peak_mb",))
    assert markdown_table(rows, ("trainable", "step_s")).count("\n") == len(rows) + 1


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return write_tiny_video_ldm(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def generate_row(tiny_model_dir):
    """Benchmark (e)'s per-setting measurement, in-process, on the tiny model: 3 frames, 2 steps, 2 runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the autouse one_thread fixture
    try:
        result = generate_e2e.measure(
            baseline_mb=current_rss_mb(), frames=3, steps=2, repeats=2, model=str(tiny_model_dir)
        )
    finally:
        torch.set_num_threads(threads)
    return {"frames": 3, "steps": 2, **result}


def test_generate_stage_times_add_up_to_the_command(generate_row):
    stages = generate_e2e.STAGES
    positive(generate_row, ("total_s", *stages, "peak_rss_mb", "above_imports_mb", "mp4_bytes"))
    assert generate_row["runs"] == 2 and generate_row["total_s"] in generate_row["totals_s"]
    covered = sum(generate_row[s] for s in stages)
    assert generate_row["other"] == pytest.approx(generate_row["total_s"] - covered)
    assert 0 <= generate_row["other"] < 0.5 * generate_row["total_s"]  # the seams cover most of the command
    assert generate_row["peak_rss_mb"] > generate_row["above_imports_mb"]


def test_stage_timer_puts_the_pipeline_back():
    seams = [(VideoLDMPipeline, n) for n in ("from_pretrained", "encode_prompt", "_sample", "decode_latents")]
    seams += [(VideoInterpolationPipeline, "interpolate_latents"), (videoldm.io, "write_video")]
    before = [inspect.getattr_static(owner, name) for owner, name in seams]
    with generate_e2e.stage_timer() as seconds:
        assert inspect.getattr_static(VideoLDMPipeline, "_sample") is not before[2]
        assert set(seconds) == {*generate_e2e.STAGES, "interpolating"}  # the stack's x4 passes: a stage of their own
    assert [inspect.getattr_static(owner, name) for owner, name in seams] == before


def test_generate_target_row_in_a_fresh_process_and_results_files(tiny_model_dir, generate_row, tmp_path):
    args = ("a red circle moving left", "--model", str(tiny_model_dir), "--num-frames", "2", "--steps", "1")
    target = generate_e2e.measure_target(args, runs=1, warmup=0)
    positive(target, ("wall_s", "peak_rss_mb"))
    assert target["result"] == ("PASS" if target["wall_s"] <= generate_e2e.TARGET_SECONDS else "FAIL")
    assert target["command"].startswith('videoldm generate "a red circle moving left" --model ')

    long_row = {**generate_row, "frames": 6, "total_s": 2 * generate_row["total_s"]}
    md, png = generate_e2e.write_results([generate_row, long_row], target, "machine line", tmp_path)
    assert png.stat().st_size > 0
    text = md.read_text()
    assert "machine line" in text and target["result"] in text
    settings_table = [line for line in text.splitlines() if line.startswith("| ") and "videoldm" not in line]
    header, *rows = settings_table[1:]  # [0] is the target table's header
    assert header == "| " + " | ".join(generate_e2e.COLUMNS) + " |"
    assert [r.split(" | ")[:2] for r in rows] == [["| 3", "2"], ["| 6", "2"]]
    assert all(len(r.split(" | ")) == len(generate_e2e.COLUMNS) for r in rows)


def test_prompt_sensitivity_changes_exactly_one_word():
    for prompt in prompt_sensitivity.PROMPTS:
        original = dict(zip(("colour", "shape", "direction"), parse_caption(prompt), strict=True))
        for word in prompt_sensitivity.WORDS:
            new = dict(
                zip(
                    ("colour", "shape", "direction"),
                    parse_caption(prompt_sensitivity.changed(prompt, word)),
                    strict=True,
                )
            )
            assert {k for k in original if original[k] != new[k]} == {word}


def test_prompt_sensitivity_reaches_the_direction_word_only_through_the_temporal_layers(tiny_model_dir, tmp_path):
    rows = prompt_sensitivity.run(tiny_model_dir, num_frames=3, out_dir=tmp_path)
    aligned, image_only = rows
    assert all(0 < image_only[w] < 10 for w in prompt_sensitivity.WORDS)
    assert aligned["direction"] != pytest.approx(image_only["direction"], rel=1e-3)  # trained-looking temporal layers
    assert (tmp_path / "prompt_sensitivity.md").read_text().count("| aligned |") == 1
    # With every alpha = 1 the aligned model is the image model: the same sensitivities.
    pipe = VideoLDMPipeline.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for layer in pipe.unet.temporal.layers.values():
            layer.blend.mix_logit.fill_(50.0)
    forced = prompt_sensitivity.sensitivity(pipe, num_frames=3)
    assert forced == pytest.approx({w: image_only[w] for w in prompt_sensitivity.WORDS}, rel=1e-5)


def test_stack_timing_judges_the_wall_time_only_when_quiet():
    """generate_stack: with other jobs on the CPU the target judges the CPU-seconds estimate; with --quiet, the
    wall time the user waits."""
    from benchmarks import generate_stack

    def row(wall: float, cpu: float) -> dict:
        return {"runs": 1, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": 1.0, "wall": {}, "cpu": {}}

    rows = {"default (the stack)": row(100.0, 45.0), "--keyframes-only": row(80.0, 30.0)}
    busy, _ = generate_stack.table(rows)
    quiet, split = generate_stack.table(rows, quiet=True)
    estimate = 45.0 * generate_stack.QUIET_WALL_PER_CPU  # 26.0 s: under the 30 s target
    assert busy[0]["quiet_estimate_s"] == pytest.approx(estimate) and busy[0]["result"] == "PASS"
    assert quiet[0]["result"] == "FAIL"  # 100 s of wall time
    assert quiet[1]["result"] == "-" and split[0]["startup + other"] == 100.0
