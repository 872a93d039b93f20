"""Weighted k-nearest-neighbour accuracy on L2-normalised features, as in DINO's k-NN evaluation.

Papers: Mathilde Caron, Hugo Touvron, Ishan Misra, Hervé Jégou, Julien Mairal, Piotr Bojanowski,
Armand Joulin (2021), "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
(the k-NN protocol, k = 20, T = 0.07); after Zhirong Wu, Yuanjun Xiong, Stella X. Yu, Dahua Lin
(2018), "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018
(the exp(similarity / T) vote weights).

Definition
----------
Train and query features are scaled to unit L2 norm, so s_ij = ⟨q_i, t_j⟩ is a cosine similarity.
Each query takes its k most similar training points N_k(i) and predicts

    ŷ_i = argmax_c Σ_{j ∈ N_k(i), y_j = c} exp(s_ij / T),

and the score is the fraction of queries with ŷ_i equal to their label; higher predicts better
transfer (it is itself a cheap, training-free classifier on the frozen features).

Numerical choices
-----------------
- float64; k is capped at the number of training points (all of them then vote).
- The weights are computed as exp((s_ij − max_j s_ij) / T): the same factor for every neighbour
  of a query, so the argmax is unchanged while a small T cannot overflow.
- A row of norm 0 stays the zero vector (similarity 0 to everything), as with
  ``torch.nn.functional.normalize``.
- Ties: between equal vote totals the lowest class index wins (``argmax``); which of several
  training points with exactly the k-th similarity is kept is unspecified.
- The query set is processed in chunks of at most 4096 rows and 2**23 similarities (64 MiB), so
  memory stays bounded for any query-set size.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["knn_accuracy"]

_MAX_CHUNK_ROWS = 4096
_MAX_CHUNK_ELEMENTS = 2**23


def knn_accuracy(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    query_features: ArrayLike,
    query_labels: ArrayLike,
    *,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Accuracy on the query set of exp(cos / T)-weighted k-NN voting over the train set."""
    train = _unit_rows(_features(train_features, "train_features"))
    query = _unit_rows(_features(query_features, "query_features"))
    if train.shape[1] != query.shape[1]:
        raise ValueError(
            f"train_features has {train.shape[1]} columns but query_features has {query.shape[1]}"
        )
    y_train = _labels(train_labels, train.shape[0], "train_labels", "train_features")
    y_query = _labels(query_labels, query.shape[0], "query_labels", "query_features")
    if np.unique(y_train).size < 2:
        raise ValueError("train_labels must contain at least 2 classes")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    n_train = train.shape[0]
    k = min(int(k), n_train)
    n_classes = int(y_train.max()) + 1
    rows = max(1, min(_MAX_CHUNK_ROWS, _MAX_CHUNK_ELEMENTS // n_train))
    correct = 0
    for start in range(0, query.shape[0], rows):
        predicted = _predict(query[start : start + rows] @ train.T, y_train, k, temperature, n_classes)
        correct += int(np.count_nonzero(predicted == y_query[start : start + rows]))
    return correct / query.shape[0]


def _predict(sims: np.ndarray, y_train: np.ndarray, k: int, temperature: float, n_classes: int) -> np.ndarray:
    """The weighted-vote class of each row of a (queries × train) similarity block."""
    if k < sims.shape[1]:
        neighbours = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, neighbours, axis=1)
    else:
        neighbours = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        top = sims
    weights = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
    votes = np.zeros((sims.shape[0], n_classes))
    row = np.arange(sims.shape[0])
    for j in range(k):  # one neighbour rank at a time: no repeated (row, class) index within a step
        votes[row, y_train[neighbours[:, j]]] += weights[:, j]
    return votes.argmax(axis=1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _features(features: ArrayLike, name: str) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n samples × d), got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return f


def _labels(labels: ArrayLike, n: int, name: str, rows_name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but {rows_name} has {n} rows")
    if y.min() < 0:
        raise ValueError(f"{name} must be >= 0 (class indices 0..C-1)")
    return y
