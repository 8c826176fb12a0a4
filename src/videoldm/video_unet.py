"""VideoUNet: a diffusers image UNet with temporal layers after its spatial blocks (PAPER.md section 2).

The image UNet is kept untouched as `video_unet.unet` -- its parameters keep their exact diffusers names and
values, and any `UNet2DConditionModel` config works -- and the temporal layers live in `video_unet.temporal`
(a `TemporalAdapter`). The hooks of `videoldm.temporal.hooks.VideoBackbone` apply each temporal layer right
after its spatial twin and blend the two with the layer's learned alpha. Outside a VideoUNet forward the hooks
do nothing, so `video_unet.unet` still runs as the image model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.utils import BaseOutput

from videoldm.diffusion.noise import check_noise_correlation
from videoldm.layout import TEMPORAL, UNET
from videoldm.temporal import padding
from videoldm.temporal.adapter import TemporalAdapter, temporal_layer_specs
from videoldm.temporal.hooks import FrameState, VideoBackbone
from videoldm.temporal.layers import frames_to_video, video_to_frames


@dataclass
class UNetFrameState(FrameState):
    """`FrameState` plus the task condition: its embedding (B*T, D), added to the time embedding that the temporal
    residual blocks see (`TemporalAdapter.num_conditions`; the spatial blocks never see it)."""

    condition: torch.Tensor | None = None


@dataclass
class VideoUNetOutput(BaseOutput):
    """sample: (B, C_out, T, H, W)."""

    sample: torch.Tensor


class VideoUNet(VideoBackbone):
    """An image `UNet2DConditionModel` plus temporal layers, run on videos (B, C, T, H, W).

    Build with `VideoUNet.from_image_unet(image_unet, **temporal_config)` (fresh, zero-initialised temporal
    layers: the model equals the image UNet frame by frame) or `from_image_unet(image_unet, temporal=dir)`
    (trained temporal layers onto this backbone). Freezing, gradient checkpointing, alphas and
    `save_temporal` come from `VideoBackbone`.
    """

    unet: UNet2DConditionModel
    temporal: TemporalAdapter | None

    def __init__(self, unet: UNet2DConditionModel, temporal: TemporalAdapter | None) -> None:
        # temporal None: the image UNet alone on videos (an image upsampler before its temporal layers)
        super().__init__(backbone_name=UNET, backbone=unet, temporal=temporal)
        if self.spatial_padding != "zeros":
            self._install_padding()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_image_unet(
        cls, unet: UNet2DConditionModel, *, temporal: str | Path | None = None, **temporal_config: Any
    ) -> VideoUNet:
        """Wrap `unet`. With `temporal=dir`, load the temporal layers saved there (no other options allowed);
        otherwise build fresh ones from `temporal_config` (see `TemporalAdapter` for the options)."""
        if temporal is not None:
            if temporal_config:
                raise TypeError(f"pass either temporal=DIR or temporal options, not both: {sorted(temporal_config)}")
            adapter = TemporalAdapter.load_onto(unet, temporal)
        else:
            if temporal_config.get("context_in_channels") is True:
                temporal_config["context_in_channels"] = unet.config.out_channels + 1
            if temporal_config.get("pooled_text_channels") is True:
                temporal_config["pooled_text_channels"] = unet.config.cross_attention_dim
            adapter = TemporalAdapter(layer_specs=temporal_layer_specs(unet), **temporal_config)
        if (unet.device, unet.dtype) != (adapter.device, adapter.dtype):
            adapter = adapter.to(device=unet.device, dtype=unet.dtype)
        return cls(unet, adapter)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **unet_kwargs: Any) -> VideoUNet:
        """Load a folder written by `save_pretrained`: `unet/` (diffusers image UNet) and `temporal/`."""
        directory = Path(directory)
        for sub in (UNET, TEMPORAL):
            if not (directory / sub).is_dir():
                raise FileNotFoundError(f"{directory} has no {sub}/ folder (expected {UNET}/ and {TEMPORAL}/)")
        unet = UNet2DConditionModel.from_pretrained(directory / UNET, local_files_only=True, **unet_kwargs)
        return cls.from_image_unet(unet, temporal=directory / TEMPORAL)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `unet/` (the image UNet, unchanged diffusers layout) and `temporal/` (the adapter)."""
        directory = Path(directory)
        self.unet.save_pretrained(directory / UNET)
        self.save_temporal(directory / TEMPORAL)

    @property
    def config(self) -> Any:
        """The image UNet's config (in_channels, sample_size, ...), as pipelines expect of a UNet."""
        return self.unet.config

    @property
    def noise_correlation(self) -> float:
        """The initial noise's correlation across frames the temporal layers are sampled with (0: none)."""
        return 0.0 if self.temporal is None else float(self.temporal.config.get("noise_correlation", 0.0))

    @noise_correlation.setter
    def noise_correlation(self, value: float) -> None:
        """Sample with another prior (`videoldm generate --noise-correlation`); saved with the layers' config."""
        if self.temporal is None:
            raise ValueError("noise_correlation: this model has no temporal layers")
        self.temporal.register_to_config(noise_correlation=check_noise_correlation(value))

    @property
    def spatial_padding(self) -> str:
        """How the spatial convolutions pad: "zeros", "circular" or "circular_continued" (`temporal.padding`)."""
        return "zeros" if self.temporal is None else self.temporal.config.get("spatial_padding", "zeros")

    @spatial_padding.setter
    def spatial_padding(self, value: str) -> None:
        """Switch from zero padding to a wrapping one (`model.spatial_padding` of a training run); saved with the
        layers' config. The image UNet's convolutions gain padding hooks in place; each VideoUNet sharing it (the
        stack's interpolation) sets them for its own forward."""
        if padding.check_spatial_padding(value) == self.spatial_padding:
            return
        if self.temporal is None or value == "zeros":
            raise ValueError(f"spatial_padding: cannot switch {self.spatial_padding!r} to {value!r}")
        self.temporal.register_to_config(spatial_padding=value)
        self._install_padding()

    def _install_padding(self) -> None:
        padding.install(self.unet)
        padding.install(self.temporal)

    def _wraps(self, context: torch.Tensor | None) -> padding.Wraps:
        """Which videos of this forward's batch wrap (`temporal.padding`): none, all, or those continued from at
        least one given frame (the context's mask channel)."""
        mode = self.spatial_padding
        if mode == "circular_continued" and context is not None:
            return context[:, -1].flatten(1).any(1)
        return mode == "circular"

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        *,
        temporal_encoder_hidden_states: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
        image_only_indicator: torch.Tensor | None = None,
        image_only: bool = False,
        class_labels: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> VideoUNetOutput | tuple[torch.Tensor]:
        """Denoise a batch of videos.

        Args:
            sample: (B, C_in, T, H, W) noisy latents (C_in includes any extra input channels of the UNet).
            timestep: scalar or (B,): one noise level per clip.
            encoder_hidden_states: (B, L, D) text states, shared by all frames of a clip.
            temporal_encoder_hidden_states: (B, L, D) text states for the temporal layers alone (default: the
                same as the spatial layers'); motion guidance gives them the negative prompt in one branch.
            context: (B, C_out + 1, T, H, W) = (mask * clean latents, mask) for prediction / interpolation.
            condition: (B,) long task condition in [0, num_conditions) (the interpolation stage, PAPER.md
                section 5); needs a temporal adapter built with `num_conditions`.
            image_only_indicator: (B, T) bool/0-1; where set, alpha = 1 (that frame sees the image model).
            image_only: alpha = 1 everywhere and the temporal layers are skipped (the image-model baseline).
            class_labels: (B,) passed to the image UNet (e.g. the x4 upscaler's noise level).
            added_cond_kwargs: per-clip tensors (B, ...) passed to the image UNet.
        Returns:
            `VideoUNetOutput` with sample (B, C_out, T, H, W), or a 1-tuple when return_dict is False.
        """
        self._check_inputs(sample, encoder_hidden_states, context, image_only_indicator)
        if temporal_encoder_hidden_states is not None:
            self._check_inputs(sample, temporal_encoder_hidden_states, None, None)
        b, _, t, _, _ = sample.shape
        wraps = self._wraps(context)
        padding.set_wraps(self.unet, wraps)  # the image UNet may be shared: each VideoUNet sets it for its forward
        if self.temporal is not None:
            padding.set_wraps(self.temporal, wraps)
        per_frame = _FramesRepeat(b, t)
        state = UNetFrameState(
            num_frames=t,
            text=encoder_hidden_states if temporal_encoder_hidden_states is None else temporal_encoder_hidden_states,
            context=self._encode_context(context),
            image_only_indicator=image_only_indicator,
            condition=per_frame(self._embed_condition(condition, b)),
        )
        with self.frames(None if image_only else state):
            out = self.unet(
                video_to_frames(sample),
                per_frame.timestep(timestep, sample.device),
                encoder_hidden_states=per_frame(encoder_hidden_states),
                class_labels=per_frame(class_labels),
                added_cond_kwargs=per_frame.each(added_cond_kwargs),
                cross_attention_kwargs=cross_attention_kwargs,
                return_dict=False,
            )[0]
        video = frames_to_video(out, t)
        return VideoUNetOutput(sample=video) if return_dict else (video,)

    def run_temporal_layer(
        self, key: str, hidden: torch.Tensor, temb: torch.Tensor | None, state: FrameState
    ) -> torch.Tensor:
        """`VideoBackbone.run_temporal_layer` with the task condition's embedding added to the time embedding
        (B*T, D) of the temporal residual blocks (the layers given one)."""
        condition = getattr(state, "condition", None)
        if condition is not None and temb is not None:
            temb = temb + condition.to(temb.dtype)
        return super().run_temporal_layer(key, hidden, temb, state)

    def _embed_condition(self, condition: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """(B,) long -> (B, D) condition embeddings, checked against the adapter."""
        if condition is None:
            return None
        embedding = None if self.temporal is None else self.temporal.condition_embedding
        if embedding is None:
            raise ValueError(
                "condition was given but this VideoUNet's temporal layers take none; build it with "
                "from_image_unet(unet, num_conditions=N)"
            )
        condition = torch.as_tensor(condition, device=self.device)
        if condition.ndim == 0:
            condition = condition.expand(batch)
        if tuple(condition.shape) != (batch,) or condition.is_floating_point():
            raise ValueError(f"condition must be an integer scalar or (B,) = ({batch},); got {tuple(condition.shape)}")
        if condition.min() < 0 or condition.max() >= embedding.num_embeddings:
            raise ValueError(f"condition must be in [0, {embedding.num_embeddings}); got {condition.tolist()}")
        return embedding(condition.long()).to(self.dtype)

    def _encode_context(self, context: torch.Tensor | None) -> dict[tuple[int, int], torch.Tensor] | None:
        if context is None:
            return None
        if self.temporal.context_encoder is None:
            raise ValueError(
                "context was given but this VideoUNet has no context encoder; build it with "
                "from_image_unet(unet, context_in_channels=True)"
            )
        return self.temporal.context_encoder(context.to(self.dtype))

    def _check_inputs(
        self,
        sample: torch.Tensor,
        text: torch.Tensor | None,
        context: torch.Tensor | None,
        image_only_indicator: torch.Tensor | None,
    ) -> None:
        if sample.ndim != 5:
            raise ValueError(
                f"sample must be a video (B, C, T, H, W); got a tensor of rank {sample.ndim}: {tuple(sample.shape)}"
            )
        b, c, t, h, w = sample.shape
        if c != self.unet.config.in_channels:
            raise ValueError(
                f"sample has {c} channels, the image UNet expects in_channels={self.unet.config.in_channels}"
            )
        if text is not None and (text.ndim != 3 or text.shape[0] != b):
            raise ValueError(f"encoder_hidden_states must be (B={b}, L, D); got {tuple(text.shape)}")
        if image_only_indicator is not None and tuple(image_only_indicator.shape) != (b, t):
            raise ValueError(
                f"image_only_indicator must be (B, T) = ({b}, {t}); got {tuple(image_only_indicator.shape)}"
            )
        if context is not None:
            expected = self.temporal.config.context_in_channels
            if context.ndim != 5 or tuple(context.shape) != (b, expected or context.shape[1], t, h, w):
                raise ValueError(
                    f"context must be (B, C+1, T, H, W) = ({b}, {expected}, {t}, {h}, {w}); got {tuple(context.shape)}"
                )


class _FramesRepeat:
    """Repeats per-clip inputs (B, ...) to per-frame inputs (B*T, ...), frame index fastest."""

    def __init__(self, batch: int, num_frames: int) -> None:
        self.batch = batch
        self.num_frames = num_frames

    def __call__(self, x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.repeat_interleave(self.num_frames, dim=0)

    def each(self, kwargs: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        if kwargs is None:
            return None
        return {k: self(v) if torch.is_tensor(v) else v for k, v in kwargs.items()}

    def timestep(self, timestep: torch.Tensor | float | int, device: torch.device) -> torch.Tensor:
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0:
            t = t.expand(self.batch)
        if t.shape != (self.batch,):
            raise ValueError(f"timestep must be a scalar or (B,) = ({self.batch},); got {tuple(t.shape)}")
        return t.repeat_interleave(self.num_frames)
