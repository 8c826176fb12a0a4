"""Matched UNet configurations and builders for VideoUNet, diffusers' SVD UNet and AnimateDiff's UNetMotionModel.

"Matched" means: the same block widths, layers per block, attention heads, cross-attention width, GroupNorm
groups, frames, latent resolution and batch. Each family keeps its own temporal design (that is what is being
compared): VideoUNet adds a temporal 3D-conv ResBlock after every spatial ResBlock and a temporal transformer
(self- + cross-attention) after every spatial transformer; SVD does the same with its own blocks; AnimateDiff adds
one motion module (temporal self-attention only) per layer. Input layouts differ: VideoUNet and UNetMotionModel
take (B, C, T, H, W) (the latter's docstring says (B, T, C, H, W) but its code permutes from (B, C, T, H, W)); the
SVD UNet takes (B, T, C, H, W) plus `added_time_ids` (B, 3); UNetMotionModel wants the text already repeated per
frame, (B*T, L, D).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel, UNetSpatioTemporalConditionModel
from torch import nn

from videoldm import VideoUNet

MODELS = ("videoldm", "svd", "animatediff")


@dataclass(frozen=True)
class UNetConfig:
    name: str
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    num_heads: int
    cross_attention_dim: int
    frames: int
    latent: int
    batch: int = 1
    text_tokens: int = 77
    norm_num_groups: int = 32  # SVD's temporal ResBlock hard-wires 32 groups, so all use 32

    def describe(self) -> str:
        return (
            f"widths {self.block_out_channels}, {self.layers_per_block} layers/block, {self.num_heads} heads, "
            f"text {self.text_tokens}x{self.cross_attention_dim}; B={self.batch}, T={self.frames}, "
            f"latents 4x{self.latent}x{self.latent}"
        )


CONFIGS = {
    "tiny": UNetConfig("tiny", (32, 64), 1, 2, 32, frames=4, latent=8, text_tokens=8),
    "mid": UNetConfig("mid", (64, 128, 256), 2, 4, 256, frames=8, latent=16, text_tokens=16),
    # Stable Diffusion 1.5 widths at a small latent: 16 x 16 (128 px), 8 frames.
    "sd": UNetConfig("sd", (320, 640, 1280, 1280), 2, 8, 768, frames=8, latent=16),
}

# The real Stable Diffusion 1.5 UNet config (unet/config.json of runwayml/stable-diffusion-v1-5), written out.
SD15_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}


def _block_types(n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    return down, ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)


def image_unet(cfg: UNetConfig) -> UNet2DConditionModel:
    """The SD-style image UNet at `cfg` (attention_head_dim acts as the head count, as in SD 1.5's config)."""
    down, up = _block_types(len(cfg.block_out_channels))
    return UNet2DConditionModel(
        sample_size=cfg.latent,
        in_channels=4,
        out_channels=4,
        block_out_channels=cfg.block_out_channels,
        down_block_types=down,
        up_block_types=up,
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.num_heads,
        norm_num_groups=cfg.norm_num_groups,
    )


def svd_unet(cfg: UNetConfig) -> UNetSpatioTemporalConditionModel:
    n = len(cfg.block_out_channels)
    down = ("CrossAttnDownBlockSpatioTemporal",) * (n - 1) + ("DownBlockSpatioTemporal",)
    up = ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * (n - 1)
    time_dim = min(256, cfg.block_out_channels[0])
    return UNetSpatioTemporalConditionModel(
        sample_size=cfg.latent,
        in_channels=4,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=cfg.block_out_channels,
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=3 * time_dim,
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        num_attention_heads=(cfg.num_heads,) * n,
        num_frames=cfg.frames,
    )


def motion_unet(cfg: UNetConfig) -> UNetMotionModel:
    adapter = MotionAdapter(
        block_out_channels=cfg.block_out_channels,
        motion_layers_per_block=cfg.layers_per_block,
        motion_num_attention_heads=cfg.num_heads,
        motion_norm_num_groups=cfg.norm_num_groups,
        motion_max_seq_length=32,
        use_motion_mid_block=True,
    )
    return UNetMotionModel.from_unet2d(image_unet(cfg), adapter)


def build(model: str, cfg: UNetConfig, *, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if model == "videoldm":
        return VideoUNet.from_image_unet(image_unet(cfg))
    if model == "svd":
        return svd_unet(cfg)
    if model == "animatediff":
        return motion_unet(cfg)
    raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")


def inputs(model: str, cfg: UNetConfig, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Keyword inputs for one forward of `model`: noisy latents in its layout, one timestep per clip, text."""
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(cfg.batch, 4, cfg.frames, cfg.latent, cfg.latent, generator=g)  # (B, C, T, H, W)
    text = torch.randn(cfg.batch, cfg.text_tokens, cfg.cross_attention_dim, generator=g)
    timestep = torch.randint(0, 1000, (cfg.batch,), generator=g)
    if model == "svd":
        added = torch.tensor([[7.0, 127.0, 0.02]]).expand(cfg.batch, 3)  # fps id, motion bucket, noise aug
        return {
            "sample": sample.permute(0, 2, 1, 3, 4).contiguous(),  # (B, T, C, H, W)
            "timestep": timestep,
            "encoder_hidden_states": text,
            "added_time_ids": added,
        }
    if model == "animatediff":
        # UNetMotionModel does not repeat the text per frame (its pipeline does): (B*T, L, D), frame fastest.
        text = text.repeat_interleave(cfg.frames, dim=0)
    return {"sample": sample, "timestep": timestep, "encoder_hidden_states": text}


_SVD_TEMPORAL = re.compile(r"temporal_|time_mixer|time_pos_embed")


def set_trainable(model: str, net: nn.Module, mode: str) -> Iterator[nn.Parameter]:
    """mode "temporal": only the temporal layers train (each family's own API where it has one); "full": all."""
    if mode == "full":
        net.requires_grad_(True)
    elif mode != "temporal":
        raise ValueError(f"mode must be 'temporal' or 'full', got {mode!r}")
    elif model == "videoldm":
        net.freeze_spatial()
    elif model == "animatediff":
        net.freeze_unet2d_params()
    else:
        for name, p in net.named_parameters():
            p.requires_grad_(bool(_SVD_TEMPORAL.search(name)))
    return (p for p in net.parameters() if p.requires_grad)


def parameter_counts(model: str, net: nn.Module) -> dict[str, int]:
    """Total and temporal parameter counts (temporal = what set_trainable(..., "temporal") trains)."""
    total = sum(p.numel() for p in net.parameters())
    temporal = sum(p.numel() for p in set_trainable(model, net, "temporal"))
    net.requires_grad_(True)
    return {"params_total": total, "params_temporal": temporal, "params_spatial": total - temporal}


def output(net: nn.Module, kwargs: dict[str, torch.Tensor]) -> torch.Tensor:
    out = net(**kwargs)
    return out.sample if hasattr(out, "sample") else out[0]
