"""The temporal ("alignment") layers of Video LDM (PAPER.md section 2).

Layout convention, stated once for the whole package: a video tensor is (B, C, T, H, W) -- batch, channels,
frames, height, width. Spatial layers see the frames as a batch, (B*T, C, H, W) with the frame index
varying fastest; temporal layers see (B, C, T, H, W), or (B*H*W, T, C) tokens for attention.

Every temporal layer is a residual branch whose output projection is zero-initialised, so a freshly
inserted layer is the identity and the video model reproduces the image model frame by frame.

Locality in time. A temporal layer's GroupNorm either normalises over the whole clip, (C/groups, T, H, W)
("clip", Stable Video Diffusion's and the first shipped model's choice), or over each frame on its own,
(C/groups, H, W) ("frame"). Only with "frame" norms does a layer reach no further in time than its kernel or
attention window -- its `temporal_radius` -- so that chunks of a long video (conv-in-time, chunked decoding and
upsampling, PAPER.md sections 3 and 7) give the frames that one pass over the whole video gives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def frames_to_video(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    bt, c, h, w = x.shape
    return x.reshape(bt // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)


def video_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly negative) positions: (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def group_count(channels: int, preferred: int = 32) -> int:
    """The largest group count <= `preferred` that divides `channels` (GroupNorm is not hard-wired to 32)."""
    for groups in range(min(preferred, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


NORMS = ("clip", "frame")


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: (B, C, T, H, W) normalised over (C/groups, H, W) per frame.

    Same parameters (and names) as `nn.GroupNorm`; only the statistics change, so a frame's output does not
    depend on the other frames of the clip. 4-D inputs (frames) are normalised as by `nn.GroupNorm`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        out = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
        return out.reshape(b, t, c, h, w).transpose(1, 2)


def temporal_group_norm(norm: str, channels: int, num_groups: int, eps: float = 1e-6) -> nn.GroupNorm:
    """The GroupNorm of a temporal layer: over the clip ("clip") or over each frame ("frame")."""
    if norm not in NORMS:
        raise ValueError(f"temporal_norm must be one of {NORMS}, got {norm!r}")
    cls = FrameGroupNorm if norm == "frame" else nn.GroupNorm
    return cls(group_count(channels, num_groups), channels, eps=eps)


class AlphaBlender(nn.Module):
    """Blend a spatial and a temporal output with one learned scalar: alpha * spatial + (1 - alpha) * temporal.

    alpha = sigmoid(logit). `image_only_indicator` (B, T), where true, forces alpha = 1 for that frame, so
    images and videos can share a batch and images see the image model exactly.
    """

    def __init__(self, *, alpha_init_logit: float = 0.5) -> None:
        super().__init__()
        self.mix_logit = nn.Parameter(torch.tensor(float(alpha_init_logit)))

    def alpha(self, image_only_indicator: torch.Tensor | None, force_spatial: bool = False) -> torch.Tensor:
        """The blend factor: a scalar, or (B*T,) when `image_only_indicator` (B, T) is given."""
        alpha = torch.sigmoid(self.mix_logit)
        if force_spatial:
            return torch.ones_like(alpha)
        if image_only_indicator is None:
            return alpha
        flat = image_only_indicator.reshape(-1).bool()
        return torch.where(flat, torch.ones_like(alpha), alpha)

    def forward(
        self,
        spatial: torch.Tensor,
        temporal: torch.Tensor,
        *,
        image_only_indicator: torch.Tensor | None = None,
        force_spatial: bool = False,
    ) -> torch.Tensor:
        """Blend two tensors of one shape, frame-major: (B*T, ...) or (B, T, ...)."""
        alpha = self.alpha(image_only_indicator, force_spatial)
        if alpha.ndim == 1:  # (B*T,): one alpha per frame
            lead = spatial.shape[:1] if alpha.numel() == spatial.shape[0] else spatial.shape[:2]
            alpha = alpha.reshape(*lead, *([1] * (spatial.ndim - len(lead))))
        # lerp(s, t, 1 - alpha) = alpha * s + (1 - alpha) * t in one pass over memory (the formula took three)
        return torch.lerp(spatial, temporal, (1.0 - alpha).to(spatial.dtype))

    def blend_frames(
        self,
        frames: torch.Tensor,
        temporal: torch.Tensor,
        *,
        image_only_indicator: torch.Tensor | None = None,
        force_spatial: bool = False,
    ) -> torch.Tensor:
        """frames: (B*T, C, H, W), a spatial layer's output; temporal: (B, C, T, H, W), its temporal twin's.
        Returns the blend as (B*T, C, H, W), in the frames' layout: `temporal` is read through a transposed view,
        so no copy between the two layouts is made."""
        b, _, t = temporal.shape[:3]
        out = self(
            frames.unflatten(0, (b, t)),
            temporal.transpose(1, 2),
            image_only_indicator=image_only_indicator,
            force_spatial=force_spatial,
        )
        return out.flatten(0, 1)


class TemporalResBlock(nn.Module):
    """A residual block of 3D convolutions over (B, C, T, H, W), given the diffusion-time embedding.

    Kernel (3, 1, 1) mixes frames only; (3, 3, 3) mixes space too. The last convolution is zero-initialised,
    so a fresh block returns its input. An optional `context` feature map (B, C, T, H, W) enters the residual
    branch beside the time embedding (the prediction / interpolation conditioning of PAPER.md section 4).
    `norm`: "clip" or "frame" statistics (see the module docstring). With `text_channels`, a pooled text
    embedding (B, D) scales and shifts the normalised features before the second convolution (AdaGN, as in
    guided diffusion), so the block that can move features (a (3, 3, 3) kernel shifts them by a pixel per frame)
    is told by the prompt which of its shifts to switch on. Scale-shift after the norm, not a bias before it:
    a per-clip bias constant over (T, H, W) is mostly removed again by the group norm that follows it.
    The projection is zero-initialised, so a fresh block ignores the text until it learns to use it.
    """

    def __init__(
        self,
        *,
        channels: int,
        temb_channels: int | None,
        kernel_size: tuple[int, int, int] = (3, 1, 1),
        num_groups: int = 32,
        norm: str = "clip",
        text_channels: int | None = None,
        dropout: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.norm1 = temporal_group_norm(norm, channels, num_groups, eps)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size, padding=padding)
        self.time_emb_proj = nn.Linear(temb_channels, channels) if temb_channels else None
        self.text_proj = nn.Linear(text_channels, 2 * channels) if text_channels else None
        if self.text_proj is not None:
            nn.init.zeros_(self.text_proj.weight)
            nn.init.zeros_(self.text_proj.bias)
        self.norm2 = temporal_group_norm(norm, channels, num_groups, eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size, padding=padding)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        # Two convolutions, each reaching kernel // 2 frames to either side; a clip norm reaches every frame.
        self.temporal_radius: int | None = 2 * (kernel_size[0] // 2) if norm == "frame" else None

    def forward(
        self,
        x: torch.Tensor,
        *,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, C, T, H, W); temb: (B, T, D) per-frame time embedding; context: (B, C, T, H, W);
        text: (B, D') pooled text embedding (used when the block has `text_proj`)."""
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None and self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb)).permute(0, 2, 1)[..., None, None]
        if context is not None:
            h = h + context
        h = self.norm2(h)
        if text is not None and self.text_proj is not None:
            scale, shift = self.text_proj(F.silu(text))[:, :, None, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return x + h


class TemporalConvOut(nn.Module):
    """A residual temporal convolution on decoded frames (B, 3, T, H, W), zero-initialised (no norm)."""

    def __init__(self, *, channels: int, kernel_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size, padding=tuple(k // 2 for k in kernel_size))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.temporal_radius: int | None = kernel_size[0] // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)
