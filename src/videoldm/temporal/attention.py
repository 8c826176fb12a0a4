"""Temporal attention: attention over the frames of each pixel (PAPER.md section 2), with frame positions.

Tokens are (B*H*W, T, C): every spatial position of every clip attends over its T frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videoldm.temporal.layers import sinusoidal_embedding, temporal_group_norm


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
    `norm`: the GroupNorm's statistics, "clip" or "frame" (`videoldm.temporal.layers`).
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
        norm: str = "clip",
    ) -> None:
        super().__init__()
        self.norm = temporal_group_norm(norm, channels, num_groups)
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
        # How far in time this block reaches: its attention window, if it has one and its norm is per frame.
        local = norm == "frame" and max_attention_distance is not None
        self.temporal_radius: int | None = max_attention_distance if local else None

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
