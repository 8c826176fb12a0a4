"""Which shard format? Write and read the same synthetic encoded clips as videoldm's WebDataset tars (random access
through the byte-range index, and streamed by `webdataset`), as litdata chunks, and as MosaicML streaming MDS --
each library only if it imports here (they are not dependencies: this is how docs/data.md's table was made).

    python -m benchmarks.shard_formats --clips 400          # prints a markdown table

A clip is what `videoldm data encode` stores at SD-like sizes: latents (4, 32, 32, 32) fp16 and a text embedding
(77, 768) fp16 (~370 KB). Reads are from the page cache (the files were just written): the numbers compare the
formats' overheads, not disks.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def clip(i: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    return {
        "latents": torch.randn(4, 32, 32, 32, generator=g).half(),
        "text": torch.randn(77, 768, generator=g).half(),
    }


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def videoldm_tar(root: Path, clips: int, order: np.ndarray) -> dict[str, object]:
    from videoldm.data.shards import DATASET_FILE, EMPTY_TEXT_FILE, FORMAT, ShardSet, ShardWriter, write_json
    from videoldm.training.cache import save_tensors

    started = time.perf_counter()
    writer = None
    for i in range(clips):
        writer = writer or ShardWriter(root, f"w000-{i // 100:06d}")
        writer.add(f"{i:09d}", clip(i), {"caption": f"clip {i}"})
        if len(writer.clips) == 100 or i == clips - 1:
            writer.commit({"covers": [0, 0], "skipped": [], "final": i == clips - 1, "worker": 0})
            writer = None
    save_tensors(root / EMPTY_TEXT_FILE, {"text": torch.zeros(77, 768).half()}, {})
    write_json(root / DATASET_FILE, {"format": FORMAT, "workers": 1, "settings": {"frames": 32}})
    write_s = time.perf_counter() - started
    shards = ShardSet.open(root)
    started = time.perf_counter()
    for i in order:
        shards.read(int(i))
    random_s = time.perf_counter() - started
    row = {"format": "videoldm tar + index", "write": _rate(clips, write_s), "random": _rate(len(order), random_s)}
    try:
        import webdataset as wds
        from safetensors.torch import load

        started = time.perf_counter()
        count = sum(
            1
            for s in wds.WebDataset(sorted(str(p) for p in root.glob("*.tar")), shardshuffle=False)
            if load(s["safetensors"]) is not None
        )
        row["sequential"] = _rate(count, time.perf_counter() - started)
        row["format"] += " (sequential: webdataset)"
    except ImportError:
        row["sequential"] = None
    row["bytes_per_clip"] = _size(root) / clips
    return row


def litdata_chunks(root: Path, clips: int, order: np.ndarray) -> dict[str, object] | None:
    try:
        import litdata
    except ImportError:
        return None
    started = time.perf_counter()
    litdata.optimize(fn=clip, inputs=list(range(clips)), output_dir=str(root), chunk_bytes="64MB", num_workers=1)
    write_s = time.perf_counter() - started
    dataset = litdata.StreamingDataset(str(root))
    started = time.perf_counter()
    for i in order:
        dataset[int(i)]
    random_s = time.perf_counter() - started
    started = time.perf_counter()
    count = sum(1 for _ in litdata.StreamingDataset(str(root)))
    sequential_s = time.perf_counter() - started
    return {
        "format": f"litdata {litdata.__version__} chunks",
        "write": _rate(clips, write_s),
        "random": _rate(len(order), random_s),
        "sequential": _rate(count, sequential_s),
        "bytes_per_clip": _size(root) / clips,
    }


def mosaic_mds(root: Path, clips: int, order: np.ndarray) -> dict[str, object] | None:
    try:
        from streaming import MDSWriter, StreamingDataset
    except ImportError:
        return None
    started = time.perf_counter()
    with MDSWriter(out=str(root / "mds"), columns={"latents": "bytes", "text": "bytes"}) as out:
        for i in range(clips):
            c = clip(i)
            out.write({k: v.numpy().tobytes() for k, v in c.items()})
    write_s = time.perf_counter() - started
    dataset = StreamingDataset(local=str(root / "mds"), shuffle=False, batch_size=1)
    started = time.perf_counter()
    for i in order:
        dataset[int(i)]
    random_s = time.perf_counter() - started
    return {
        "format": "mosaicml-streaming MDS",
        "write": _rate(clips, write_s),
        "random": _rate(len(order), random_s),
        "sequential": None,
        "bytes_per_clip": _size(root / "mds") / clips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    order = np.random.default_rng(0).integers(0, args.clips, size=args.clips)
    rows = []
    for name, fn in (("videoldm", videoldm_tar), ("litdata", litdata_chunks), ("mosaic", mosaic_mds)):
        root = Path(tempfile.mkdtemp(prefix=f"shards-{name}-"))
        try:
            row = fn(root, args.clips, order)
        except Exception as err:  # a library that imports but fails here: recorded, not fatal
            row = {"format": f"{name}: failed ({type(err).__name__}: {str(err)[:80]})"}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        rows.append(row or {"format": f"{name}: not importable here"})
    header = f"format ({args.clips} clips of ~370 KB)"
    print(f"| {header} | write clips/s | random reads clips/s | sequential clips/s | KB/clip |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        cells = [r.get(k) for k in ("write", "random", "sequential")]
        size = r.get("bytes_per_clip")
        text = [f"{c:.0f}" if isinstance(c, float) else "-" for c in cells]
        print(
            f"| {r['format']} | {' | '.join(text)} | {size / 1024:.0f} |"
            if size
            else f"| {r['format']} | - | - | - | - |"
        )


if __name__ == "__main__":
    main()
