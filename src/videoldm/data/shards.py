"""Latent shards: encoded clips in WebDataset tar files, with an index for random access.

A shard folder (written by `videoldm data encode`, see `data/encode.py` and docs/data.md) holds:

    dataset.json              the encode's settings: model (VAE fingerprint, latent channels), size, frames,
                              fps / frame stride, text shape, workers; and the caption rows that were unusable
    text-empty.safetensors    the text encoder's embedding of "" (L, D) fp16: caption dropout's empty prompt
    w003-000012.tar           a WebDataset shard of worker 3: per clip `{key}.safetensors` (latents (c, T, h, w)
                              and text (L, D), fp16) and `{key}.json` (caption, source file, frames, fps)
    w003-000012.clips.json    each clip's byte range in the tar, caption, source, frames and fps
    w003-000012.json          the shard's record, written last: clip count, the tar's size, the input positions
                              it covers, the inputs it skipped and why (small: opening 10^4 shards reads these)
    summary.json              clips written and inputs skipped (by reason, with the files), for people

A shard exists for readers once its record exists: the tar is written to a temporary name and renamed, then the
clip index and the record likewise, so a killed writer leaves no shard that a reader sees half-written. Plain tar
members make the shards streamable by `webdataset.WebDataset` as they are; the training reader seeks to a clip's
byte range instead, so a batch can be any clips -- a pure function of (seed, step, rank), see `training/batches.py`.
Only one integer per shard stays in memory; the indexes of the shards read recently are cached.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

DATASET_FILE = "dataset.json"
EMPTY_TEXT_FILE = "text-empty.safetensors"
SUMMARY_FILE = "summary.json"
FORMAT = "videoldm-latent-shards/1"
_SHARD = re.compile(r"^w(\d{3})-(\d{6})\.json$")
_INDEX_CACHE = 64  # shard indexes kept parsed (a few MB at 1,000 clips per shard)


class ShardError(ValueError):
    """A shard folder or shard that cannot be used: the message names the file and what was expected."""


def shard_name(worker: int, sequence: int) -> str:
    """The shard's file name without suffix, e.g. w003-000012: sorted names are the clips' global order."""
    return f"w{worker:03d}-{sequence:06d}"


def write_json(path: Path, value: Any) -> None:
    """JSON, written atomically (temporary file in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ShardError(f"{path}: cannot read it as JSON ({err})") from err


class ShardWriter:
    """Clips into one tar under a temporary name; `commit` renames it into place and writes its index."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        self.tmp = directory / f".{name}.tar.tmp-{os.getpid()}"
        # Open until commit() or abandon(): the writer outlives any one with-block.
        self.tar = tarfile.open(self.tmp, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self.clips: list[dict[str, Any]] = []

    def _member(self, name: str, data: bytes) -> int:
        """Append one file; returns the offset of its data in the tar."""
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644  # mtime 0: the same clips give the same bytes
        self.tar.addfile(info, io.BytesIO(data))
        padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE  # data is padded to whole blocks
        return self.tar.offset - padded

    def add(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """One clip: `tensors` (latents (c, T, h, w), text (L, D)) as `{key}.safetensors`, `meta` as `{key}.json`."""
        data = save_safetensors({k: v.contiguous() for k, v in tensors.items()})
        offset = self._member(f"{key}.safetensors", data)
        self._member(f"{key}.json", json.dumps(meta, sort_keys=True).encode())
        self.clips.append({"key": key, "offset": offset, "size": len(data), **meta})

    def commit(self, extra: dict[str, Any]) -> Path:
        """Close the tar, rename it into place, then write its clip index and last its record (`extra`: coverage,
        skipped inputs)."""
        self.tar.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())  # the index must never describe bytes still in flight
        tar = self.directory / f"{self.name}.tar"
        os.replace(self.tmp, tar)
        write_json(self.directory / f"{self.name}.clips.json", self.clips)
        write_json(
            self.directory / f"{self.name}.json", {"count": len(self.clips), "tar_bytes": tar.stat().st_size, **extra}
        )
        return tar

    def abandon(self) -> None:
        self.tar.close()
        self.tmp.unlink(missing_ok=True)


def shard_indexes(directory: Path) -> list[Path]:
    """The committed shards' records (wWWW-SSSSSS.json) of a folder, in global clip order."""
    return sorted(p for p in directory.glob("w*.json") if _SHARD.match(p.name))


def worker_of(index: Path) -> int:
    match = _SHARD.match(index.name)
    assert match is not None
    return int(match.group(1))


@dataclass
class ShardSet:
    """Random access to the clips of a shard folder: `read(i)` -> {"latents": (c, T, h, w), "text": (L, D)}.

    Opening checks every shard (its tar exists and has the size its index records) and that every worker of
    the encode finished, so a truncated or missing shard is an error naming it before training starts.
    """

    directory: Path
    dataset: dict[str, Any]
    names: list[str]
    ends: np.ndarray  # (S,) cumulative clip counts: clip i lives in shard searchsorted(ends, i, "right")

    @classmethod
    def open(cls, directory: str | Path) -> ShardSet:
        directory = Path(directory)
        meta_file = directory / DATASET_FILE
        if not meta_file.is_file():
            raise ShardError(f"{meta_file} does not exist: not a shard folder (write one with `videoldm data encode`)")
        dataset = read_json(meta_file)
        if dataset.get("format") != FORMAT:
            raise ShardError(f"{meta_file}: format {dataset.get('format')!r}, expected {FORMAT!r}")
        names, counts, finished = [], [], set()
        for index_file in shard_indexes(directory):
            index = read_json(index_file)
            tar = index_file.with_suffix(".tar")
            size = tar.stat().st_size if tar.is_file() else None
            if not index_file.with_suffix(".clips.json").is_file():
                raise ShardError(f"{index_file.with_suffix('.clips.json')} is missing (the clip index of {tar.name})")
            if size != index["tar_bytes"]:
                found = "it is missing" if size is None else f"it has {size}"
                raise ShardError(
                    f"{tar}: truncated or replaced shard: its record {index_file.name} says {index['tar_bytes']} "
                    f"bytes, {found}; rerun `videoldm data encode` on a copy without it, or restore the file"
                )
            names.append(index_file.stem)
            counts.append(index["count"])
            if index.get("final"):
                finished.add(worker_of(index_file))
        missing = sorted(set(range(dataset["workers"])) - finished)
        if missing:
            raise ShardError(
                f"{directory}: the encode has not finished: worker(s) {missing[:8]} of {dataset['workers']} wrote no "
                "final shard; rerun the same `videoldm data encode` command to complete it"
            )
        if sum(counts) == 0:
            raise ShardError(f"{directory}: no clips in its shards (see {SUMMARY_FILE})")
        return cls(directory=directory, dataset=dataset, names=names, ends=np.cumsum(counts))

    def __post_init__(self) -> None:
        self._indexes: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return int(self.ends[-1])

    def index(self, shard: int) -> list[dict[str, Any]]:
        """The clip entries of shard number `shard` (the least recently used parsed indexes are dropped)."""
        name = self.names[shard]
        if name in self._indexes:
            self._indexes.move_to_end(name)
        else:
            self._indexes[name] = read_json(self.directory / f"{name}.clips.json")
            if len(self._indexes) > _INDEX_CACHE:
                self._indexes.popitem(last=False)
        return self._indexes[name]

    def locate(self, clip: int) -> tuple[int, dict[str, Any]]:
        """Global clip number -> (shard number, the clip's entry in that shard's index)."""
        if not 0 <= clip < len(self):
            raise IndexError(f"clip {clip} out of range for {len(self)} clips in {self.directory}")
        shard = int(np.searchsorted(self.ends, clip, side="right"))
        first = int(self.ends[shard - 1]) if shard else 0
        return shard, self.index(shard)[clip - first]

    def read(self, clip: int) -> dict[str, torch.Tensor]:
        """Clip `clip`'s tensors, read from its byte range (one seek, one read)."""
        shard, entry = self.locate(clip)
        tar = self.directory / f"{self.names[shard]}.tar"
        with open(tar, "rb") as f:
            f.seek(entry["offset"])
            data = f.read(entry["size"])
        try:
            return load_safetensors(data)
        except Exception as err:  # safetensors raises its own error types for bad bytes
            raise ShardError(f"{tar}: clip {entry['key']} is not readable safetensors ({err})") from err

    def empty_text(self) -> torch.Tensor:
        """The empty prompt's embedding (L, D) fp16."""
        path = self.directory / EMPTY_TEXT_FILE
        if not path.is_file():
            raise ShardError(f"{path} does not exist (the encode writes it first)")
        return load_safetensors(path.read_bytes())["text"]
