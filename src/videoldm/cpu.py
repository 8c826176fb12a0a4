"""Process-wide CPU settings that make the tiny models' inference and training faster, set once at start.

`tune_cpu()` is what the `videoldm` command does before any subcommand runs; benchmarks and scripts that run
models in-process call it too, so they measure what a user gets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Freed heap memory above this stays with the process (glibc's default: 128 KiB, adjusted up to 32 MiB).
TRIM_THRESHOLD_BYTES = 1 << 30


@functools.cache
def tune_allocator() -> bool:
    """Keep freed activation memory in the process instead of returning it to the kernel (glibc only).

    glibc serves every allocation over 32 MiB (one interpolation call's GEGLU activations are 33 MiB) with a
    fresh mmap and unmaps it on free, so each such tensor pays a page fault per 4 KiB page on first touch; on a
    2-core VM a 33 MiB `gelu` ran 5x slower than into reused memory. Serving them from the heap and trimming it
    only above `TRIM_THRESHOLD_BYTES` reuses the pages -- what jemalloc / tcmalloc, which PyTorch's CPU tuning
    guide recommends, do. Measured there: decoding 113 frames 3.4 -> 2.8 s, `videoldm generate --num-frames 1000`
    206 -> 154 s; the cost is peak memory, 1106 -> 1340 MB for the latter, as the heap keeps its fragments
    (benchmarks/results/long_video.md). Returns whether it applied (False on other C libraries).
    """
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def tune_cpu() -> None:
    """Flush float denormals to zero and tune the allocator (`tune_allocator`). Call before running models."""
    # Trained weights and activations drift into float denormals, which x86 CPUs compute up to 10x slower;
    # flushing them to zero changes results by < 1e-38 and made the shipped model's CPU forward ~3x faster.
    import torch

    torch.set_flush_denormal(True)
    tune_allocator()
