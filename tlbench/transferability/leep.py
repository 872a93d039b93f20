"""LEEP: the log expected empirical prediction of a source classifier re-used on the target labels.

Paper: Cuong V. Nguyen, Tal Hassner, Matthias Seeger, Cédric Archambeau (2020), "LEEP: A New
Measure to Evaluate Transferability of Learned Representations", ICML 2020 (PMLR 119).

Definition
----------
θ(x_i) ∈ Δ^{Cs} is the source model's softmax output on target image i (n × Cs, ``source_probs``)
and y_i its target label. The empirical joint and conditional of target label y and source label z:

    P̂(y, z) = (1/n) Σ_i θ(x_i)_z [y_i = y],   P̂(z) = Σ_y P̂(y, z),   P̂(y | z) = P̂(y, z) / P̂(z),

and LEEP = (1/n) Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z, the average log-likelihood of the "expected
empirical predictor". It is ≤ 0; higher (closer to 0) predicts better transfer.

Numerical choices
-----------------
- float64; natural logarithm.
- Source classes with P̂(z) = 0 (no target image puts mass on them) get P̂(y | z) = 0: they are
  weighted by θ(x_i)_z = 0 in every term anyway, so this only avoids 0 / 0.
- The inner sum is never 0: for any z with θ(x_i)_z > 0, P̂(y_i, z) ≥ θ(x_i)_z / n > 0.
- Rows of ``source_probs`` must be non-negative and sum to 1 within 1e-3 (float32 or float16
  softmax outputs pass; logits do not).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["leep"]

_ROW_SUM_ATOL = 1e-3


def leep(source_probs: ArrayLike, labels: ArrayLike) -> float:
    """LEEP score of a source model's probabilities on the target labels (≤ 0; higher is better)."""
    theta = _probabilities(source_probs)
    y = _labels(labels, theta.shape[0])
    n = theta.shape[0]
    onehot = np.zeros((n, int(y.max()) + 1))
    onehot[np.arange(n), y] = 1.0
    joint = onehot.T @ theta / n  # P̂(y, z): target classes × source classes
    marginal = joint.sum(axis=0)  # P̂(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    # Σ_z P̂(y_i | z) θ(x_i)_z for each image i, at its own label y_i.
    eep = np.einsum("iz,iz->i", theta, conditional[y])
    return float(np.mean(np.log(eep)))


def _probabilities(source_probs: ArrayLike) -> np.ndarray:
    theta = np.asarray(source_probs, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[0] == 0 or theta.shape[1] == 0:
        raise ValueError(
            f"source_probs must be a non-empty 2-D array (n × source classes), got shape {theta.shape}"
        )
    if not np.all(np.isfinite(theta)):
        raise ValueError("source_probs contain NaN or infinite values")
    if theta.min() < 0:
        raise ValueError("source_probs must be probabilities (>= 0); pass softmax outputs, not logits")
    sums = theta.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=_ROW_SUM_ATOL):
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        raise ValueError(f"each row of source_probs must sum to 1 (a softmax output); one sums to {worst}")
    return theta


def _labels(labels: ArrayLike, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} entries but source_probs has {n} rows")
    if y.min() < 0:
        raise ValueError("labels must be >= 0 (class indices 0..C-1)")
    if np.unique(y).size < 2:
        raise ValueError("labels must contain at least 2 classes")
    return y
