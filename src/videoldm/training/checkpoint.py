"""Atomic checkpoints: everything needed to resume a run exactly.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` holding the trainable weights (safetensors), the
optimiser(s), the LR scheduler, the EMA weights, the RNG states and the step (the data position: batches are a
pure function of the seed and the step, see `batches.py`). It is written to a temporary folder and renamed in
one step, so a process killed at any moment leaves either the old set of checkpoints or the new one, never a
half-written checkpoint. Non-tensor state is loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"
_PREFIX = "step-"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / CHECKPOINTS / f"{_PREFIX}{step:07d}"


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / "state.json").is_file())
    return done[-1] if done else None


def save_checkpoint(
    output_dir: Path,
    *,
    step: int,
    weights: dict[str, torch.Tensor],
    states: dict[str, Any],
    keep: int,
) -> Path:
    """Write a checkpoint atomically and keep only the newest `keep` ones. `states`: name -> state dict."""
    final = checkpoint_dir(output_dir, step)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
    for name, state in states.items():
        torch.save(state, tmp / f"{name}.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}))  # written last: marks the folder complete
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _prune(output_dir / CHECKPOINTS, keep)
    return final


def load_checkpoint(path: Path) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]]:
    """(step, trainable weights, {name: state}) of a checkpoint folder; restores the RNG states."""
    step = int(json.loads((path / "state.json").read_text())["step"])
    weights = load_file(str(path / "weights.safetensors"))
    states = {
        p.stem: torch.load(p, map_location="cpu", weights_only=True) for p in path.glob("*.pt") if p.stem != "rng"
    }
    set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=True))
    return step, weights, states


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if p.name.startswith(_PREFIX))
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(f".{_PREFIX}*.tmp-*"):  # left by a process killed mid-write
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place, replacing an older one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
