"""Benchmark: latent shards (issue 15) -- encode throughput, training from shards vs the in-memory cache, and peak
RSS against the collection's size. `python -m benchmarks.data_shards` writes benchmarks/results/data_shards.md.

- encode: `videoldm data encode`'s `encode()` on shapes-world videos (64 px, 32 frames) with the shipped model's
  VAE and text encoder, 1 worker process vs `--workers 2` (wall time including each worker's model loading).
- training: the shipped temporal config's clips (batch 32 x 16 frames at 64 px) on the shipped model, optimiser
  steps drawn from the shards vs from the cache holding the same clips, interleaved; and the batch draw alone.
- memory: peak RSS of a training run (fresh process, a few steps) over synthetic shard sets of 1,000 and
  10,000 clips: what grows with the collection is one integer per shard, so the two should match.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    RESULTS,
    interleaved_median_times,
    load_average,
    machine_header,
    machine_info,
    markdown_table,
    run_in_subprocess,
    write_atomic,
)

FRAMES, SIZE, BATCH, CLIP_FRAMES = 32, 64, 32, 16  # the shipped temporal config's data (cache_frames 32)


def shipped() -> Path:
    from videoldm.assets import shipped_model_dir

    return shipped_model_dir()


def encode_throughput(root: Path, *, videos: int = 24, workers: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    from videoldm.data.encode import EncodeJob, EncodeSettings, encode
    from videoldm.data.shapes import write_shapes_dataset

    source = write_shapes_dataset(root / "videos", videos=videos, seed=0, num_frames=FRAMES, size=SIZE)
    rows = []
    for count in workers:
        out = root / f"shards-{count}"
        settings = EncodeSettings(size=SIZE, frames=FRAMES, shard_size=100)
        started = time.perf_counter()
        summary = encode(EncodeJob(videos=source, model=shipped(), out=out, settings=settings), workers=count)
        seconds = time.perf_counter() - started
        rows.append({"workers": count, "clips": summary["clips"], "seconds": seconds, "clips_per_s": videos / seconds})
    return rows


def _trainer(out: Path, data: dict[str, Any], batch: int = BATCH):
    import yaml

    from videoldm.training.stages import load_config
    from videoldm.training.trainer import Trainer

    config = {
        "stage": "temporal",
        "output_dir": str(out / "run"),
        "data": {"size": SIZE, "num_frames": CLIP_FRAMES, **data},
        "model": {"pretrained": str(shipped())},
        "train": {"batch_size": batch, "max_steps": 1000, "checkpoint_every": 1000, "seed": 0},
    }
    path = out / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    trainer = Trainer(load_config(path))
    return trainer, trainer.build_cache()


def training_throughput(root: Path, *, repeats: int = 3, batch: int = BATCH) -> list[dict[str, Any]]:
    """Clips/s of whole optimiser steps, and of the batch draw alone, from the shards and from the cache: one
    trainer (one model in memory), two clip sources holding the same clips."""
    import dataclasses

    from videoldm.training.batches import step_generator
    from videoldm.training.cache import prepare_cache
    from videoldm.training.config import DataConfig

    trainer, shards = _trainer(root / "train", {"shards": str(root / "shards-1")}, batch)
    data = DataConfig(videos=root / "videos", size=SIZE, num_frames=CLIP_FRAMES, cache_frames=FRAMES)
    config = dataclasses.replace(trainer.config, data=dataclasses.replace(data, cache_dir=root / "cache"))
    cache = prepare_cache(trainer.stage, config, is_main=True, wait=lambda: None)
    sources = {"shards": (trainer, shards), "cache": (trainer, cache)}
    steps, draws = {}, {}
    for name, (trainer, source) in sources.items():
        counter = iter(range(10**6))
        module = trainer.stage.module

        def step(trainer=trainer, source=source, module=module, counter=counter) -> None:
            trainer.step = next(counter)
            trainer._optimisation_step(module, trainer.optimizer, source)

        steps[name] = step
        draws[name] = lambda t=trainer, s=source: t.stage.batch(s, step_generator(0, 7))
    step_s = interleaved_median_times(steps, warmup=1, repeats=repeats)
    draw_s = interleaved_median_times(draws, warmup=1, repeats=5 * repeats)
    return [
        {"source": n, "step_s": step_s[n], "clips_per_s": batch / step_s[n], "batch_draw_ms": 1000 * draw_s[n]}
        for n in sources
    ]


def write_synthetic_shards(out: Path, clips: int, *, shard_size: int = 1000) -> Path:
    """`clips` random clips with the shipped model's latent geometry, in a shard folder it accepts."""
    from videoldm.data.shards import DATASET_FILE, EMPTY_TEXT_FILE, FORMAT, ShardWriter, shard_name, write_json
    from videoldm.training.cache import save_tensors, vae_fingerprint

    latent = SIZE // 4
    g = torch.Generator().manual_seed(0)
    writer = None
    for i in range(clips):
        writer = writer or ShardWriter(out, shard_name(0, i // shard_size))
        tensors = {
            "latents": torch.randn(4, FRAMES, latent, latent, generator=g).half(),
            "text": torch.randn(16, 384, generator=g).half(),
        }
        writer.add(f"{i:09d}", tensors, {"caption": f"a red circle moving {('left', 'right')[i % 2]}"})
        if len(writer.clips) == shard_size or i == clips - 1:
            writer.commit({"covers": [0, 0], "skipped": [], "final": i == clips - 1, "worker": 0})
            writer = None
    save_tensors(out / EMPTY_TEXT_FILE, {"text": torch.zeros(16, 384).half()}, {})
    meta = {
        "format": FORMAT,
        "workers": 1,
        "settings": {"size": SIZE, "frames": FRAMES},
        "latent_shape": [4, latent, latent],
        "vae_fingerprint": vae_fingerprint(shipped() / "vae"),
        "text_shape": [16, 384],
        "bad_rows": [],
    }
    write_json(out / DATASET_FILE, meta)
    return out


def rss_probe(*, baseline_mb: float, shards: str, steps: int, batch: int = BATCH, draws: int = 100) -> dict[str, float]:
    """In a fresh process: open the shards and draw `draws` batches (data_mb: the RSS this adds to the loaded
    model), then run `steps` optimiser steps (peak_total_mb: the whole run's high-water mark)."""
    from benchmarks.common import current_rss_mb, peak_rss_mb
    from videoldm.training.batches import step_generator

    root = Path(tempfile.mkdtemp(prefix="rss-"))
    try:
        trainer, source = _trainer(root, {"shards": shards}, batch)
        loaded = current_rss_mb()
        for step in range(draws):  # every draw touches new clips and shard indexes
            trainer.stage.batch(source, step_generator(0, step))
        data_mb = current_rss_mb() - loaded
        for step in range(steps):
            trainer.step = step
            trainer._optimisation_step(trainer.stage.module, trainer.optimizer, source)
        return {"data_mb": data_mb, "peak_mb": peak_rss_mb() - baseline_mb, "peak_total_mb": peak_rss_mb()}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def peak_memory(
    root: Path, *, sizes: tuple[int, ...] = (1000, 10000), steps: int = 2, batch: int = BATCH
) -> list[dict[str, Any]]:
    rows = []
    for clips in sizes:
        folder = write_synthetic_shards(root / f"synthetic-{clips}", clips)
        result = run_in_subprocess(
            "benchmarks.data_shards",
            "rss_probe",
            {"shards": str(folder), "steps": steps, "batch": batch},
            malloc_tuning=False,
        )
        rows.append({"clips": clips, "steps": steps, **result})
        shutil.rmtree(folder, ignore_errors=True)
    rows[-1]["ratio_to_first"] = rows[-1]["peak_total_mb"] / rows[0]["peak_total_mb"]
    return rows


def run(
    out_dir: Path = RESULTS,
    *,
    videos: int = 24,
    repeats: int = 3,
    sizes: tuple[int, ...] = (1000, 10000),
    batch: int = BATCH,
) -> Path:
    """All three measurements; the results file is rewritten after each, so a run stopped midway (out of
    memory: the shipped config's batch of 32 clips takes ~12 GB per training process) keeps what it measured."""
    info, before = machine_info(), load_average()
    root = Path(tempfile.mkdtemp(prefix="data-shards-"))
    sections = [
        "# Latent shards (issue 15)",
        "",  # the machine header, once the run ends
        f"Command: `python -m benchmarks.data_shards --batch {batch}`. See docs/data.md for the format choice.",
    ]

    def write(title: str, rows: list[dict[str, Any]], columns: list[str], note: str = "") -> Path:
        sections.extend([title, *([note] if note else []), markdown_table(rows, columns)])
        sections[1] = machine_header(info, load_before=before, load_after=load_average())
        return write_atomic(out_dir / "data_shards.md", "\n\n".join(sections) + "\n")

    try:
        # Memory first: its runs are fresh processes, and this one holds no model yet.
        write(
            f"## Peak RSS of a training run against the collection's size (synthetic clips, batch {batch})",
            peak_memory(root, sizes=sizes, batch=batch),
            ["clips", "steps", "data_mb", "peak_mb", "peak_total_mb", "ratio_to_first"],
            "data_mb: RSS added by opening the shards and drawing 100 batches; peak_mb: the run's high-water mark "
            "above the process after its imports (model, optimiser, activations); ratio: peak_total_mb, larger set "
            "/ smaller.",
        )
        write(
            f"## Encode ({videos} shapes-world videos, {FRAMES} frames at {SIZE} px, shipped model)",
            encode_throughput(root, videos=videos),
            ["workers", "clips", "seconds", "clips_per_s"],
        )
        return write(
            f"## Training, shipped temporal config's clips (batch {batch} x {CLIP_FRAMES} frames): shards vs cache",
            training_throughput(root, repeats=repeats, batch=batch),
            ["source", "step_s", "clips_per_s", "batch_draw_ms"],
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH, help="Clips per step (the shipped config: 32).")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(run(args.out, videos=args.videos, repeats=args.repeats, batch=args.batch).read_text())


if __name__ == "__main__":
    main()
