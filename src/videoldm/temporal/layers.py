"""The temporal ("alignment") layers of Video LDM (PAPER.md section 2).

Layout convention, stated once for the whole package: a video tensor is (B, C, T, H, W) -- batch, channels,
frames, height, width. Spatial layers see the frames as a batch, (B*T, C, H, W) with the frame index
varying fastest; temporal layers see (B, C, T, H, W), or (B*H*W, T, C) tokens for attention.

Every temporal layer is a residual branch whose output projection is zero-initialised, so a freshly
inserted layer is the identity and the video model reproduces the image model frame by frame.
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
    """

    def __init__(
        self,
        *,
        channels: int,
        temb_channels: int | None,
        kernel_size: tuple[int, int, int] = (3, 1, 1),
        num_groups: int = 32,
        dropout: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        groups = group_count(channels, num_groups)
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size, padding=padding)
        self.time_emb_proj = nn.Linear(temb_channels, channels) if temb_channels else None
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size, padding=padding)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, C, T, H, W); temb: (B, T, D) per-frame time embedding; context: (B, C, T, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None and self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb)).permute(0, 2, 1)[..., None, None]
        if context is not None:
            h = h + context
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class TemporalAttention(nn.Module):
    """Multi-head attention over frames with PyTorch SDPA; the token batch (B*H*W) is processed in chunks."""

    def __init__(
        self, *, dim: int, num_heads: int, cross_attention_dim: int | None = None, chunk_size: int = 16384
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.chunk_size = chunk_size
        kv_dim = cross_attention_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        return x.reshape(n, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        *,
        encoder_hidden_states: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention over frames, or cross-attention to per-sample text.

        x: (N, T, dim) with N = B * H * W tokens, sample-major. Self-attention: the N axis is processed in
        chunks of `chunk_size`, so memory stays bounded for any resolution. Cross-attention:
        encoder_hidden_states (B, L, D); since tokens do not interact there, each sample's H*W*T queries
        attend to its text in one call, with keys and values computed once per sample.
        attn_bias: (heads or 1, T, T) additive, self-attention only.
        """
        if encoder_hidden_states is not None:
            return self.to_out(self._cross(x, encoder_hidden_states))
        out = [self._self(x[i : i + self.chunk_size], attn_bias) for i in range(0, x.shape[0], self.chunk_size)]
        return self.to_out(torch.cat(out) if len(out) > 1 else out[0])

    def _self(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(x)), self._heads(self.to_v(x))
        mask = None if attn_bias is None else attn_bias.to(q.dtype)
        if _short_on_cpu(q):
            return self._merge(_matmul_attention(q, k, v, mask))
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def _cross(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        n, t, dim = x.shape
        b = text.shape[0]
        q = self._heads(self.to_q(x).reshape(b, (n // b) * t, dim))
        k, v = self._heads(self.to_k(text)), self._heads(self.to_v(text))
        return self._merge(F.scaled_dot_product_attention(q, k, v)).reshape(n, t, dim)

    @staticmethod
    def _merge(out: torch.Tensor) -> torch.Tensor:
        n, heads, length, head_dim = out.shape
        return out.transpose(1, 2).reshape(n, length, heads * head_dim)


# Attention over a few frames per token is a huge batch of tiny problems. PyTorch's CPU SDPA kernels ran such
# batches 1.6-3x slower in bf16/fp16 and ~2x slower in fp32 than two batched matmuls and a softmax (T = 8, 8 heads
# of 40-160 channels; docs/benchmarks.md); on GPUs SDPA stays.
SHORT_SEQUENCE = 16


def _short_on_cpu(q: torch.Tensor) -> bool:
    return q.device.type == "cpu" and q.shape[-2] <= SHORT_SEQUENCE


def _matmul_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v for (N, heads, T, d) tensors, the softmax in float32 (as SDPA's)."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores + mask
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


class FeedForward(nn.Module):
    """GEGLU feed-forward, as in Stable Diffusion's transformer blocks."""

    def __init__(self, *, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.proj_in = nn.Linear(dim, inner * 2)
        self.proj_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(hidden * F.gelu(gate))


class FramePositions(nn.Module):
    """Frame-position information for temporal attention, for any number of frames (no fixed buffer).

    "absolute": sinusoid(frame index) -> MLP, added to the tokens. "relative": sinusoid(i - j) -> MLP ->
    one additive attention bias per head, so the layer depends only on frame distances and can run
    "convolutionally in time" (PAPER.md section 7). `max_attention_distance` masks pairs further apart.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mode: str = "absolute",
        max_attention_distance: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("absolute", "relative"):
            raise ValueError(f"position_encoding must be 'absolute' or 'relative', got {mode!r}")
        if max_attention_distance is not None and max_attention_distance < 0:
            raise ValueError(f"max_attention_distance must be >= 0, got {max_attention_distance}")
        self.mode = mode
        self.dim = dim
        self.max_attention_distance = max_attention_distance
        out = dim if mode == "absolute" else num_heads
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, out))

    def token_embedding(self, num_frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """(T, dim) to add to the tokens, or None in relative mode."""
        if self.mode != "absolute":
            return None
        idx = torch.arange(num_frames, device=device)
        return self.mlp(sinusoidal_embedding(idx, self.dim).to(dtype))

    def attention_bias(self, num_frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """(heads or 1, T, T) additive bias (relative positions and/or the distance mask), or None."""
        idx = torch.arange(num_frames, device=device)
        distance = idx[:, None] - idx[None, :]
        bias = None
        if self.mode == "relative":
            rel = self.mlp(sinusoidal_embedding(distance.reshape(-1), self.dim).to(dtype))
            bias = rel.reshape(num_frames, num_frames, -1).permute(2, 0, 1)
        if self.max_attention_distance is not None:
            far = distance.abs() > self.max_attention_distance
            mask = torch.zeros(1, num_frames, num_frames, device=device, dtype=dtype)
            mask = mask.masked_fill(far, float("-inf"))
            bias = mask if bias is None else bias + mask
        return bias


class TemporalTransformerBlock(nn.Module):
    """Attention over frames for (B, C, T, H, W) features, as a residual branch with a zero-initialised output.

    Tokens are (B*H*W, T, C): norm -> linear in -> + frame positions (+ context) -> self-attention over
    frames -> optional cross-attention to the text -> feed-forward -> linear out (zero-init) -> + input.
    """

    def __init__(
        self,
        *,
        channels: int,
        num_heads: int,
        cross_attention_dim: int | None = None,
        num_groups: int = 32,
        position_encoding: str = "absolute",
        max_attention_distance: int | None = None,
        ff_mult: int = 4,
        attention_chunk_size: int = 16384,
    ) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(group_count(channels, num_groups), channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.positions = FramePositions(
            dim=channels,
            num_heads=num_heads,
            mode=position_encoding,
            max_attention_distance=max_attention_distance,
        )
        self.norm_self = nn.LayerNorm(channels)
        self.self_attn = TemporalAttention(dim=channels, num_heads=num_heads, chunk_size=attention_chunk_size)
        self.cross_attn = None
        if cross_attention_dim is not None:
            self.norm_cross = nn.LayerNorm(channels)
            self.cross_attn = TemporalAttention(
                dim=channels,
                num_heads=num_heads,
                cross_attention_dim=cross_attention_dim,
                chunk_size=attention_chunk_size,
            )
        self.norm_ff = nn.LayerNorm(channels)
        self.ff = FeedForward(dim=channels, mult=ff_mult)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        encoder_hidden_states: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, C, T, H, W); encoder_hidden_states: (B, L, D); context: (B, C, T, H, W). Returns x's shape."""
        b, c, t, h, w = x.shape
        tokens = self.norm(x)
        if context is not None:
            tokens = tokens + context
        tokens = tokens.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)
        tokens = self.proj_in(tokens)
        pos = self.positions.token_embedding(t, x.device, tokens.dtype)
        if pos is not None:
            tokens = tokens + pos
        bias = self.positions.attention_bias(t, x.device, tokens.dtype)
        tokens = tokens + self.self_attn(self.norm_self(tokens), attn_bias=bias)
        if self.cross_attn is not None and encoder_hidden_states is not None:
            tokens = tokens + self.cross_attn(self.norm_cross(tokens), encoder_hidden_states=encoder_hidden_states)
        tokens = tokens + self.ff(self.norm_ff(tokens))
        out = self.proj_out(tokens).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return x + out
