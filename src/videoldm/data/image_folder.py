"""Captioned images from a folder and a captions table, for image-LDM training.

Each item is `{"image": (C, H, W) float in [-1, 1], "caption": str}`, resized so the shorter side fits and
centre-cropped to H x W, optionally flipped. Unreadable images are skipped and reported (see `SkippingDataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoldm.data.common import CaptionRow, SkipItem, SkippingDataset, parse_size, read_captions, resize_center_crop
from videoldm.io import IMAGE_EXTENSIONS, read_image


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder` (by extension: IMAGE_EXTENSIONS), sorted by name."""
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


class ImageFolderDataset(SkippingDataset):
    """Images (png, jpg, ...) under `root` with a captions table: CSV or JSONL with `path,caption` (or
    `file_name,text`, or WebVid-style `videoid,name` with `{videoid}.png` etc.). Or, with `caption` instead of
    `captions`, every image file directly in `root` (sorted by name) with that one caption: the pictures of one
    concept that the dreambooth stage learns."""

    def __init__(
        self,
        root: str | Path,
        *,
        captions: str | Path | None = None,
        caption: str | None = None,
        size: int | Sequence[int],
        random_flip: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        if (captions is None) == (caption is None):
            raise ValueError("give a captions table (captions=) or one caption for every image (caption=), not both")
        if captions is not None:
            self.rows = read_captions(captions, extensions=IMAGE_EXTENSIONS)
        else:
            files = image_files(self.root)
            if not files:
                raise FileNotFoundError(f"image folder {self.root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            self.rows = [CaptionRow((f.name,), caption) for f in files]
        self.size = parse_size(size)
        self.random_flip = random_flip

    def __len__(self) -> int:
        return len(self.rows)

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        row = self.rows[index]
        path = row.resolve(self.root)
        if path is None:
            raise SkipItem(self.root / row.candidates[0], "file not found")
        try:
            image = read_image(path)
        except ValueError as err:
            raise SkipItem(path, str(err)) from err
        image = resize_center_crop(image[None], self.size)[0]
        if self.random_flip and rng.random() < 0.5:
            image = image.flip(-1)
        return {"image": image.contiguous(), "caption": row.caption}
