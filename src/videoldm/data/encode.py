"""`videoldm data encode`: decode, resize + crop and encode a video collection once, into latent shards.

Every clip is read the way the training cache reads it (`VideoFolderDataset`: same captions tables, same
resize + centre crop, same uint8 rounding) and encoded with the model folder's VAE (`training.cache.
encode_latents`: posterior mode, `scale_latents`) and text encoder (`loading.load_text_encoder`): the shards
hold what the in-memory cache would hold, for any number of clips. The layout is in `data/shards.py`.

Time sampling: a clip is `frames` frames taken every `frame_stride` source frames, or at `fps` (step = source
fps / fps, rounded per frame), from frame 0. Training then takes every `data.frame_stride`-th stored frame, so
dense clips and key-frame clips (stride 16) come from the same shards.

Many processes: the inputs are split by worker, `position % workers == worker`, over
`world_size x --workers` workers (`RANK` / `WORLD_SIZE` from torchrun or accelerate launch). Resuming: each
worker's shards record the inputs they cover; a rerun of the same command continues after the last committed
shard of each worker (a shard is committed atomically), so no clip is written twice or left out.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from videoldm import layout
from videoldm.data.common import SkipItem
from videoldm.data.shards import (
    DATASET_FILE,
    EMPTY_TEXT_FILE,
    FORMAT,
    SUMMARY_FILE,
    ShardWriter,
    read_json,
    shard_indexes,
    shard_name,
    worker_of,
    write_json,
)
from videoldm.data.video_folder import VideoFolderDataset
from videoldm.io import VideoReadError, probe_video
from videoldm.loading import load_text_encoder
from videoldm.text import TextEncoder
from videoldm.training.batches import from_unit_range
from videoldm.training.cache import encode_latents, save_tensors, vae_fingerprint

logger = logging.getLogger(__name__)

# Fault injection for the resume test: SIGKILL the worker right after it committed this many shards.
FAULT_ENV = "VIDEOLDM_ENCODE_KILL_AFTER_SHARDS"


class EncodeError(ValueError):
    """Bad encode input (folder, model, settings that differ from a shard folder's): names the file / option."""


@dataclass(frozen=True)
class EncodeSettings:
    """What the clips' content depends on (a resumed encode must use the same)."""

    size: int = 256
    frames: int = 32  # stored frames per clip; training clips span at most this many
    fps: float | None = None  # sample at this rate (else every frame_stride-th source frame)
    frame_stride: int = 1
    shard_size: int = 1000  # clips per shard


@dataclass(frozen=True)
class EncodeJob:
    videos: Path  # a folder with captions.csv, or a captions table (CSV / JSONL; WebVid's videoid,name works)
    model: Path  # a model folder with vae/, text_encoder/, tokenizer/
    out: Path
    settings: EncodeSettings
    root: Path | None = None  # where the table's files are (default: the table's folder)

    def table(self) -> Path:
        return self.videos if self.videos.is_file() else self.videos / "captions.csv"

    def dataset(self, bad_rows: list[str] | None = None) -> VideoFolderDataset:
        """The inputs: good caption rows in table order (bad ones left out, described in `bad_rows`)."""
        root = self.root or (self.videos.parent if self.videos.is_file() else self.videos)
        s = self.settings
        return VideoFolderDataset(
            root,
            captions=self.table(),
            num_frames=s.frames,
            size=s.size,
            fps=s.fps,
            frame_stride=1 if s.fps else s.frame_stride,
            random_start=False,
            bad_rows=[] if bad_rows is None else bad_rows,
        )


def load_encoders(model: Path) -> tuple[AutoencoderKL, TextEncoder]:
    """The model folder's VAE (fp32, as the training stages load it) and text encoder, on this process's GPU
    (LOCAL_RANK under torchrun / accelerate launch) when there is one."""
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")
    vae = AutoencoderKL.from_pretrained(model / layout.VAE, local_files_only=True).to(device)
    text_encoder = load_text_encoder(model / layout.TEXT_ENCODER, model / layout.TOKENIZER).to(device)
    return vae.eval().requires_grad_(False), text_encoder


def check_job(job: EncodeJob) -> None:
    """Every input problem that stops the whole encode, before any model is loaded."""
    s = job.settings
    if not job.videos.exists():
        raise EncodeError(f"--videos {job.videos} does not exist (a folder with captions.csv, or a CSV / JSONL)")
    if job.videos.is_dir() and not (job.videos / "captions.csv").is_file():
        raise EncodeError(f"--videos {job.videos} has no captions.csv (columns path,caption; or give the CSV)")
    for part in (layout.VAE, layout.TEXT_ENCODER):
        if not (job.model / part).is_dir():
            raise EncodeError(f"--model {job.model} has no {part}/ folder (a Stable Diffusion / Video LDM folder)")
    vae_config = read_json(job.model / layout.VAE / "config.json")
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    if s.size < factor or s.size % factor:
        raise EncodeError(f"--size must be a positive multiple of the VAE's factor {factor}, got {s.size}")
    if s.frames < 1 or s.frame_stride < 1 or s.shard_size < 1 or (s.fps is not None and s.fps <= 0):
        raise EncodeError(f"--num-frames, --frame-stride, --shard-size must be >= 1 and --fps > 0, got {s}")
    if job.out.exists() and not job.out.is_dir():
        raise EncodeError(f"--out {job.out} exists and is not a folder")


def dataset_meta(job: EncodeJob, *, workers: int, empty_text: torch.Tensor) -> dict[str, Any]:
    """dataset.json: the settings, the model's latent geometry and fingerprint, the table's hash, bad rows."""
    bad_rows: list[str] = []
    dataset = job.dataset(bad_rows)
    vae_config = read_json(job.model / layout.VAE / "config.json")
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    return {
        "format": FORMAT,
        "settings": asdict(job.settings),
        "table_sha256": hashlib.sha256(job.table().read_bytes()).hexdigest(),
        "inputs": len(dataset),
        "workers": workers,
        "vae_fingerprint": vae_fingerprint(job.model / layout.VAE),
        "latent_shape": [int(vae_config["latent_channels"]), job.settings.size // factor, job.settings.size // factor],
        "text_shape": list(empty_text.shape),
        "model": str(job.model),
        "bad_rows": bad_rows,
    }


# What must match for a rerun to continue a shard folder (the model's path may differ: its fingerprint counts).
_RESUME_KEYS = ("format", "settings", "table_sha256", "inputs", "workers", "vae_fingerprint", "text_shape")


def start(job: EncodeJob, *, workers: int, text_encoder: TextEncoder) -> dict[str, Any]:
    """Write (or check against) the shard folder's dataset.json and the empty prompt's embedding."""
    with torch.no_grad():
        empty = text_encoder([""])[0].half().cpu()  # (L, D)
    meta = dataset_meta(job, workers=workers, empty_text=empty)
    job.out.mkdir(parents=True, exist_ok=True)
    path = job.out / DATASET_FILE
    if path.is_file():
        old = read_json(path)
        for key in _RESUME_KEYS:
            if old.get(key) != meta[key]:
                raise EncodeError(
                    f"{path}: the shards there were written with {key} = {old.get(key)!r}, this run has "
                    f"{meta[key]!r}; to continue them use the same settings (and process count), else another --out"
                )
        return old
    save_tensors(job.out / EMPTY_TEXT_FILE, {"text": empty}, {})
    write_json(path, meta)  # last: its presence means the folder's fixed files are complete
    return meta


def resume_point(out: Path, worker: int) -> tuple[int, int, bool]:
    """(next position in the worker's list, next shard number, finished) from its committed shards."""
    mine = [read_json(p) for p in shard_indexes(out) if worker_of(p) == worker]
    if not mine:
        return 0, 0, False
    return max(i["covers"][1] for i in mine), len(mine), any(i.get("final") for i in mine)


def load_clip(dataset: VideoFolderDataset, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Row `index` -> uint8 pixels (3, T, H, W) and its index entry; SkipItem (path, reason) if unusable."""
    path = dataset.resolve(index)
    try:
        info = probe_video(path)
    except VideoReadError as err:
        raise SkipItem(path, err.reason) from err
    rng = np.random.default_rng(0)  # no random start, no flip: unused
    path, frames = dataset.frame_indices(index, rng)
    pixels = from_unit_range(dataset.read(path, frames, rng))
    entry = {
        "caption": dataset.rows[index].caption,
        "source": str(path.relative_to(dataset.root)) if path.is_relative_to(dataset.root) else str(path),
        "source_frames": info.num_frames,
        "source_fps": info.fps,
        "frames": len(frames),
        "fps": dataset.fps or info.fps / dataset.frame_stride,  # the stored frames' rate
    }
    return pixels, entry


def run_worker(
    job: EncodeJob,
    worker: int,
    workers: int,
    threads: int | None = None,
    encoders: tuple[AutoencoderKL, TextEncoder] | None = None,
) -> None:
    """Encode this worker's share of the inputs into shards w{worker}-*.tar, continuing after its last shard.
    `encoders`: the VAE and text encoder when the caller has them loaded (else loaded here)."""
    if threads:
        torch.set_num_threads(threads)
    dataset = job.dataset()
    mine = range(worker, len(dataset), workers)
    position, sequence, finished = resume_point(job.out, worker)
    for stale in job.out.glob(f".{shard_name(worker, 0)[:4]}-*.tmp-*"):  # a killed run's unfinished shard
        stale.unlink(missing_ok=True)
    if finished:
        return
    vae, text_encoder = encoders or load_encoders(job.model)
    kill_after = int(os.environ.get(FAULT_ENV, "0"))
    writer, skipped, first = None, [], position

    def commit(final: bool) -> None:
        nonlocal writer, skipped, first, sequence
        writer = writer or ShardWriter(job.out, shard_name(worker, sequence))  # a last shard may hold no clip
        writer.commit({"covers": [first, position], "skipped": skipped, "final": final, "worker": worker})
        writer, skipped, first, sequence = None, [], position, sequence + 1
        if kill_after and sequence == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    bar = tqdm(total=len(mine), initial=position, desc=f"encode worker {worker}", leave=False)
    while position < len(mine):
        bar.update(1)
        index = mine[position]
        position += 1
        try:
            pixels, entry = load_clip(dataset, index)
        except SkipItem as skip:
            skipped.append({"file": skip.path, "reason": skip.reason})
            logger.warning("skipping %s: %s", skip.path, skip.reason)
            continue
        with torch.no_grad():
            latents = encode_latents(vae, pixels[None], progress=False)[0]  # (c, T, h, w) fp16
            text = text_encoder([entry["caption"]])[0].half().cpu()  # (L, D)
        writer = writer or ShardWriter(job.out, shard_name(worker, sequence))
        writer.add(f"{index:09d}", {"latents": latents, "text": text}, entry)
        if len(writer.clips) >= job.settings.shard_size and position < len(mine):
            commit(final=False)
    bar.close()
    commit(final=True)


def encode(job: EncodeJob, *, workers: int = 1, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Encode this process's share (`workers` worker processes of rank `rank`); returns the summary so far."""
    check_job(job)
    encoders = load_encoders(job.model)
    total = workers * world_size
    start(job, workers=total, text_encoder=encoders[1])
    ids = [rank * workers + w for w in range(workers)]
    if workers == 1:
        run_worker(job, ids[0], total, encoders=encoders)
    else:
        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        processes = [context.Process(target=run_worker, args=(job, w, total, threads)) for w in ids]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        failed = [(w, p.exitcode) for w, p in zip(ids, processes, strict=True) if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"encode workers failed (worker, exit code): {failed}; rerun the command to resume")
    return write_summary(job.out)


def write_summary(out: Path) -> dict[str, Any]:
    """summary.json from the committed shards: clips, skipped inputs by reason (with files), bad caption rows."""
    meta = read_json(out / DATASET_FILE)
    indexes = [read_json(p) for p in shard_indexes(out)]
    skipped = [s for i in indexes for s in i["skipped"]]
    reasons: dict[str, list[str]] = {}
    for s in skipped:
        reasons.setdefault(_reason_kind(s["reason"]), []).append(s["file"])
    finished = sorted({i["worker"] for i in indexes if i.get("final")})
    summary = {
        "clips": sum(i["count"] for i in indexes),
        "shards": len(indexes),
        "inputs": meta["inputs"] + len(meta["bad_rows"]),
        "skipped": len(skipped) + len(meta["bad_rows"]),
        "skipped_by_reason": {k: sorted(v) for k, v in sorted(reasons.items())},
        "skipped_detail": skipped,
        "bad_caption_rows": meta["bad_rows"],
        "workers_finished": f"{len(finished)} of {meta['workers']}",
    }
    write_json(out / SUMMARY_FILE, summary)
    return summary


def _reason_kind(reason: str) -> str:
    """A skip reason's kind, for counting: the words before a colon or parenthesis."""
    return reason.split(":")[0].split("(")[0].strip()


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What the CLI prints at the end."""
    lines = [
        f"{summary['clips']} clips in {summary['shards']} shards under {out} ({summary['workers_finished']} workers "
        f"finished); skipped {summary['skipped']} of {summary['inputs']} inputs (details: {out / SUMMARY_FILE})"
    ]
    for kind, files in summary["skipped_by_reason"].items():
        lines.append(f"  {len(files)} {kind}: {', '.join(Path(f).name for f in files[:5])}{' ...' * (len(files) > 5)}")
    if summary["bad_caption_rows"]:
        rows = summary["bad_caption_rows"]
        lines.append(f"  {len(rows)} unusable caption rows: {'; '.join(rows[:5])}{' ...' * (len(rows) > 5)}")
    return lines
