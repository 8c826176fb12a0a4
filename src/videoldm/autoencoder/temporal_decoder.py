"""The temporal layers of a video decoder (PAPER.md section 3), saved and loaded apart from the image VAE.

A diffusers `AutoencoderKL` decoder gains, each as a residual branch blended with a learned alpha
(out = alpha * spatial + (1 - alpha) * temporal, the UNet's convention) and zero-initialised:
- a 3D-conv residual block (`TemporalResBlock`, no time embedding) after every ResNet block of the mid block
  and the up blocks,
- optionally a temporal attention block (`TemporalTransformerBlock`, no cross-attention) after the mid block's
  attention,
- a temporal 3D convolution after `conv_out`.

The layers normalise each frame on its own by default (`frame_norm=True`): a GroupNorm over (C, T, H, W) would
make a frame's output depend on which other frames share its chunk (PAPER.md section 9), so chunked decoding
could not reproduce decoding at once.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from safetensors.torch import load_file
from torch import nn

from videoldm.temporal.adapter import CONFIG_NAME, WEIGHTS_NAME, check_layout, layer_key
from videoldm.temporal.layers import AlphaBlender, TemporalResBlock, TemporalTransformerBlock, frames_to_video

# The spatial modules of an AutoencoderKL a temporal layer follows (names relative to the AutoencoderKL).
_RESNET_NAME = re.compile(r"decoder\.(mid_block|up_blocks\.\d+)\.resnets\.\d+")
_ATTENTION_NAME = "decoder.mid_block.attentions.0"
_CONV_OUT_NAME = "decoder.conv_out"


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: (B, C, T, H, W) normalised over (C/groups, H, W) per frame.

    Same parameters (and names) as `nn.GroupNorm`; only the statistics change, so a frame's output does not
    depend on the other frames in the clip and chunked decoding can be exact.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        out = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
        return out.reshape(b, t, c, h, w).transpose(1, 2)


def _per_frame_norms(module: nn.Module) -> None:
    """Swap every GroupNorm of `module` for a FrameGroupNorm with the same groups, width and eps."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, FrameGroupNorm(child.num_groups, child.num_channels, eps=child.eps))
        else:
            _per_frame_norms(child)


def decoder_layer_specs(vae: AutoencoderKL, *, temporal_attention: bool = False) -> list[dict[str, Any]]:
    """One spec per temporal layer of `vae`'s decoder, in module order (resnets, mid attention, conv_out)."""
    specs: list[dict[str, Any]] = []
    for name, module in vae.named_modules():
        if _RESNET_NAME.fullmatch(name):
            if not isinstance(module, ResnetBlock2D):
                raise TypeError(f"{name!r} is a {type(module).__name__}; videoldm expects a ResnetBlock2D there")
            specs.append(
                {"name": name, "kind": "resnet", "channels": module.out_channels, "num_groups": module.norm2.num_groups}
            )
        elif name == _ATTENTION_NAME and temporal_attention and isinstance(module, Attention):
            channels = module.to_q.in_features
            specs.append(
                {"name": name, "kind": "attention", "channels": channels, "num_groups": module.group_norm.num_groups}
            )
    conv_out = vae.decoder.conv_out
    specs.append({"name": _CONV_OUT_NAME, "kind": "conv_out", "channels": conv_out.out_channels, "num_groups": 1})
    if temporal_attention and not any(s["kind"] == "attention" for s in specs):
        raise ValueError("temporal_attention=True but this VAE's decoder mid block has no attention layer")
    return specs


class TemporalConvOut(nn.Module):
    """A residual temporal convolution on the decoded frames (B, 3, T, H, W), zero-initialised."""

    def __init__(self, *, channels: int, kernel_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size, padding=tuple(k // 2 for k in kernel_size))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class DecoderTemporalLayer(nn.Module):
    """One temporal block after one spatial module of the decoder, with its alpha blender."""

    def __init__(self, spec: dict[str, Any], options: dict[str, Any]) -> None:
        super().__init__()
        self.kind = spec["kind"]
        channels = spec["channels"]
        kernel = tuple(options["kernel_size"])
        if self.kind == "resnet":
            block: nn.Module = TemporalResBlock(
                channels=channels, temb_channels=None, kernel_size=kernel, num_groups=spec["num_groups"]
            )
        elif self.kind == "attention":
            block = TemporalTransformerBlock(
                channels=channels,
                num_heads=options["attention_heads"],
                cross_attention_dim=None,
                num_groups=spec["num_groups"],
                position_encoding="relative",  # depends on frame distances only: chunks see the same layer
                max_attention_distance=options["max_attention_distance"],
            )
        else:
            block = TemporalConvOut(channels=channels, kernel_size=kernel)
        if options["frame_norm"]:
            _per_frame_norms(block)
        self.block = block
        self.blend = AlphaBlender(alpha_init_logit=options["alpha_init_logit"])

    def forward(self, frames: torch.Tensor, *, num_frames: int) -> torch.Tensor:
        """frames: (B*T, C, H, W), the spatial module's output. Returns the blended (B*T, C, H, W)."""
        temporal = self.block(frames_to_video(frames, num_frames))
        return self.blend.blend_frames(frames, temporal)


class TemporalDecoderAdapter(ModelMixin, ConfigMixin):
    """All temporal layers of a video decoder, with a typed config; saved alone (safetensors + config.json).

    Args:
        layer_specs: one spec per temporal layer, from `decoder_layer_specs(vae)`.
        kernel_size: the 3D kernel of the residual blocks and of the conv after `conv_out`: (3, 1, 1) mixes
            frames only (as Stable Video Diffusion's decoder), (3, 3, 3) mixes space too (the sgm default).
        temporal_attention: a temporal attention block after the mid block's attention.
        attention_heads: heads of that block (its width must divide by it).
        max_attention_distance: frames further apart do not attend to each other (None: the whole chunk).
        frame_norm: normalise each frame on its own inside the temporal layers (chunked decoding exact).
        alpha_init_logit: initial mixing logit, alpha = sigmoid(logit).
    """

    config_name = CONFIG_NAME

    @register_to_config
    def __init__(
        self,
        *,
        layer_specs: list[dict[str, Any]],
        kernel_size: tuple[int, int, int] = (3, 1, 1),
        temporal_attention: bool = False,
        attention_heads: int = 1,
        max_attention_distance: int | None = None,
        frame_norm: bool = True,
        alpha_init_logit: float = 0.5,
    ) -> None:
        super().__init__()
        kernel_size = tuple(kernel_size)
        if kernel_size not in ((3, 1, 1), (3, 3, 3)):
            raise ValueError(f"kernel_size must be (3, 1, 1) or (3, 3, 3), got {kernel_size}")
        has_attention = any(s["kind"] == "attention" for s in layer_specs)
        if has_attention != bool(temporal_attention):
            state = "have" if has_attention else "lack"
            raise ValueError(f"temporal_attention={temporal_attention} but layer_specs {state} an attention layer")
        options = {
            "kernel_size": kernel_size,
            "attention_heads": attention_heads,
            "max_attention_distance": max_attention_distance,
            "frame_norm": frame_norm,
            "alpha_init_logit": alpha_init_logit,
        }
        self.layers = nn.ModuleDict({layer_key(s["name"]): DecoderTemporalLayer(s, options) for s in layer_specs})

    def temporal_radius(self) -> int | None:
        """How many frames on each side can change a decoded frame (None: unbounded, i.e. the whole chunk)."""
        reach = self.config.kernel_size[0] // 2
        radius = 0
        for layer in self.layers.values():
            if layer.kind == "resnet":
                radius += 2 * reach  # two 3D convolutions per residual block
            elif layer.kind == "conv_out":
                radius += reach
            elif self.config.max_attention_distance is None:
                return None
            else:
                radius += self.config.max_attention_distance
        return radius

    @classmethod
    def for_vae(cls, vae: AutoencoderKL, directory: str | Path) -> TemporalDecoderAdapter:
        """Load the temporal decoder saved in `directory` onto `vae`; fail naming the first layer that differs."""
        options = _read_options(cls, directory)
        saved_specs = options.pop("layer_specs")
        specs = decoder_layer_specs(vae, temporal_attention=bool(options.get("temporal_attention", False)))
        adapter = cls(layer_specs=specs, **options)
        weights_path = Path(directory) / WEIGHTS_NAME
        if not weights_path.is_file():
            raise FileNotFoundError(f"no temporal decoder weights at {weights_path}")
        state = load_file(str(weights_path))
        check_layout(adapter, state, saved_specs, weights_path)
        adapter.load_state_dict(state, strict=True)
        return adapter


def _read_options(cls: type, directory: str | Path) -> dict[str, Any]:
    """The saved config of a temporal decoder folder; unknown keys are an error, not silently dropped."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no temporal decoder config at {path}")
    config = json.loads(path.read_text())
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
    if unknown:
        raise ValueError(f"{path}: unknown temporal decoder config keys {unknown}; expected some of {sorted(known)}")
    if "layer_specs" not in config:
        raise ValueError(f"{path}: missing key 'layer_specs'")
    return {k: v for k, v in config.items() if k in known}
