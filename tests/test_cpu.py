"""The process-wide CPU settings the `videoldm` command applies before running models."""

from __future__ import annotations

import platform
import resource
from pathlib import Path

import pytest
import torch

from videoldm.cpu import tune_allocator, tune_cpu

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_large_tensors_stay_with_the_process() -> None:
    """Without the tuning glibc unmaps a freed 48 MiB tensor at once (RSS drops by 48 MiB: each new one pays a page
    fault per 4 KiB page); with it the freed memory stays with the process for the next tensor."""
    assert tune_allocator()
    for _ in range(2):
        x = torch.ones(12 << 20)  # 48 MiB, touched
        before = _rss_bytes()
        del x
        assert before - _rss_bytes() < 8 << 20  # kept, not unmapped


def test_tune_cpu_flushes_denormals() -> None:
    tune_cpu()
    assert torch.tensor([1e-40], dtype=torch.float32).mul(1.0).item() == 0.0
