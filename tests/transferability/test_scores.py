"""Transferability scores equal their definitions computed by hand, and order features as they should.

Every reference here is computed independently of the module under test: LogME against a brute-
force grid over (α, β) of the Gaussian marginal density, LEEP / NCE / k-NN with explicit loops,
H-scores and TransRate with plain d × d matrix formulas.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.covariance import LedoitWolf

from tlbench.transferability.hscore import hscore, regularized_hscore
from tlbench.transferability.knn import knn_accuracy
from tlbench.transferability.leep import leep
from tlbench.transferability.logme import log_evidence, logme
from tlbench.transferability.nce import nce
from tlbench.transferability.transrate import transrate


def clusters(
    n: int, d: int, classes: int, *, seed: int = 0, spread: float = 2.0, balanced: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters, one per label: balanced in cyclic order, or class c with weight ∝ c + 1."""
    rng = np.random.default_rng(seed)
    if balanced:
        labels = np.arange(n) % classes
    else:
        weights = np.arange(1, classes + 1) / np.sum(np.arange(1, classes + 1))
        labels = np.sort(np.concatenate([np.arange(classes), rng.choice(classes, n - classes, p=weights)]))
    features = rng.normal(size=(classes, d))[labels] * spread + rng.normal(size=(n, d))
    return features, labels


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- LogME -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), [(40, 5), (30, 40)])
def test_log_evidence_is_the_log_density_of_the_gaussian_marginal(n, d):
    features, labels = clusters(n, d, 3)
    target = (labels == 1).astype(float)
    for alpha, beta in [(0.1, 2.0), (3.0, 0.5), (50.0, 20.0)]:
        cov = features @ features.T / alpha + np.eye(n) / beta  # y ~ N(0, α⁻¹ F Fᵀ + β⁻¹ I)
        expected = multivariate_normal(np.zeros(n), cov).logpdf(target) / n
        assert log_evidence(features, target, alpha, beta) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def _evidence_grid_maximum(features: np.ndarray, target: np.ndarray, *, interior: bool = True) -> float:
    """max over (α, β) of log N(y; 0, α⁻¹FFᵀ + β⁻¹I) / n: a 200 × 200 log-grid on [1e-6, 1e6]², then zooms.

    ``interior``: assert the maximum is inside the grid (it is a maximum, not a supremum at its edge).
    """
    n = len(target)
    lam, vecs = np.linalg.eigh(features @ features.T)
    lam = np.clip(lam, 0.0, None)
    proj2 = (vecs.T @ target) ** 2

    def evidence(log_a: np.ndarray, log_b: np.ndarray) -> np.ndarray:
        var = np.exp(-log_a)[..., None] * lam + np.exp(-log_b)[..., None]
        return -0.5 * np.sum(np.log(2 * np.pi * var) + proj2 / var, axis=-1) / n

    grid = np.linspace(math.log(1e-6), math.log(1e6), 200)
    values = evidence(*np.meshgrid(grid, grid, indexing="ij"))
    i, j = np.unravel_index(np.argmax(values), values.shape)
    if interior:
        assert 0 < i < len(grid) - 1 and 0 < j < len(grid) - 1, "the maximum lies on the grid's edge"
    best_a, best_b, step = grid[i], grid[j], grid[1] - grid[0]
    for _ in range(10):  # zoom: ±4 steps around the best point, 5× finer each round
        ga = np.linspace(best_a - 4 * step, best_a + 4 * step, 41)
        gb = np.linspace(best_b - 4 * step, best_b + 4 * step, 41)
        values = evidence(*np.meshgrid(ga, gb, indexing="ij"))
        i, j = np.unravel_index(np.argmax(values), values.shape)
        best_a, best_b, step = ga[i], gb[j], ga[1] - ga[0]
    best = float(values[i, j])
    # The grid's formula is the same quantity as log_evidence (checked against scipy above).
    assert log_evidence(features, target, math.exp(best_a), math.exp(best_b)) == pytest.approx(
        best, abs=1e-10
    )
    return best


@pytest.mark.parametrize(("n", "d"), [(40, 5), (30, 40)])  # n ≥ d and n < d
def test_logme_equals_the_brute_force_maximum_of_the_evidence(n, d):
    features, labels = clusters(n, d, 3, balanced=False)
    brute = np.mean([_evidence_grid_maximum(features, (labels == k).astype(float)) for k in range(3)])
    score = logme(features, labels)
    assert score >= brute - 1e-6  # the fixed point reaches the maximum ...
    assert score == pytest.approx(brute, abs=1e-6)  # ... and is a value of the evidence, so not above it


def test_logme_approaches_the_supremum_when_the_labels_can_be_interpolated():
    """n ≪ d: the evidence increases towards β → ∞ (noise-free fit), so there is no interior maximum."""
    features, labels = clusters(12, 30, 3)
    targets = [(labels == k).astype(float) for k in range(3)]
    grid = np.mean([_evidence_grid_maximum(features, t, interior=False) for t in targets])
    score = logme(features, labels)
    assert np.isfinite(score)
    assert score >= grid - 1e-6  # at least the best value with β ≤ 1e6
    assert score == pytest.approx(logme(features, labels, max_iter=10_000, tol=1e-12), abs=1e-5)


def test_logme_adding_pure_noise_dimensions_lowers_the_score():
    features, labels = clusters(300, 8, 3)
    noise = np.random.default_rng(1).normal(size=(300, 50))
    assert logme(np.hstack([features, noise]), labels) < logme(features, labels) - 0.05


def test_logme_accepts_float32_and_labels_with_gaps():
    features, labels = clusters(60, 4, 2)
    as_gaps = np.where(labels == 1, 5, 0)  # classes {0, 5}: the absent 1..4 are not averaged in
    assert logme(features.astype(np.float32), as_gaps) == pytest.approx(logme(features, labels), rel=1e-5)


# --- feature-based scores order separable above shuffled ---------------------------------------


@pytest.mark.parametrize("score", [logme, hscore, regularized_hscore, transrate], ids=lambda f: f.__name__)
def test_separable_features_score_above_the_same_features_with_shuffled_labels(score):
    features, labels = clusters(300, 16, 4)
    shuffled = np.random.default_rng(2).permutation(labels)
    assert score(features, labels) > score(features, shuffled) + 0.1


# --- H-scores ----------------------------------------------------------------------------------


def _between_class_covariance(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centred = features - features.mean(axis=0)
    out = np.zeros((features.shape[1], features.shape[1]))
    for c in np.unique(labels):
        mu = centred[labels == c].mean(axis=0)
        out += np.mean(labels == c) * np.outer(mu, mu)
    return out


def test_hscore_equals_the_trace_formula():
    features, labels = clusters(200, 6, 3, balanced=False)
    cov = np.cov(features, rowvar=False, bias=True)
    expected = np.trace(np.linalg.inv(cov) @ _between_class_covariance(features, labels))
    assert hscore(features, labels) == pytest.approx(expected, rel=1e-9)
    assert 0 < hscore(features, labels) <= 3 - 1 + 1e-9  # H ≤ C − 1 with an invertible cov(f)


def test_hscore_uses_the_pseudo_inverse_when_n_is_below_d():
    features, labels = clusters(10, 30, 2, balanced=False)
    cov = np.cov(features, rowvar=False, bias=True)  # rank 9 < 30
    expected = np.trace(
        np.linalg.pinv(cov, rcond=1e-10, hermitian=True) @ _between_class_covariance(features, labels)
    )
    assert np.isfinite(hscore(features, labels))
    assert hscore(features, labels) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("n", "d"), [(200, 6), (10, 30)])
def test_regularized_hscore_equals_the_ledoit_wolf_formula(n, d):
    features, labels = clusters(n, d, 3, balanced=False)
    lw = LedoitWolf().fit(features)  # centres itself; covariance_ = (1 − α) Σ + α tr(Σ)/d I
    assert 0 < lw.shrinkage_ < 1
    between = (1 - lw.shrinkage_) * _between_class_covariance(features, labels)
    expected = np.trace(np.linalg.solve(lw.covariance_, between))
    assert regularized_hscore(features, labels) == pytest.approx(expected, rel=1e-9)


# --- TransRate ---------------------------------------------------------------------------------


def _rate(z: np.ndarray, eps: float) -> float:
    m, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + z.T @ z / (m * eps))[1]  # always the d × d form


@pytest.mark.parametrize(("n", "d"), [(300, 6), (30, 40)])  # classes larger / smaller than d
def test_transrate_equals_the_coding_rate_formula(n, d):
    features, labels = clusters(n, d, 3, balanced=False)
    z = features - features.mean(axis=0)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    expected = _rate(z, 1e-4) - sum(np.mean(labels == c) * _rate(z[labels == c], 1e-4) for c in range(3))
    assert transrate(features, labels) == pytest.approx(expected, rel=1e-9)
    assert transrate(features, labels, eps=1e-2) == pytest.approx(
        _rate(z, 1e-2) - sum(np.mean(labels == c) * _rate(z[labels == c], 1e-2) for c in range(3)), rel=1e-9
    )


def test_transrate_ignores_the_feature_scale():
    features, labels = clusters(100, 8, 2)
    assert transrate(1000.0 * features, labels) == pytest.approx(transrate(features, labels), rel=1e-9)


# --- LEEP --------------------------------------------------------------------------------------


def _leep_by_hand(theta: np.ndarray, y: np.ndarray) -> float:
    n, source = theta.shape
    target = int(max(y)) + 1
    joint = [[0.0] * source for _ in range(target)]
    for i in range(n):
        for z in range(source):
            joint[y[i]][z] += theta[i][z] / n
    p_z = [sum(joint[c][z] for c in range(target)) for z in range(source)]
    total = 0.0
    for i in range(n):
        eep = sum(joint[y[i]][z] / p_z[z] * theta[i][z] for z in range(source) if p_z[z] > 0)
        total += math.log(eep)
    return total / n


@pytest.mark.parametrize("source_classes", [2, 4])
def test_leep_equals_its_definition_computed_by_hand(source_classes):
    rng = np.random.default_rng(3)
    y = np.arange(30) % 3
    theta = softmax(
        rng.normal(size=(30, source_classes))
        + 2.0 * (y[:, None] % source_classes == np.arange(source_classes))
    )
    assert leep(theta, y) == pytest.approx(_leep_by_hand(theta, y), rel=1e-12)
    if source_classes == 4:  # a source class no target image uses: P(z) = 0 is guarded
        theta[:, 3] = 0.0
        theta /= theta.sum(axis=1, keepdims=True)
        assert leep(theta, y) == pytest.approx(_leep_by_hand(theta, y), rel=1e-12)


def test_leep_prefers_an_informative_source():
    rng = np.random.default_rng(4)
    y = np.arange(60) % 3
    informative = softmax(5.0 * np.eye(3)[y] + 0.1 * rng.normal(size=(60, 3)))
    uninformative = softmax(0.1 * rng.normal(size=(60, 3)))
    assert leep(informative, y) > leep(uninformative, y) + 0.5


# --- NCE ---------------------------------------------------------------------------------------


def _nce_by_hand(z: np.ndarray, y: np.ndarray) -> float:
    n = len(y)
    pairs = Counter(zip(z.tolist(), y.tolist(), strict=True))
    sources = Counter(z.tolist())
    return sum(count / n * math.log(count / sources[zz]) for (zz, _), count in pairs.items())


def test_nce_equals_its_definition_computed_by_hand():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 50)
    z = np.where(rng.random(50) < 0.6, y, rng.integers(0, 4, 50))
    assert nce(z, y) == pytest.approx(_nce_by_hand(z, y), rel=1e-12)
    assert nce(z, y, num_source_classes=10) == pytest.approx(_nce_by_hand(z, y), rel=1e-12)


def test_nce_is_zero_for_an_informative_source_and_minus_entropy_for_an_independent_one():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert nce((y + 1) % 3, y) == 0.0  # a relabelling of y
    assert nce(np.arange(12) % 6, y) == 0.0  # a refinement of y (6 source classes)
    independent = np.arange(12) // 6  # every (y, z) pair occurs equally often
    p = np.bincount(y) / len(y)
    assert nce(independent, y) == pytest.approx(float(np.sum(p * np.log(p))), rel=1e-12)


# --- k-NN --------------------------------------------------------------------------------------


def _knn_by_hand(train, y_train, query, y_query, k, temperature):
    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    correct = 0
    for q, label in zip(query, y_query, strict=True):
        sims = sorted(
            ((float(unit(q) @ unit(t)), int(c)) for t, c in zip(train, y_train, strict=True)), reverse=True
        )
        votes: dict[int, float] = {}
        for sim, c in sims[:k]:
            votes[c] = votes.get(c, 0.0) + math.exp(sim / temperature)
        best = max(votes.values())
        correct += min(c for c, v in votes.items() if v == best) == label
    return correct / len(y_query)


def test_knn_is_exact_on_perfectly_clustered_features():
    rng = np.random.default_rng(6)
    centres = 10.0 * np.eye(4)
    y_train, y_query = np.arange(40) % 4, np.arange(20) % 4
    train = centres[y_train] + 0.01 * rng.normal(size=(40, 4))
    query = centres[y_query] + 0.01 * rng.normal(size=(20, 4))
    assert knn_accuracy(train, y_train, query, y_query, k=5) == 1.0


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.07), (5, 0.07), (7, 0.5), (60, 0.07)])
def test_knn_equals_a_brute_force_loop(k, temperature):
    train, y_train = clusters(50, 6, 3, seed=7, spread=0.7)
    query, y_query = clusters(31, 6, 3, seed=8, spread=0.7)
    expected = _knn_by_hand(train, y_train, query, y_query, k, temperature)
    assert knn_accuracy(train, y_train, query, y_query, k=k, temperature=temperature) == pytest.approx(
        expected
    )
    assert 0.0 < expected < 1.0  # a non-trivial case


def test_knn_with_k_above_the_train_size_uses_every_train_point():
    train, y_train = clusters(12, 5, 2, seed=9, spread=0.5)
    query, y_query = clusters(25, 5, 2, seed=10, spread=0.5)
    everyone = knn_accuracy(train, y_train, query, y_query, k=12)
    assert knn_accuracy(train, y_train, query, y_query, k=1000) == everyone
    assert everyone == pytest.approx(_knn_by_hand(train, y_train, query, y_query, 12, 0.07))
    # Three train points; at a high temperature the votes are nearly equal, so only all three
    # (k capped at 3) outvote the nearest, class-0 point.
    train3, y3 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]]), np.array([0, 1, 1])
    query3, label3 = np.array([[1.0, 0.05]]), np.array([1])
    assert knn_accuracy(train3, y3, query3, label3, k=2, temperature=100.0) == 0.0
    assert knn_accuracy(train3, y3, query3, label3, k=50, temperature=100.0) == 1.0


# --- bad input ---------------------------------------------------------------------------------

_F, _Y = clusters(20, 4, 2)
_P = softmax(np.random.default_rng(11).normal(size=(20, 3)))
_CALLS = {
    "logme": lambda f, y: logme(f, y),
    "hscore": lambda f, y: hscore(f, y),
    "regularized_hscore": lambda f, y: regularized_hscore(f, y),
    "transrate": lambda f, y: transrate(f, y),
    "knn": lambda f, y: knn_accuracy(f, y, _F, _Y),
}


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_feature_scores_reject_bad_input(name):
    call = _CALLS[name]
    with pytest.raises(ValueError, match="entries but"):
        call(_F, _Y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        call(_F, np.zeros(20, dtype=int))
    bad = _F.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        call(bad, _Y)
    with pytest.raises(ValueError, match="integer"):
        call(_F, _Y.astype(float))


def test_knn_rejects_mismatched_query_lengths_and_dimensions():
    with pytest.raises(ValueError, match="query_labels has 19 entries"):
        knn_accuracy(_F, _Y, _F, _Y[:-1])
    with pytest.raises(ValueError, match="columns"):
        knn_accuracy(_F, _Y, _F[:, :3], _Y)
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(_F, _Y, _F, _Y, k=0)


def test_log_evidence_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        log_evidence(_F, _Y[:-1].astype(float), 1.0, 1.0)
    with pytest.raises(ValueError, match="alpha and beta"):
        log_evidence(_F, _Y.astype(float), 0.0, 1.0)


def test_leep_and_nce_reject_bad_input():
    with pytest.raises(ValueError, match="entries but"):
        leep(_P, _Y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        leep(_P, np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="sum to 1"):
        leep(2.0 * _P, _Y)
    with pytest.raises(ValueError, match="entries but"):
        nce(_Y[:-1], _Y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        nce(_Y, np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="num_source_classes"):
        nce(np.arange(20) % 5, _Y, num_source_classes=3)
