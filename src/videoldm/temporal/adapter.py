"""Temporal adapters: the temporal layers of a backbone, saved and loaded apart from it.

`TemporalAdapterBase` is the one adapter machinery: a typed diffusers config whose `layer_specs` list one spec
per temporal layer, named after the spatial module it follows ("down_blocks.0.resnets.0"); one `TemporalLayer`
(block + alpha blender) per spec; validated loading onto a backbone (`load_onto`) that names the first layer
that does not fit; the temporal receptive field. A subclass says which spatial modules of its backbone get a
temporal layer (`specs_for`) and which block each gets (`build_block`):

- `TemporalAdapter` (here): the UNet's, after every ResNet block and transformer (PAPER.md section 2).
- `videoldm.autoencoder.temporal_decoder.TemporalDecoderAdapter`: the VAE decoder's (PAPER.md section 3).

Specs are derived from the backbone, so the same adapter loads onto any backbone with the same block layout --
the DreamBooth transfer of PAPER.md section 7.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from safetensors.torch import load_file
from torch import nn

from videoldm.diffusion.noise import check_noise_correlation
from videoldm.layout import CONFIG_NAME, WEIGHTS_NAME
from videoldm.temporal.attention import TemporalTransformerBlock
from videoldm.temporal.context import ContextEncoder
from videoldm.temporal.layers import NORMS, AlphaBlender, TemporalResBlock, frames_to_video
from videoldm.temporal.padding import check_spatial_padding

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "TemporalAdapter",
    "TemporalAdapterBase",
    "TemporalLayer",
    "layer_key",
    "temporal_layer_specs",
]


def layer_key(name: str) -> str:
    """A spatial module path as a ModuleDict key ("down_blocks.0.resnets.0" -> "down_blocks-0-resnets-0")."""
    return name.replace(".", "-")


class TemporalLayer(nn.Module):
    """One temporal block after one spatial module, blended with it by a learned alpha.

    kind: "resnet" (a `TemporalResBlock`, given the time embedding), "transformer" (a
    `TemporalTransformerBlock`, given the text) or any other block that maps (B, C, T, H, W) to itself
    ("attention", "conv_out" in the decoder). With `context_channels`, a zero-initialised 1x1 projection adds the
    context encoder's features at this resolution inside the block (PAPER.md section 4).
    """

    def __init__(
        self,
        *,
        kind: str,
        block: nn.Module,
        channels: int,
        alpha_init_logit: float,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.block = block
        self.blend = AlphaBlender(alpha_init_logit=alpha_init_logit)
        self.context_proj = None
        if context_channels:
            self.context_proj = nn.Conv2d(context_channels, channels, 1, bias=False)
            nn.init.zeros_(self.context_proj.weight)

    def forward(
        self,
        frames: torch.Tensor,
        *,
        num_frames: int,
        temb: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        image_only_indicator: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """frames: (B*T, C, H, W), the spatial module's output; temb: (B*T, D); text: (B, L, D);
        context: (B*T, C_ctx, H, W) features at this resolution. Returns the blended (B*T, C, H, W)."""
        video = frames_to_video(frames, num_frames)
        ctx = None
        if context is not None and self.context_proj is not None:
            ctx = frames_to_video(self.context_proj(context.to(frames.dtype)), num_frames)
        if self.kind == "resnet":
            temb_video = None if temb is None else temb.reshape(-1, num_frames, temb.shape[-1])
            # the prompt as one vector: the mean over its token states (how MiniLM-style encoders pool)
            pooled = None if text is None or self.block.text_proj is None else text.mean(dim=1).to(frames.dtype)
            temporal = self.block(video, temb=temb_video, context=ctx, text=pooled)
        elif self.kind == "transformer":
            temporal = self.block(video, encoder_hidden_states=text, context=ctx)
        else:
            temporal = self.block(video)
        return self.blend.blend_frames(frames, temporal, image_only_indicator=image_only_indicator)


class TemporalAdapterBase(ModelMixin, ConfigMixin):
    """All temporal layers of one backbone, with a typed config; saved alone (safetensors + config.json).

    Subclasses define `__init__` (with `@register_to_config`, a `layer_specs` argument, and a call to
    `self._build_layers`), `specs_for(backbone, options)` and `build_block(spec, options)`.
    """

    config_name = CONFIG_NAME
    # Words for error messages: "no temporal adapter config at ..."
    description: ClassVar[str] = "temporal adapter"

    def _build_layers(
        self, layer_specs: list[dict[str, Any]], options: dict[str, Any], *, context_channels: int | None = None
    ) -> None:
        self.layers = nn.ModuleDict(
            {
                layer_key(spec["name"]): TemporalLayer(
                    kind=spec["kind"],
                    block=self.build_block(spec, options),
                    channels=spec["channels"],
                    alpha_init_logit=options["alpha_init_logit"],
                    context_channels=context_channels,
                )
                for spec in layer_specs
            }
        )

    @classmethod
    def build_block(cls, spec: dict[str, Any], options: dict[str, Any]) -> nn.Module:
        """The temporal block for one layer spec (B, C, T, H, W) -> (B, C, T, H, W)."""
        raise NotImplementedError

    @classmethod
    def specs_for(cls, backbone: nn.Module, options: dict[str, Any]) -> list[dict[str, Any]]:
        """One spec per temporal layer of `backbone`, in module order, for the adapter options `options`."""
        raise NotImplementedError

    def layer_names(self) -> list[str]:
        """The spatial module each temporal layer follows, in order."""
        return [spec["name"] for spec in self.config.layer_specs]

    def alphas(self) -> dict[str, float]:
        """The current alpha (weight of the spatial branch) of every temporal layer, by spatial module name."""
        return {
            name: torch.sigmoid(layer.blend.mix_logit).item()
            for name, layer in zip(self.layer_names(), self.layers.values(), strict=True)
        }

    def temporal_radius(self) -> int | None:
        """How many frames to either side can change an output frame: the sum of the layers' radii (their
        kernels and attention windows), an upper bound since the layers run one after another. None when some
        layer reaches the whole clip (a clip norm, or attention without a window)."""
        radius = 0
        for layer in self.layers.values():
            reach = layer.block.temporal_radius
            if reach is None:
                return None
            radius += reach
        return radius

    # ------------------------------------------------------------------ loading
    @classmethod
    def options_from_dir(cls, directory: str | Path) -> dict[str, Any]:
        """The saved config of an adapter folder, validated: unknown keys are an error, not silently dropped."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {cls.description} config at {path}")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
        if unknown:
            raise ValueError(f"{path}: unknown {cls.description} config keys {unknown}; expected a subset of {known}")
        if "layer_specs" not in config:
            raise ValueError(f"{path}: missing key 'layer_specs'")
        return {k: v for k, v in config.items() if k in known}

    @classmethod
    def load_onto(cls, backbone: nn.Module, directory: str | Path) -> TemporalAdapterBase:
        """Load the adapter saved in `directory` onto `backbone`'s layout; fail naming the first mismatch."""
        options = cls.options_from_dir(directory)
        saved_specs = options.pop("layer_specs")
        adapter = cls(layer_specs=cls.specs_for(backbone, options), **options)
        weights_path = Path(directory) / WEIGHTS_NAME
        if not weights_path.is_file():
            raise FileNotFoundError(f"no {cls.description} weights at {weights_path}")
        state = load_file(str(weights_path))
        adapter.check_layout(state, saved_specs, weights_path)
        adapter.load_state_dict(state, strict=True)
        return adapter

    def check_layout(self, state: dict[str, torch.Tensor], saved_specs: list[dict], path: Path) -> None:
        """Raise a ValueError naming the first temporal layer whose saved weights do not fit this backbone."""
        saved_names = [s["name"] for s in saved_specs]
        backbone_names = self.layer_names()
        for i, (saved, ours) in enumerate(zip(saved_names, backbone_names, strict=False)):
            if saved != ours:
                raise ValueError(
                    f"{path}: temporal layer #{i} was trained after {saved!r} but this backbone has {ours!r} "
                    "there; the adapter needs a backbone with the same block layout"
                )
        if len(saved_names) != len(backbone_names):
            raise ValueError(
                f"{path}: the adapter has {len(saved_names)} temporal layers, this backbone needs {len(backbone_names)}"
            )
        expected = self.state_dict()
        for key, tensor in expected.items():
            if key not in state:
                raise ValueError(f"{path}: missing temporal parameter {key!r} (shape {tuple(tensor.shape)})")
            if state[key].shape != tensor.shape:
                layer = key.split(".")[1].replace("-", ".") if key.startswith("layers.") else key
                raise ValueError(
                    f"{path}: temporal layer {layer!r} does not fit this backbone: parameter {key!r} was saved "
                    f"with shape {tuple(state[key].shape)}, the backbone needs {tuple(tensor.shape)}"
                )
        extra = sorted(set(state) - set(expected))
        if extra:
            raise ValueError(f"{path}: unexpected temporal parameters {extra[:5]}")

    def check_specs(self, backbone: nn.Module) -> None:
        """Raise a ValueError when this adapter was built for another block layout than `backbone`'s."""
        options = {k: v for k, v in self.config.items() if not k.startswith("_") and k != "layer_specs"}
        ours = self.specs_for(backbone, options)
        theirs = list(self.config.layer_specs)
        for mine, saved in zip(ours, theirs, strict=False):
            if mine != saved:
                raise ValueError(f"temporal layer {saved['name']!r} was built for {saved}, the backbone has {mine}")
        if len(ours) != len(theirs):
            raise ValueError(f"the adapter has {len(theirs)} temporal layers, this backbone needs {len(ours)}")


# The UNet's spatial modules a temporal layer follows: every ResNet block and transformer of its blocks.
_SPATIAL_NAME = re.compile(r"(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.(resnets|attentions)\.\d+")


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


def _temb_channels(layer_specs: list[dict[str, Any]]) -> int:
    """The one time-embedding width of the temporal residual blocks (a condition embedding is added to it)."""
    widths = {s["temb_channels"] for s in layer_specs if s.get("temb_channels")}
    if len(widths) != 1:
        raise ValueError(f"num_conditions needs residual blocks with one time-embedding width, found {sorted(widths)}")
    return widths.pop()


class TemporalAdapter(TemporalAdapterBase):
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
        temporal_norm: the temporal layers' GroupNorm statistics: "clip" (over all frames: the shipped model's)
            or "frame" (each frame on its own: layers local in time, for conv-in-time and chunked sampling).
        pooled_text_channels: D of the text states (B, L, D); when set, the mean of the text states scales and
            shifts the temporal residual blocks' normalised features (AdaGN; without it the prompt reaches the
            temporal layers only through the transformers' cross-attention).
            `from_image_unet(unet, pooled_text_channels=True)` takes the UNet's cross_attention_dim.
        num_conditions: a task condition (B,) in [0, num_conditions) -- the interpolation stage of PAPER.md
            section 5 -- through a zero-initialised embedding added to the time embedding the temporal residual
            blocks see (an untrained condition changes nothing); None: no condition (older folders).
        noise_correlation: not a layer: the initial noise's correlation across frames these layers are sampled
            with (`diffusion.noise.correlate_frames`; the pipelines' default, as `sample_size` is the UNet's).
        spatial_padding: "zeros", "circular" or "circular_continued": how the VideoUNet's spatial convolutions, the
            image UNet's included, pad (`temporal.padding`; the latter two for a world that wraps around its edges,
            "circular_continued" wrapping only the clips continued from given frames).
    """

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
        temporal_norm: str = "clip",
        pooled_text_channels: int | None = None,
        num_conditions: int | None = None,
        noise_correlation: float = 0.0,
        spatial_padding: str = "zeros",
    ) -> None:
        super().__init__()
        check_noise_correlation(noise_correlation)
        check_spatial_padding(spatial_padding)
        if tuple(kernel_size) not in ((3, 1, 1), (3, 3, 3), (1, 1, 1)):
            raise ValueError(f"kernel_size must be (3, 1, 1), (3, 3, 3) or (1, 1, 1), got {tuple(kernel_size)}")
        if temporal_norm not in NORMS:
            raise ValueError(f"temporal_norm must be one of {NORMS}, got {temporal_norm!r}")
        options = {
            "kernel_size": tuple(kernel_size),
            "position_encoding": position_encoding,
            "max_attention_distance": max_attention_distance,
            "cross_attention": cross_attention,
            "ff_mult": ff_mult,
            "alpha_init_logit": alpha_init_logit,
            "attention_chunk_size": attention_chunk_size,
            "temporal_norm": temporal_norm,
            "pooled_text_channels": pooled_text_channels,
        }
        self._build_layers(layer_specs, options, context_channels=context_channels if context_in_channels else None)
        self.context_encoder = None
        if context_in_channels:
            # One feature map per UNet resolution: as many as there are down blocks.
            levels = len({s["name"].split(".")[1] for s in layer_specs if s["name"].startswith("down_blocks.")})
            self.context_encoder = ContextEncoder(
                in_channels=context_in_channels, channels=context_channels, num_levels=max(levels, 1)
            )
        self.condition_embedding = None
        if num_conditions:
            self.condition_embedding = nn.Embedding(num_conditions, _temb_channels(layer_specs))
            nn.init.zeros_(self.condition_embedding.weight)

    @classmethod
    def specs_for(cls, backbone: nn.Module, options: dict[str, Any]) -> list[dict[str, Any]]:
        return temporal_layer_specs(backbone)

    @classmethod
    def build_block(cls, spec: dict[str, Any], options: dict[str, Any]) -> nn.Module:
        if spec["kind"] == "resnet":
            return TemporalResBlock(
                channels=spec["channels"],
                temb_channels=spec["temb_channels"],
                kernel_size=options["kernel_size"],
                num_groups=spec["num_groups"],
                norm=options["temporal_norm"],
                text_channels=options["pooled_text_channels"],
            )
        return TemporalTransformerBlock(
            channels=spec["channels"],
            num_heads=spec["num_heads"],
            cross_attention_dim=spec["cross_attention_dim"] if options["cross_attention"] else None,
            num_groups=spec["num_groups"],
            position_encoding=options["position_encoding"],
            max_attention_distance=options["max_attention_distance"],
            ff_mult=options["ff_mult"],
            attention_chunk_size=options["attention_chunk_size"],
            norm=options["temporal_norm"],
        )
