"""The one hook mechanism: a diffusers image model run on videos, with temporal layers after its spatial modules.

`VideoBackbone` keeps the image model (the backbone: a UNet, a VAE, an upsampler's UNet) untouched -- its
parameters keep their exact diffusers names, so pretrained weights load as they are -- and a temporal adapter
beside it. A forward hook on each spatial module named in the adapter's `layer_specs` runs that module's
temporal layer on its output and returns the blend. The hooks act only inside `frames(state)`, which a video
forward opens with the clip's `FrameState`; everywhere else (and with state None: the image model, alpha = 1)
they return None and the backbone runs as the image model.

Subclasses (`VideoUNet`, `VideoAutoencoder`) only prepare inputs and open `frames(...)` around the backbone's
call; hooks, frame state, gradient checkpointing, freezing, alphas and saving live here once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from videoldm.temporal.adapter import TemporalAdapterBase, TemporalLayer, layer_key


@dataclass
class FrameState:
    """What the temporal layers need during one video forward.

    num_frames: T of the (B*T, ...) frame batch the backbone sees. text: (B, L, D) per-clip text states.
    context: context-encoder features by resolution {(h, w): (B*T, C_ctx, h, w)}. image_only_indicator: (B, T).
    """

    num_frames: int
    text: torch.Tensor | None = None
    context: dict[tuple[int, int], torch.Tensor] | None = None
    image_only_indicator: torch.Tensor | None = None
    # True inside a checkpointed spatial block: the temporal layer is recomputed with its block.
    checkpointed: bool = False


class TemporalHook:
    """The forward hook of one spatial module: inside a video forward, run its temporal layer on the module's
    output (a tensor, a tuple or a diffusers output with `.sample`) and return the blend.

    An object, not a closure, so that `copy.deepcopy` of the owner (EMA copies, dtype copies) gives hooks that
    point at the copy and its layers; a closure would keep running the original's.
    """

    def __init__(self, owner: VideoBackbone, spec: dict[str, Any], module: nn.Module) -> None:
        self.owner = owner
        self.name = spec["name"]
        self.key = layer_key(spec["name"])
        # A layer built with a time-embedding width takes the module's `temb` argument, found by name in the
        # module's signature (not by position): missing it would silently train without the noise level.
        self.temb_index: int | None = None
        if spec.get("temb_channels"):
            parameters = list(inspect.signature(module.forward).parameters)
            if "temb" not in parameters:
                raise TypeError(
                    f"temporal layer after {self.name!r} needs a time embedding, but {type(module).__name__}.forward "
                    f"has no 'temb' argument (it takes {parameters})"
                )
            self.temb_index = parameters.index("temb")

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        state = self.owner._state
        if state is None:
            return None
        temb = None
        if self.temb_index is not None:
            temb = kwargs.get("temb", args[self.temb_index] if len(args) > self.temb_index else None)
            if temb is None:
                raise ValueError(
                    f"temporal layer after {self.name!r} needs the time embedding, but {type(module).__name__} "
                    "was called without 'temb'"
                )
        if torch.is_tensor(output):
            return self.owner.run_temporal_layer(self.key, output, temb, state)
        if isinstance(output, tuple):
            return (self.owner.run_temporal_layer(self.key, output[0], temb, state), *output[1:])
        return type(output)(sample=self.owner.run_temporal_layer(self.key, output.sample, temb, state))


class VideoBackbone(nn.Module):
    """An image model (`backbone`, registered under `backbone_name`) plus its temporal adapter (or None: the
    image model on videos), with the temporal layers applied by forward hooks."""

    def __init__(self, *, backbone_name: str, backbone: nn.Module, temporal: TemporalAdapterBase | None) -> None:
        super().__init__()
        self._backbone_name = backbone_name
        self.add_module(backbone_name, backbone)
        self.temporal = temporal
        self.gradient_checkpointing = False
        self._state: FrameState | None = None
        self._hooks = []
        # The blocks diffusers can checkpoint (they have `gradient_checkpointing`): found once here, so the check
        # in `frames` does not walk every module of the backbone on every training forward.
        self._checkpointable = [m for m in backbone.modules() if hasattr(m, "gradient_checkpointing")]
        if temporal is not None:
            temporal.check_specs(backbone)
            for spec in temporal.config.layer_specs:
                module = backbone.get_submodule(spec["name"])
                hook = TemporalHook(self, spec, module)
                self._hooks.append(module.register_forward_hook(hook, with_kwargs=True))

    @property
    def backbone(self) -> nn.Module:
        return getattr(self, self._backbone_name)

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.dtype

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    # ------------------------------------------------------------------ training helpers
    def freeze_spatial(self) -> None:
        """Freeze the image model; only temporal parameters keep requires_grad."""
        self.backbone.requires_grad_(False)
        if self.temporal is not None:
            self.temporal.requires_grad_(True)

    def temporal_parameters(self) -> Iterator[nn.Parameter]:
        """The trainable temporal parameters (temporal layers, alphas, context encoder): what the optimiser gets."""
        if self.temporal is None:
            return iter(())
        return (p for p in self.temporal.parameters() if p.requires_grad)

    def alphas(self) -> dict[str, float]:
        """The current alpha (weight of the spatial branch) of every temporal layer, by spatial module name."""
        return {} if self.temporal is None else self.temporal.alphas()

    def save_temporal(self, directory: str | Path) -> None:
        """Write the temporal parameters only: `diffusion_pytorch_model.safetensors` + `config.json`."""
        self._require_temporal("save_temporal")
        self.temporal.save_pretrained(directory, safe_serialization=True)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass instead of storing them, for the spatial and the temporal
        layers: the backbone's own block checkpointing (diffusers') through `_checkpoint_spatial`, which recomputes
        a block together with the temporal layers hooked inside it, and every temporal layer not already inside a
        checkpointed block. Gradients are unchanged; a training step costs about one more forward.
        """
        self.gradient_checkpointing = True
        self.backbone.enable_gradient_checkpointing(self._checkpoint_spatial)

    # ------------------------------------------------------------------ the hooks' side
    @contextlib.contextmanager
    def frames(self, state: FrameState | None) -> Iterator[None]:
        """The temporal layers act with `state` inside this block (None: they are skipped, alpha = 1).
        The previous state is restored on exit: `_checkpoint_spatial` nests this inside a forward's."""
        if state is not None and self._state is None and torch.is_grad_enabled():  # nested: checked outside
            self._check_backbone_checkpointing()
        previous, self._state = self._state, state
        try:
            yield
        finally:
            self._state = previous

    def run_temporal_layer(
        self, key: str, hidden: torch.Tensor, temb: torch.Tensor | None, state: FrameState
    ) -> torch.Tensor:
        """Layer `key` on a spatial module's output (B*T, C, H, W) -> the blend (B*T, C, H, W)."""
        layer: TemporalLayer = self.temporal.layers[key]
        context = None
        if state.context is not None:
            resolution = tuple(hidden.shape[-2:])
            if resolution not in state.context:
                raise ValueError(f"no context features at resolution {resolution}; have {sorted(state.context)}")
            context = state.context[resolution]
        kwargs = {
            "num_frames": state.num_frames,
            "temb": temb,
            "text": state.text,
            "context": context,
            "image_only_indicator": state.image_only_indicator,
        }
        if self.gradient_checkpointing and torch.is_grad_enabled() and not state.checkpointed:
            return checkpoint(_call_layer, layer, hidden, kwargs, use_reentrant=False)
        return layer(hidden, **kwargs)

    def _checkpoint_spatial(self, block: nn.Module, *args: Any) -> Any:
        """diffusers' gradient-checkpointing function for the backbone's blocks: `block(*args)`, recomputed in
        the backward pass.

        The forward hooks inside a checkpointed block -- its temporal layers -- run again when the backward pass
        recomputes the block, long after the forward has left `frames` and cleared the state. So this forward's
        frame state is captured here and set again around the recomputation, which then builds the same graph as
        the forward did (state None -- the image model -- stays None).
        """
        state = self._state
        if state is not None:
            state = dataclasses.replace(state, checkpointed=True)

        def run(*inputs: Any) -> Any:
            with self.frames(state):
                return block(*inputs)

        return checkpoint(run, *args, use_reentrant=False)

    def _check_backbone_checkpointing(self) -> None:
        """The backbone's own checkpointing, switched on directly, recomputes blocks outside any video forward --
        without their temporal layers, so gradients would silently be wrong. Refuse it."""
        for module in self._checkpointable:
            if module.gradient_checkpointing is True and (
                getattr(module, "_gradient_checkpointing_func", None) != self._checkpoint_spatial
            ):
                raise ValueError(
                    f"the {self._backbone_name}'s own gradient checkpointing is on: it recomputes blocks without "
                    f"their temporal layers. Use {type(self).__name__}.enable_gradient_checkpointing() instead"
                )

    def _require_temporal(self, what: str) -> None:
        if self.temporal is None:
            raise ValueError(f"{what}: this {type(self).__name__} has no temporal layers (built image-only)")


def _call_layer(layer: TemporalLayer, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    return layer(hidden, **kwargs)
