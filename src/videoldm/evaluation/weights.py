"""Loading the metric networks' weights from a local file the user gives (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_state_dict_file(path: str | Path | None, *, what: str, how_to_get: str) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors`, or from a torch checkpoint with `torch.load(weights_only=True)`.

    `what` names the file that is needed ("I3D weights"), `how_to_get` says where to find and how to convert it;
    both go into the error when the file is missing, so the user knows what to fetch.
    """
    if path is None or not Path(path).is_file():
        where = "no path was given" if path is None else f"{path} does not exist"
        raise FileNotFoundError(f"{what} are needed ({where}). {how_to_get}")
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types; say which file and why
        raise ValueError(f"{path}: cannot read {what} as a torch checkpoint (weights_only=True): {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors for {what}, got {type(state).__name__}")
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, path: str | Path, what: str) -> nn.Module:
    """Load `state` strictly into `model` (ignoring BatchNorm step counters); fail naming the keys that differ."""
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: these are not {what} for this network: missing keys {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ValueError(
                f"{path}: {what} key {key!r} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    model.load_state_dict(state, strict=False)
    return model.eval()
