"""The temporal adapter: every temporal layer of a VideoUNet, saved and loaded apart from the backbone.

The adapter's config lists one spec per temporal layer, named after the spatial module it follows
("down_blocks.0.resnets.0"). Specs are derived from the backbone (`temporal_layer_specs`), so the same
adapter loads onto any backbone with the same block layout -- the DreamBooth transfer of PAPER.md section 7.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from safetensors.torch import load_file
from torch import nn

from videoldm.temporal.layers import AlphaBlender, TemporalResBlock, TemporalTransformerBlock, frames_to_video

# The spatial modules a temporal layer follows: every ResNet block and transformer of the UNet's blocks.
_SPATIAL_NAME = re.compile(r"(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.(resnets|attentions)\.\d+")
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"


def layer_key(name: str) -> str:
    """A spatial module path as a ModuleDict key ("down_blocks.0.resnets.0" -> "down_blocks-0-resnets-0")."""
    return name.replace(".", "-")


def temporal_layer_specs(unet: UNet2DConditionModel) -> list[dict[str, Any]]:
    """One spec per spatial ResNet block / transformer of `unet`, in module order."""
    specs: list[dict[str, Any]] = []
    for name, module in unet.named_modules():
        if not _SPATIAL_NAME.fullmatch(name):
            continue
        if isinstance(module, ResnetBlock2D):
            temb = module.time_emb_proj.in_features if module.time_emb_proj is not None else None
            specs.append(
                {
                    "name": name,
                    "kind": "resnet",
                    "channels": module.out_channels,
                    "temb_channels": temb,
                    "num_groups": module.norm2.num_groups,
                }
            )
        elif isinstance(module, Transformer2DModel):
            cfg = module.config
            specs.append(
                {
                    "name": name,
                    "kind": "transformer",
                    "channels": cfg.in_channels,
                    "num_heads": cfg.num_attention_heads,
                    "cross_attention_dim": cfg.cross_attention_dim,
                    "num_groups": cfg.norm_num_groups,
                }
            )
        else:
            raise TypeError(
                f"unsupported spatial module {name!r} of type {type(module).__name__}: videoldm adds temporal "
                "layers after ResnetBlock2D and Transformer2DModel only"
            )
    return specs


class ContextEncoder(nn.Module):
    """The learned downsampling of the context c_S = (mask * z, mask) to every UNet resolution.

    Convolutions have no bias and SiLU(0) = 0, so an all-zero context gives all-zero features at any
    point in training: `context=None` and "no context frames" (S = 0) are the same input by construction.
    """

    def __init__(self, *, in_channels: int, channels: int, num_levels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.levels = nn.ModuleList(
            [nn.Conv2d(channels, channels, 3, padding=1, bias=False)]
            + [nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False) for _ in range(num_levels - 1)]
        )

    def forward(self, context: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """context: (B, C+1, T, H, W) -> {(h, w): (B*T, channels, h, w)} at H, ceil(H/2), ceil(H/4), ..."""
        b, c, t, h, w = context.shape
        x = nn.functional.silu(self.conv_in(context.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)))
        features = {}
        for conv in self.levels:
            x = nn.functional.silu(conv(x))
            features[tuple(x.shape[-2:])] = x
        return features


class TemporalLayer(nn.Module):
    """One temporal block after one spatial block, with its alpha blender and optional context projection."""

    def __init__(self, spec: dict[str, Any], options: dict[str, Any]) -> None:
        super().__init__()
        self.kind = spec["kind"]
        channels = spec["channels"]
        if self.kind == "resnet":
            self.block: nn.Module = TemporalResBlock(
                channels=channels,
                temb_channels=spec["temb_channels"],
                kernel_size=tuple(options["kernel_size"]),
                num_groups=spec["num_groups"],
            )
        else:
            self.block = TemporalTransformerBlock(
                channels=channels,
                num_heads=spec["num_heads"],
                cross_attention_dim=spec["cross_attention_dim"] if options["cross_attention"] else None,
                num_groups=spec["num_groups"],
                position_encoding=options["position_encoding"],
                max_attention_distance=options["max_attention_distance"],
                ff_mult=options["ff_mult"],
                attention_chunk_size=options["attention_chunk_size"],
            )
        self.blend = AlphaBlender(alpha_init_logit=options["alpha_init_logit"])
        self.context_proj = None
        if options["context_in_channels"]:
            self.context_proj = nn.Conv2d(options["context_channels"], channels, 1, bias=False)
            nn.init.zeros_(self.context_proj.weight)

    def forward(
        self,
        frames: torch.Tensor,
        *,
        num_frames: int,
        temb: torch.Tensor | None,
        text: torch.Tensor | None,
        context: torch.Tensor | None,
        image_only_indicator: torch.Tensor | None,
    ) -> torch.Tensor:
        """frames: (B*T, C, H, W), the spatial block's output; temb: (B*T, D); text: (B, L, D);
        context: (B*T, C_ctx, H, W) features at this resolution. Returns the blended (B*T, C, H, W)."""
        video = frames_to_video(frames, num_frames)
        ctx = None
        if context is not None and self.context_proj is not None:
            ctx = frames_to_video(self.context_proj(context.to(frames.dtype)), num_frames)
        if self.kind == "resnet":
            temb_video = None if temb is None else temb.reshape(-1, num_frames, temb.shape[-1])
            temporal = self.block(video, temb=temb_video, context=ctx)
        else:
            temporal = self.block(video, encoder_hidden_states=text, context=ctx)
        return self.blend.blend_frames(frames, temporal, image_only_indicator=image_only_indicator)


class TemporalAdapter(ModelMixin, ConfigMixin):
    """All temporal layers of a VideoUNet (and the context encoder), with a typed config.

    Args:
        layer_specs: one spec per temporal layer, from `temporal_layer_specs(unet)`.
        kernel_size: the temporal residual blocks' 3D kernel, (3, 1, 1) or (3, 3, 3).
        position_encoding: "absolute" (frame-index sinusoid -> MLP) or "relative" (attention bias by distance).
        max_attention_distance: frames further apart than this do not attend to each other (None: no limit).
        cross_attention: temporal transformers also attend to the text.
        ff_mult: feed-forward width multiplier.
        alpha_init_logit: initial mixing logit, alpha = sigmoid(logit) (sgm uses 0.5).
        context_in_channels: C + 1 for the prediction / interpolation context (B, C+1, T, H, W); None: no context.
        context_channels: width of the context encoder's features.
        attention_chunk_size: temporal attention processes its B*H*W token batch in chunks of this size.
    """

    config_name = CONFIG_NAME
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        *,
        layer_specs: list[dict[str, Any]],
        kernel_size: tuple[int, int, int] = (3, 1, 1),
        position_encoding: str = "absolute",
        max_attention_distance: int | None = None,
        cross_attention: bool = True,
        ff_mult: int = 4,
        alpha_init_logit: float = 0.5,
        context_in_channels: int | None = None,
        context_channels: int = 64,
        attention_chunk_size: int = 16384,
    ) -> None:
        super().__init__()
        if tuple(kernel_size) not in ((3, 1, 1), (3, 3, 3), (1, 1, 1)):
            raise ValueError(f"kernel_size must be (3, 1, 1) or (3, 3, 3), got {tuple(kernel_size)}")
        options = {
            "kernel_size": kernel_size,
            "position_encoding": position_encoding,
            "max_attention_distance": max_attention_distance,
            "cross_attention": cross_attention,
            "ff_mult": ff_mult,
            "alpha_init_logit": alpha_init_logit,
            "context_in_channels": context_in_channels,
            "context_channels": context_channels,
            "attention_chunk_size": attention_chunk_size,
        }
        self.layers = nn.ModuleDict({layer_key(s["name"]): TemporalLayer(s, options) for s in layer_specs})
        self.context_encoder = None
        if context_in_channels:
            # One feature map per UNet resolution: as many as there are down blocks.
            levels = len({s["name"].split(".")[1] for s in layer_specs if s["name"].startswith("down_blocks.")})
            self.context_encoder = ContextEncoder(
                in_channels=context_in_channels, channels=context_channels, num_levels=max(levels, 1)
            )

    @classmethod
    def options_from_dir(cls, directory: str | Path) -> dict[str, Any]:
        """The saved config of an adapter folder, validated: unknown keys are an error, not silently dropped."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no temporal adapter config at {path}")
        config = json.loads(path.read_text())
        known = set(cls._init_signature_keys())
        unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
        if unknown:
            raise ValueError(
                f"{path}: unknown temporal adapter config keys {unknown}; expected a subset of {sorted(known)}"
            )
        return {k: v for k, v in config.items() if k in known}

    @classmethod
    def _init_signature_keys(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    @classmethod
    def for_backbone(cls, unet: UNet2DConditionModel, directory: str | Path) -> TemporalAdapter:
        """Load the adapter saved in `directory` onto `unet`'s block layout; fail naming the first mismatch."""
        options = cls.options_from_dir(directory)
        saved_specs = options.pop("layer_specs")
        adapter = cls(layer_specs=temporal_layer_specs(unet), **options)
        weights_path = Path(directory) / WEIGHTS_NAME
        if not weights_path.is_file():
            raise FileNotFoundError(f"no temporal weights at {weights_path}")
        state = load_file(str(weights_path))
        check_layout(adapter, state, saved_specs, weights_path)
        adapter.load_state_dict(state, strict=True)
        return adapter


def check_layout(adapter: TemporalAdapter, state: dict[str, torch.Tensor], saved_specs: list[dict], path: Path) -> None:
    """Raise a ValueError naming the first temporal layer whose saved weights do not fit the backbone."""
    expected = adapter.state_dict()
    saved_names = [s["name"] for s in saved_specs]
    backbone_names = [s["name"] for s in adapter.config.layer_specs]
    for i, (saved, ours) in enumerate(zip(saved_names, backbone_names, strict=False)):
        if saved != ours:
            raise ValueError(
                f"{path}: temporal layer #{i} was trained after {saved!r} but this backbone has {ours!r} there; "
                "the adapter needs a backbone with the same block layout"
            )
    if len(saved_names) != len(backbone_names):
        raise ValueError(
            f"{path}: the adapter has {len(saved_names)} temporal layers, this backbone needs {len(backbone_names)}"
        )
    for key, tensor in expected.items():
        if key not in state:
            raise ValueError(f"{path}: missing temporal parameter {key!r} (shape {tuple(tensor.shape)})")
        if state[key].shape != tensor.shape:
            layer = key.split(".")[1].replace("-", ".") if key.startswith("layers.") else key
            raise ValueError(
                f"{path}: temporal layer {layer!r} does not fit this backbone: parameter {key!r} was saved with "
                f"shape {tuple(state[key].shape)}, the backbone needs {tuple(tensor.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"{path}: unexpected temporal parameters {extra[:5]}")
