"""NCE: the negative conditional entropy of the target labels given the source model's labels.

Paper: Anh T. Tran, Cuong V. Nguyen, Tal Hassner (2019), "Transferability and Hardness of
Supervised Classification Tasks", ICCV 2019.

Definition
----------
z_i is the source model's hard prediction (argmax) on target image i and y_i its target label.
From the empirical joint P̂(y, z) = (1/n) #{i : y_i = y, z_i = z} and P̂(z) = Σ_y P̂(y, z),

    NCE = −H(Y | Z) = Σ_{y, z} P̂(y, z) log (P̂(y, z) / P̂(z)).

It is ≤ 0, equals 0 when the source labels determine the target labels, and −H(Y) when the two
are independent; higher predicts better transfer.

Numerical choices
-----------------
- float64; natural logarithm (nats); 0 log 0 = 0, so empty cells of the joint contribute nothing.
- ``num_source_classes`` is optional: it only checks the source labels' range, since source
  classes that never occur contribute nothing to H(Y | Z).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["nce"]


def nce(source_labels: ArrayLike, labels: ArrayLike, *, num_source_classes: int | None = None) -> float:
    """−H(Y | Z) in nats from the empirical joint of target labels Y and source labels Z (≤ 0)."""
    y = _labels(labels, "labels")
    z = _labels(source_labels, "source_labels")
    if z.shape[0] != y.shape[0]:
        raise ValueError(f"source_labels has {z.shape[0]} entries but labels has {y.shape[0]}")
    if np.unique(y).size < 2:
        raise ValueError("labels must contain at least 2 classes")
    n_source = int(z.max()) + 1
    if num_source_classes is not None:
        if num_source_classes < 1:
            raise ValueError(f"num_source_classes must be >= 1, got {num_source_classes}")
        if n_source > num_source_classes:
            raise ValueError(
                f"source_labels has the value {n_source - 1} but num_source_classes is {num_source_classes}"
            )
        n_source = num_source_classes
    n_target = int(y.max()) + 1
    counts = np.bincount(y * n_source + z, minlength=n_target * n_source).reshape(n_target, n_source)
    joint = counts / y.shape[0]
    marginal = joint.sum(axis=0)
    nonzero = joint > 0
    ratio = joint[nonzero] / np.broadcast_to(marginal, joint.shape)[nonzero]
    return float(np.sum(joint[nonzero] * np.log(ratio)))


def _labels(labels: ArrayLike, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    if y.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if y.min() < 0:
        raise ValueError(f"{name} must be >= 0 (class indices)")
    return y.astype(np.int64)
