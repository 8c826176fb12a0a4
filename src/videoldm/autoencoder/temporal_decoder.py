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

import re
from typing import Any

from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from videoldm.temporal.adapter import TemporalAdapterBase
from videoldm.temporal.attention import TemporalTransformerBlock
from videoldm.temporal.layers import TemporalConvOut, TemporalResBlock

# The spatial modules of an AutoencoderKL a temporal layer follows (names relative to the AutoencoderKL).
_RESNET_NAME = re.compile(r"decoder\.(mid_block|up_blocks\.\d+)\.resnets\.\d+")
_ATTENTION_NAME = "decoder.mid_block.attentions.0"
CONV_OUT_NAME = "decoder.conv_out"


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
    specs.append({"name": CONV_OUT_NAME, "kind": "conv_out", "channels": conv_out.out_channels, "num_groups": 1})
    if temporal_attention and not any(s["kind"] == "attention" for s in specs):
        raise ValueError("temporal_attention=True but this VAE's decoder mid block has no attention layer")
    return specs


class TemporalDecoderAdapter(TemporalAdapterBase):
    """All temporal layers of a video decoder, with a typed config; saved alone (safetensors + config.json).

    Args:
        layer_specs: one spec per temporal layer, from `decoder_layer_specs(vae)`.
        kernel_size: the 3D kernel of the residual blocks and of the conv after `conv_out`: (3, 1, 1) mixes
            frames only (as Stable Video Diffusion's decoder), (3, 3, 3) mixes space too (the sgm default).
        temporal_attention: a temporal attention block after the mid block's attention.
        attention_heads: heads of that block (its width must divide by it).
        max_attention_distance: frames further apart do not attend to each other (None: the whole chunk).
        frame_norm: normalise each frame on its own inside the temporal layers (chunked decoding exact); the
            UNet adapter's `temporal_norm="frame"`.
        alpha_init_logit: initial mixing logit, alpha = sigmoid(logit).
    """

    description = "temporal decoder"

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
            "norm": "frame" if frame_norm else "clip",
            "alpha_init_logit": alpha_init_logit,
        }
        self._build_layers(layer_specs, options)

    @classmethod
    def specs_for(cls, backbone: nn.Module, options: dict[str, Any]) -> list[dict[str, Any]]:
        return decoder_layer_specs(backbone, temporal_attention=bool(options.get("temporal_attention", False)))

    @classmethod
    def build_block(cls, spec: dict[str, Any], options: dict[str, Any]) -> nn.Module:
        kernel, norm = options["kernel_size"], options["norm"]
        if spec["kind"] == "resnet":
            return TemporalResBlock(
                channels=spec["channels"],
                temb_channels=None,
                kernel_size=kernel,
                num_groups=spec["num_groups"],
                norm=norm,
            )
        if spec["kind"] == "attention":
            return TemporalTransformerBlock(
                channels=spec["channels"],
                num_heads=options["attention_heads"],
                cross_attention_dim=None,
                num_groups=spec["num_groups"],
                position_encoding="relative",  # depends on frame distances only: chunks see the same layer
                max_attention_distance=options["max_attention_distance"],
                norm=norm,
            )
        return TemporalConvOut(channels=spec["channels"], kernel_size=kernel)
