"""Reconstruction metrics for videos (B, C, T, H, W) in [-1, 1]: PSNR, SSIM and temporal flicker.

All are computed on the [0, 1] scale (x / 2 + 0.5) and returned per video, shape (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _unit(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 5:
        raise ValueError(f"expected videos (B, C, T, H, W), got shape {tuple(x.shape)}")
    return x.double().clamp(-1, 1) / 2 + 0.5


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB over each whole video (peak 1 on the [0, 1] scale): (B,)."""
    mse = (_unit(reconstruction) - _unit(target)).pow(2).mean(dim=(1, 2, 3, 4))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(reconstruction: torch.Tensor, target: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004; Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03), each frame and
    channel alone, averaged over each video: (B,). Frames smaller than the window use a window of their size."""
    x, y = _unit(reconstruction), _unit(target)
    b, c, t, h, w = x.shape
    size = min(window, h, w)
    kernel = _gaussian_window(size, sigma).to(x.device)[None, None]
    x, y = x.reshape(b * c * t, 1, h, w), y.reshape(b * c * t, 1, h, w)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel)  # "valid" windows, as the reference implementation

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.reshape(b, -1).mean(dim=1)


def temporal_flicker(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between the reconstructed and the true frame differences x[t+1] - x[t]: (B,).

    0 when the reconstruction changes from frame to frame exactly as the video does (a constant per-video
    error, such as a colour shift, does not count); needs T >= 2.
    """
    error, _ = _flicker_error(reconstruction, target)
    return error.mean(dim=(1, 2, 3, 4))


def static_flicker(reconstruction: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.02) -> torch.Tensor:
    """The part of `temporal_flicker` (B,) that comes from pixels the video does not change between two frames
    (every channel's |x[t+1] - x[t]| <= `threshold` on the [0, 1] scale): summed there, divided by all elements.

    An image decoder can flicker where nothing moves -- its global attention sees the moving object -- and a
    temporal decoder should remove that part first; the rest (flicker - static) sits where the video changes.
    """
    error, target_diff = _flicker_error(reconstruction, target)
    still = (target_diff.abs().amax(dim=1, keepdim=True) <= threshold).expand_as(error)
    return (error * still).mean(dim=(1, 2, 3, 4))


def _flicker_error(reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|reconstructed - true frame differences| and the true frame differences, (B, C, T-1, H, W), [0, 1] scale."""
    x, y = _unit(reconstruction), _unit(target)
    if x.shape[2] < 2:
        raise ValueError(f"temporal flicker needs at least 2 frames, got T={x.shape[2]}")
    target_diff = y.diff(dim=2)
    return (x.diff(dim=2) - target_diff).abs(), target_diff
