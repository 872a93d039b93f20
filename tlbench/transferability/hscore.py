"""H-score and its shrinkage-regularised form: how much of the features' variance the labels explain.

Papers:

- Yajie Bao, Yang Li, Shao-Lun Huang, Lin Zhang, Lizhong Zheng, Amir Zamir, Leonidas Guibas
  (2019), "An Information-Theoretic Approach to Transferability in Task Transfer Learning",
  ICIP 2019 (``hscore``).
- Shibal Ibrahim, Natalia Ponomareva, Rahul Mazumder (2022), "Newer is not always better:
  Rethinking transferability metrics, their peculiarities, stability and performance",
  arXiv:2110.06893 (2021), ECML PKDD 2022 (``regularized_hscore``).

Definitions
-----------
With the features centred (f ← f − mean f), Σ_f = (1/n) Σ_i f_i f_iᵀ their covariance and
Σ_g = Σ_c p_c μ_c μ_cᵀ the covariance of the class-conditional means g(y) = E[f | y]
(p_c = n_c / n, μ_c the mean of class c's centred features):

    H(f) = tr(Σ_f⁺ Σ_g)                                               (Bao et al.)
    H_α(f) = tr(Σ_α⁻¹ (1 − α) Σ_g),  Σ_α = (1 − α) Σ_f + α (tr Σ_f / d) I   (Ibrahim et al.)

where α ∈ [0, 1] is the Ledoit–Wolf (2004) shrinkage coefficient of the centred features,
``sklearn.covariance.ledoit_wolf_shrinkage(f, assume_centered=True)``; Σ_α is exactly the
Ledoit–Wolf covariance estimate (``LedoitWolf().covariance_``), and the between-class covariance is
scaled by the same (1 − α) as Σ_f, as in the paper. Both scores are ≥ 0; higher predicts better
transfer (H(f) ≤ C − 1 when Σ_f is invertible).

Numerical choices
-----------------
- float64; covariances with the 1/n (maximum-likelihood) normalisation, which is what both papers'
  expectations and Ledoit–Wolf use (the 1/(n − 1) choice would scale H by (n − 1)/n).
- Both are computed in the eigenbasis of Σ_f (one ``eigh``): Σ_α shares it, with eigenvalues
  (1 − α) λ_i + α tr(Σ_f)/d. Then tr(W Σ_g) = Σ_c p_c Σ_i w_i (v_iᵀ μ_c)² with w_i the inverse
  eigenvalues; no d × d inverse is formed.
- Σ_f⁺ is the Moore–Penrose pseudo-inverse: Σ_f is singular whenever n ≤ d (rank ≤ n − 1) or a
  feature is constant. Eigenvalues ≤ λ_max · max(n, d) · 2.2e-16 (numpy's ``matrix_rank``
  tolerance) are treated as zero, i.e. those directions are dropped, not inverted.
- Σ_α is positive definite whenever α > 0, so it is inverted exactly; if Ledoit–Wolf returns
  α = 0 (no shrinkage), H_α falls back to the pseudo-inverse, i.e. to H.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.covariance import ledoit_wolf_shrinkage

__all__ = ["hscore", "regularized_hscore"]


def hscore(features: ArrayLike, labels: ArrayLike) -> float:
    """tr(cov(f)⁺ cov(E[f | y])) on centred features (Bao et al. 2019); higher is better."""
    centred, y = _centred(features, labels)
    lam, vecs = _covariance_eigh(centred)
    return _trace_between(centred, y, vecs, _pinv_weights(lam, centred.shape))


def regularized_hscore(features: ArrayLike, labels: ArrayLike) -> float:
    """tr(Σ_α⁻¹ (1 − α) cov(E[f | y])) with Ledoit–Wolf shrinkage α (Ibrahim et al. 2022); higher is better."""
    centred, y = _centred(features, labels)
    alpha = float(ledoit_wolf_shrinkage(centred, assume_centered=True))
    lam, vecs = _covariance_eigh(centred)
    target = float(np.sum(lam)) / centred.shape[1]  # tr(Σ_f) / d
    if alpha <= 0 or target <= 0:  # no shrinkage: Σ_α = Σ_f, which may be singular
        return _trace_between(centred, y, vecs, _pinv_weights(lam, centred.shape))
    shrunk = (1.0 - alpha) * lam + alpha * target  # the eigenvalues of Σ_α, > 0
    return _trace_between(centred, y, vecs, (1.0 - alpha) / shrunk)


def _covariance_eigh(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors of Σ_f = fᵀf / n."""
    lam, vecs = np.linalg.eigh(centred.T @ centred / centred.shape[0])
    return np.clip(lam, 0.0, None), vecs


def _pinv_weights(lam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """1/λ on the numerical range of Σ_f, 0 on its (numerical) null space."""
    cutoff = (float(lam.max()) if lam.size else 0.0) * max(shape) * np.finfo(np.float64).eps
    return np.divide(1.0, lam, out=np.zeros_like(lam), where=lam > cutoff)


def _trace_between(centred: np.ndarray, y: np.ndarray, vecs: np.ndarray, weights: np.ndarray) -> float:
    """tr(V diag(w) Vᵀ Σ_g) = Σ_c p_c Σ_i w_i (v_iᵀ μ_c)², Σ_g = Σ_c p_c μ_c μ_cᵀ."""
    classes, counts = np.unique(y, return_counts=True)
    onehot = (classes[:, None] == y[None, :]).astype(np.float64)
    means = onehot @ centred / counts[:, None]
    projected = means @ vecs
    p = counts / y.shape[0]
    return float(np.sum(p[:, None] * projected**2 * weights[None, :]))


def _centred(features: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array (n samples × d), got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or infinite values")
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    if y.shape[0] != f.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} entries but features has {f.shape[0]} rows")
    if y.min() < 0:
        raise ValueError("labels must be >= 0 (class indices 0..C-1)")
    if np.unique(y).size < 2:
        raise ValueError("labels must contain at least 2 classes")
    return f - f.mean(axis=0, keepdims=True), y
