"""TransRate: the coding-rate estimate of the mutual information between features and labels.

Paper: Long-Kai Huang, Junzhou Huang, Yu Rong, Qiang Yang, Ying Wei (2022), "Frustratingly Easy
Transferability Estimation", ICML 2022 (PMLR 162).

Definition
----------
The coding rate of n feature vectors Z (n × d) at distortion ε² stands in for their entropy,

    R(Z, ε) = ½ log det(I_d + ZᵀZ / (n ε²)),

and TransRate is the rate of the whole set minus the label-weighted rate of each class Z_c,

    TrR = R(Z, ε) − Σ_c (n_c / n) R(Z_c, ε)     (R(Z_c, ε) normalised by its own n_c).

Large when the features are spread out overall (completeness) but compact within each class
(compactness); higher predicts better transfer.

Choices, and where they come from
---------------------------------
- ``eps`` is ε² itself, default 1e-4: the authors' code writes the coding rate as
  ``logdet(I + ZᵀZ / (n * eps))`` with eps = 1e-4 and documents it as "the value of eps^2".
  Their code also omits the factor d of Ma et al. (2007) / MCR² (Yu et al. 2020),
  ``I + d/(n ε²) ZᵀZ``; keeping it would equal this function with ``eps / d``.
- Preprocessing as in the authors' released pipeline: features are centred (the global mean is
  subtracted), then each row is scaled to unit L2 norm, so ε is relative to the feature scale and
  a backbone cannot gain rate by having larger activations. A row of norm 0 stays 0.
- Class weights n_c / n (the paper's R(Z, ε | Y)); the authors' ten-line listing averages the
  classes uniformly, which is the same for balanced classes.
- float64; log det(I_d + c ZᵀZ) = log det(I_m + c ZZᵀ) for Z of m rows, so each term uses
  ``slogdet`` on the smaller Gram matrix (m × m when a class has fewer samples than d).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["transrate"]


def transrate(features: ArrayLike, labels: ArrayLike, *, eps: float = 1e-4) -> float:
    """R(Z, ε) − Σ_c (n_c/n) R(Z_c, ε) on centred, unit-norm features; higher is better."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array (n samples × d), got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or infinite values")
    y = _labels(labels, f.shape[0])
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be finite and > 0, got {eps}")
    z = f - f.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)
    n = z.shape[0]
    conditional = sum(np.count_nonzero(y == c) / n * _coding_rate(z[y == c], eps) for c in np.unique(y))
    return float(_coding_rate(z, eps) - conditional)


def _coding_rate(z: np.ndarray, eps: float) -> float:
    """½ log det(I + ZᵀZ / (m · eps)) for Z of m rows, via the smaller of ZᵀZ and ZZᵀ."""
    m, d = z.shape
    gram = z @ z.T if m < d else z.T @ z
    sign, logdet = np.linalg.slogdet(np.eye(gram.shape[0]) + gram / (m * eps))
    if sign <= 0:  # I + a positive semi-definite matrix: cannot happen short of overflow
        raise ValueError("the coding-rate matrix is not positive definite (overflow?)")
    return 0.5 * float(logdet)


def _labels(labels: ArrayLike, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} entries but features has {n} rows")
    if y.min() < 0:
        raise ValueError("labels must be >= 0 (class indices 0..C-1)")
    if np.unique(y).size < 2:
        raise ValueError("labels must contain at least 2 classes")
    return y
