"""Decode time and peak memory of the temporal decoder for 16, 64 and 256 frames at 64 x 64.

The autoencoder is the shipped tiny-shapes one (config tiny-shapes/autoencoder: 64 x 64 frames ->
4 x 16 x 16 latents) with random weights -- time and memory do not depend on the values -- plus a temporal
decoder with the default options. Each setting runs in a fresh subprocess (its own RSS high-water mark):
chunked decoding (16 frames a chunk, overlap 4) against decoding all frames at once, and the image decoder in
chunks for reference. Memory must stay flat in length for the chunked decode, apart from the output tensor itself
(3 x T x 64 x 64 float32, listed).

Run: .venv/bin/python -m benchmarks.decoder_benchmark   (writes benchmarks/results/decoder.md)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.common import (
    RESULTS,
    load_average,
    machine_header,
    machine_info,
    markdown_table,
    measure_peak_memory,
    run_in_subprocess,
    write_atomic,
)
from videoldm.autoencoder.chunked_decode import default_overlap

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny-shapes" / "autoencoder.yaml"
FRAMES = (16, 64, 256)
CHUNK = 16
SETTINGS = (("temporal", CHUNK), ("temporal", None), ("image", CHUNK))


def build(seed: int = 0):
    from diffusers import AutoencoderKL

    from videoldm.autoencoder import VideoAutoencoder

    torch.manual_seed(seed)
    vae = AutoencoderKL(**yaml.safe_load(CONFIG.read_text())["model"]["vae"]).eval()
    video_ae = VideoAutoencoder.from_vae(vae)
    with torch.no_grad():  # non-zero temporal weights, as after training (the cost is the same)
        for p in video_ae.temporal.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return video_ae


def measure(*, baseline_mb: float, frames: int, decoder: str, chunk: int | None) -> dict[str, Any]:
    """One setting, in its own process: median decode time and peak RSS of one decode."""
    torch.manual_seed(0)
    video_ae = build()
    latents = torch.randn(1, 4, frames, 16, 16)

    seconds: list[float] = []

    def setup():
        def run():
            start = time.perf_counter()
            with torch.no_grad():
                video_ae.decode(latents, chunk_size=chunk, image_decoder=decoder == "image")
            seconds.append(time.perf_counter() - start)

        return run

    # One warm-up decode, then one measured decode: its peak RSS and its wall time.
    memory = measure_peak_memory(setup, baseline_mb=baseline_mb)
    return {"seconds": seconds[-1], **memory}


def chunk_label(decoder: str, chunk: int | None) -> str:
    """The image decoder decodes frames alone, so its chunks need no overlap (decode() uses 0)."""
    if chunk is None:
        return "all"
    return f"{chunk} (overlap {0 if decoder == 'image' else default_overlap(chunk)})"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=list(FRAMES))
    parser.add_argument("--output", type=Path, default=RESULTS / "decoder.md")
    args = parser.parse_args(argv)
    info = machine_info()
    load_before = load_average()
    rows = []
    for frames in args.frames:
        for decoder, chunk in SETTINGS:
            kwargs = {"frames": frames, "decoder": decoder, "chunk": chunk}
            result = run_in_subprocess("benchmarks.decoder_benchmark", "measure", kwargs)
            rows.append(
                {
                    "frames": frames,
                    "decoder": decoder,
                    "chunk": chunk_label(decoder, chunk),
                    "decode s": result["seconds"],
                    "s / frame": result["seconds"] / frames,
                    "peak MB": result["peak_mb"],
                    "decode MB": result["step_mb"],
                    "output MB": 3 * frames * 64 * 64 * 4 / 2**20,
                }
            )
            print(rows[-1], flush=True)
    header = machine_header(info, load_before=load_before, load_after=load_average())
    columns = ["frames", "decoder", "chunk", "decode s", "s / frame", "peak MB", "decode MB", "output MB"]
    text = (
        "# Temporal decoder: decode time and peak memory (64 x 64, batch 1)\n\n"
        f"{header}\n\n"
        "Autoencoder: config tiny-shapes/autoencoder (64 x 64 -> 4 x 16 x 16), random weights; temporal "
        "decoder with default options (3D-conv residual block after each decoder ResNet block, temporal conv "
        "after conv_out, per-frame norm). peak MB: RSS high-water mark of one decode minus the process after "
        "its imports (weights, input, output, activations); decode MB: high-water mark minus RSS just before "
        "the decode (what the decode allocates); output MB: the decoded video tensor itself, which any decoder "
        "must hold. Each row runs in a fresh subprocess: one warm-up decode, then the measured one "
        "(time and memory).\n\n"
        f"{markdown_table(rows, columns)}\n\n"
        "Reproduce: `.venv/bin/python -m benchmarks.decoder_benchmark`\n"
    )
    return write_atomic(args.output, text)


if __name__ == "__main__":
    print(main())
