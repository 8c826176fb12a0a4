"""The Fréchet distance between two Gaussians, the core of FID and FVD.

d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2}), computed in float64 with
`scipy.linalg.sqrtm` exactly as pytorch-fid does (the implementation FID and FVD numbers are usually
reported with): a non-finite square root (singular product) is retried with eps * I added to both
covariances, and the tiny imaginary part that sqrtm returns for a PSD product is dropped -- unless it is
large, which means the inputs were not covariances.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_float64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def gaussian_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), in float64, of features (N, D) with N >= 2."""
    x = _as_float64(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2 samples; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; the feature network produced non-finite values")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, *, eps: float = 1e-6
) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); means (D,), covariances (D, D).

    Singular covariances (fewer samples than feature dimensions, as in FVD on a few hundred videos) are
    handled as in pytorch-fid: if sqrtm(sigma1 @ sigma2) is not finite, eps * I is added to both.
    """
    from scipy import linalg  # lazy: only the metrics need scipy

    mu1, mu2 = _as_float64(mu1), _as_float64(mu2)
    sigma1, sigma2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"means must both be (D,); got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must both be (D, D) = ({d}, {d}); got {sigma1.shape} and {sigma2.shape}")

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"sqrtm(sigma1 @ sigma2) has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}: "
                "the inputs are not valid covariance matrices"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_from_features(features1: ArrayLike, features2: ArrayLike, *, eps: float = 1e-6) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2), eps=eps)
