"""Fréchet distance against float64 references computed another way (closed form, eigen-decomposition)."""

from __future__ import annotations

import numpy as np
import pytest

from videoldm.evaluation.frechet import frechet_distance, frechet_distance_from_features, gaussian_statistics


def eigen_reference(mu1, s1, mu2, s2) -> float:
    """tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), a symmetric PSD matrix: square roots via eigh only."""

    def psd_sqrt(s):
        w, v = np.linalg.eigh(s)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = psd_sqrt(s1)
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def random_covariance(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d + 3))
    return a @ a.T / a.shape[1]


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [3, 32])
def test_full_covariances_match_the_eigendecomposition_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(eigen_reference(mu1, s1, mu2, s2), rel=1e-8)
    # symmetric, and zero between a Gaussian and itself
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-8 * np.trace(s1)


def test_singular_covariances_from_fewer_samples_than_dimensions():
    # 10 samples of 64-d features: rank-9 covariances, as FVD on a few hundred videos with 400-d logits.
    rng = np.random.default_rng(1)
    f1, f2 = rng.standard_normal((10, 64)), rng.standard_normal((10, 64)) + 0.5
    mu1, s1 = gaussian_statistics(f1)
    mu2, s2 = gaussian_statistics(f2)
    assert np.linalg.matrix_rank(s1) == 9
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value)
    assert value == pytest.approx(eigen_reference(mu1, s1, mu2, s2), rel=1e-4, abs=1e-3)
    assert abs(frechet_distance_from_features(f1, f1)) < 1e-3


def test_statistics_are_float64_mean_and_unbiased_covariance():
    import torch

    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    mu, sigma = gaussian_statistics(x)
    assert mu.dtype == np.float64 and sigma.shape == (4, 4)
    xd = x.double().numpy()
    np.testing.assert_allclose(mu, xd.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, (xd - xd.mean(0)).T @ (xd - xd.mean(0)) / 49, rtol=1e-10)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"covariances must both be \(D, D\)"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
