"""Benchmark (b): parameter counts on the real Stable Diffusion 1.5 UNet config (random init, no download).

Spatial (the image UNet) vs temporal for VideoUNet with kernel (3, 1, 1) and (3, 3, 3), next to the paper's
860M / 649M (SD 1.4, same UNet config as 1.5) and, at the same widths, SVD's and AnimateDiff's temporal layers.
Models are built on the meta device: identical counts, no 6 GB of random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import MotionAdapter, UNet2DConditionModel

from benchmarks.common import RESULTS, load_average, machine_header, machine_info, markdown_table, write_atomic
from benchmarks.models import CONFIGS, SD15_UNET_CONFIG, parameter_counts, svd_unet
from videoldm import VideoUNet

PAPER = {"spatial": 860e6, "temporal": 649e6}


def videoldm_counts(unet_config: dict[str, Any], *, device: str = "meta", **temporal_config: Any) -> dict[str, int]:
    """Spatial / temporal / total parameters of a VideoUNet on the image UNet `unet_config`."""
    with torch.device(device):
        video_unet = VideoUNet.from_image_unet(UNet2DConditionModel(**unet_config), **temporal_config)
    spatial = sum(p.numel() for p in video_unet.unet.parameters())
    temporal = sum(p.numel() for p in video_unet.temporal.parameters())
    return {"params_spatial": spatial, "params_temporal": temporal, "params_total": spatial + temporal}


def count_rows(unet_config: dict[str, Any] = SD15_UNET_CONFIG, *, device: str = "meta") -> list[dict[str, Any]]:
    rows = []
    for kernel in ((3, 1, 1), (3, 3, 3)):
        counts = videoldm_counts(unet_config, device=device, kernel_size=kernel)
        rows.append({"model": f"VideoUNet, temporal kernel {kernel}", **counts})
    if unet_config is SD15_UNET_CONFIG:
        with torch.device(device):
            svd = parameter_counts("svd", svd_unet(CONFIGS["sd"]))
            motion = sum(p.numel() for p in MotionAdapter().parameters())  # AnimateDiff's SD 1.5 defaults
        rows.append({"model": "SVD UNet at SD 1.5 widths (diffusers)", **svd})
        rows.append({"model": "AnimateDiff MotionAdapter (SD 1.5 defaults)", "params_temporal": motion})
    rows.append(
        {
            "model": "paper (SD 1.4 backbone)",
            "params_spatial": int(PAPER["spatial"]),
            "params_temporal": int(PAPER["temporal"]),
            "params_total": int(PAPER["spatial"] + PAPER["temporal"]),
        }
    )
    for row in rows:
        if row.get("params_temporal") and row.get("params_spatial"):
            row["temporal_vs_paper"] = row["params_temporal"] / PAPER["temporal"]
        for key in ("params_spatial", "params_temporal", "params_total"):
            if key in row:
                row[key.replace("params_", "") + "_M"] = row[key] / 1e6
    return rows


def run(out_dir: Path = RESULTS) -> list[dict[str, Any]]:
    load_before = load_average()
    rows = count_rows()
    header = machine_header(machine_info(), load_before=load_before, load_after=load_average())
    text = "\n".join(
        [
            "# Parameter counts on the Stable Diffusion 1.5 UNet config",
            "",
            header,
            "",
            "Random init on the meta device (same counts as on CPU, no 6 GB allocation); no download. VideoUNet: "
            "default temporal options (temporal transformers with cross-attention to the text, ff_mult 4, absolute "
            "frame positions, no context encoder). SVD: `UNetSpatioTemporalConditionModel` with SD 1.5's widths, "
            "8 heads, 768-d text (its spatial part differs slightly from SD's: added-time embedding). "
            "`temporal_vs_paper`: our temporal count / the paper's 649M.",
            "",
            markdown_table(rows, ("model", "spatial_M", "temporal_M", "total_M", "temporal_vs_paper"), floats=".4g"),
            "",
        ]
    )
    write_atomic(out_dir / "param_counts.md", text)
    return rows


if __name__ == "__main__":
    run()
