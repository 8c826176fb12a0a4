"""What the video and image datasets share: the captions table, skipping bad files, resize + centre crop."""

from __future__ import annotations

import csv
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

logger = logging.getLogger("videoldm.data")

# (file column, caption column) layouts a captions table may use, tried in order.
LAYOUTS = (("path", "caption"), ("videoid", "name"), ("file_name", "text"))
LAYOUTS_TEXT = "path,caption (or WebVid's videoid,name, or file_name,text)"


@dataclass(frozen=True)
class CaptionRow:
    """One row of a captions table: the file's candidate paths (relative to the root, or absolute), its caption."""

    candidates: tuple[str, ...]
    caption: str

    def resolve(self, root: Path) -> Path | None:
        """The first candidate that exists under `root`, or None."""
        for candidate in self.candidates:
            path = root / candidate
            if path.is_file():
                return path
        return None


def _read_records(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"captions file {path}, line {number}: not valid JSON ({err.msg})") from err
                if not isinstance(records[-1], dict):
                    raise ValueError(f"captions file {path}, line {number}: expected a JSON object")
        return records
    raise ValueError(f"captions file {path}: expected a .csv or .jsonl file")


def read_captions(
    path: str | Path, *, extensions: Sequence[str], bad_rows: list[str] | None = None
) -> list[CaptionRow]:
    """A captions table (CSV with a header, or JSONL) -> rows, in file order.

    Layouts: `path,caption`; WebVid's `videoid,name` (file `{videoid}{ext}` for ext in `extensions`, also under
    the `page_dir` column's folder if there is one); Hugging Face's `file_name,text`. Other columns are ignored.
    A row without a file name is an error -- or, when a `bad_rows` list is given, left out and described there
    ("captions.csv, row 7: empty 'path'"), as is then a row without a caption field (a CSV row that ended
    early): a 10^7-row table from the web has such rows, and one must not stop an encode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file {path} does not exist (expected a CSV or JSONL with {LAYOUTS_TEXT})")
    records = _read_records(path)
    if not records:
        raise ValueError(f"captions file {path} has no rows (expected columns {LAYOUTS_TEXT})")
    columns = set(records[0])
    layout = next((lay for lay in LAYOUTS if set(lay) <= columns), None)
    if layout is None:
        raise ValueError(f"captions file {path} has columns {sorted(columns)}; expected {LAYOUTS_TEXT}")
    file_key, caption_key = layout
    rows = []
    for number, record in enumerate(records, start=1):
        name = str(record.get(file_key) or "").strip()
        problem = f"empty {file_key!r}" if not name else None
        if problem is None and bad_rows is not None and record.get(caption_key) is None:
            problem = f"no {caption_key!r} field"  # a CSV row that ended early (csv.DictReader fills in None)
        if problem is not None:
            if bad_rows is None:
                raise ValueError(f"captions file {path}, row {number}: {problem}")
            bad_rows.append(f"{path.name}, row {number}: {problem}")
            continue
        if file_key == "videoid":
            folders = [""] + ([f"{record['page_dir']}/"] if record.get("page_dir") else [])
            candidates = tuple(f"{folder}{name}{ext}" for folder in folders for ext in extensions)
        else:
            candidates = (name,)
        rows.append(CaptionRow(candidates=candidates, caption=str(record.get(caption_key) or "")))
    return rows


def parse_size(size: int | Sequence[int]) -> tuple[int, int]:
    """An int or (H, W) -> (H, W), each >= 1."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (an int or (H, W)), got {size}")
    return int(height), int(width)


def resize_center_crop(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W): scale so the frame covers H x W (shorter side fits), then crop the centre."""
    height, width = size
    h, w = frames.shape[-2:]
    if (h, w) != (height, width):
        scale = max(height / h, width / w)
        new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
        if (new_h, new_w) != (h, w):
            frames = F.interpolate(
                frames, size=(new_h, new_w), mode="bilinear", antialias=scale < 1, align_corners=False
            )
        top, left = (new_h - height) // 2, (new_w - width) // 2
        frames = frames[..., top : top + height, left : left + width]
    return frames.clamp(-1, 1).contiguous()


class SkippingDataset(Dataset, ABC):
    """A dataset whose bad items (unreadable, too short) are skipped, counted and reported, never raised.

    `__getitem__(i)` returns item i, or the next good one after it (deterministic). `skipped` maps each bad
    file to its reason; a warning is logged once per file. With DataLoader workers every worker holds its own
    copy, so `skipped` / `report()` cover the items this process loaded (the workers log their own warnings).
    Randomness (start frame, flip) comes from (seed, epoch, index): call `set_epoch` for new draws each epoch.
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.epoch = 0
        self.skipped: dict[str, str] = {}
        self._bad: set[int] = set()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Item `index`; raise `SkipItem(path, reason)` if it cannot be used."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def load(self, index: int) -> dict[str, Any] | None:
        """Item `index`, or None if it is bad (then recorded in `skipped`)."""
        if index in self._bad:
            return None
        try:
            return self._load(index, self.rng(index))
        except SkipItem as skip:
            self._bad.add(index)
            if skip.path not in self.skipped:
                logger.warning("skipping %s: %s", skip.path, skip.reason)
                self.skipped[skip.path] = skip.reason
            return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        for offset in range(n):
            item = self.load((index + offset) % n)
            if item is not None:
                return item
        raise RuntimeError(f"every item of this dataset is unreadable or too short\n{self.report()}")

    def report(self) -> str:
        """A summary of the skipped files ('' if none), e.g. to log once per epoch."""
        if not self.skipped:
            return ""
        lines = [f"{path}: {reason}" for path, reason in sorted(self.skipped.items())]
        return f"skipped {len(self.skipped)} bad file(s) of {len(self)} items:\n  " + "\n  ".join(lines)


class SkipItem(Exception):
    """Raised inside `_load` for a bad file: it is skipped and reported."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
