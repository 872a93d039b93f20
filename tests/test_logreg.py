"""The L-BFGS logistic regression of the linear-evaluation protocol, on features with known answers
and against scikit-learn's ``LogisticRegression`` on the same problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from tlbench.train import logreg
from tlbench.train.metrics import confusion, mean_per_class_acc


def _blobs(
    n_per_class: int, classes: int, dim: int, spread: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian classes around random centres; made non-negative and offset like post-ReLU features."""
    g = np.random.default_rng(seed)
    centres = g.normal(0, 3, (classes, dim))
    x = np.concatenate([c + spread * g.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(classes), n_per_class)
    order = g.permutation(len(y))
    return torch.tensor(np.abs(x[order]) + 1.0, dtype=torch.float32), torch.tensor(y[order])


@pytest.fixture(scope="module")
def separable():
    x, y = _blobs(40, 3, 8, 0.3, seed=0)
    return (x[:90], y[:90]), (x[90:], y[90:])


@pytest.fixture(scope="module")
def noisy():
    x, y = _blobs(60, 4, 12, 3.0, seed=1)
    return (x[:160], y[:160]), (x[160:], y[160:])


def test_separable_classes_reach_val_accuracy_one_and_every_solve_converges(separable):
    train, val = separable
    sweep = logreg.sweep(train, val, 3)
    assert (
        len(sweep.grid) == 45
        and sweep.grid[0] == pytest.approx(1e-6)
        and sweep.grid[-1] == pytest.approx(1e5)
    )
    assert sweep.val[sweep.chosen].acc == 1.0
    assert sweep.not_converged == []


def test_a_heavy_l2_pushes_the_weights_towards_zero(noisy):
    train, val = noisy
    sweep = logreg.sweep(train, val, 4, refit=False)
    norms = [float(s.weight.norm()) for s in sweep.solutions]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(norms, norms[1:], strict=False))  # λ ascending
    assert norms[-1] < 1e-3 * norms[0]
    # the strongest λ leaves only the bias: the prediction is the most frequent training class
    strongest = sweep.solutions[-1]
    assert float(strongest.weight.abs().max()) < 1e-3


def test_the_chosen_l2_is_the_val_argmax_of_the_curve_ties_going_to_the_strongest(noisy, separable):
    for (train, val), classes in ((noisy, 4), (separable, 3)):
        sweep = logreg.sweep(train, val, classes, refit=False)
        curve = [v.acc for v in sweep.val]
        assert curve[sweep.chosen] == max(curve)
        assert all(v < max(curve) for v in curve[sweep.chosen + 1 :])  # no stronger λ ties it
    by_class = logreg.sweep(*noisy, 4, metric="mean_per_class_acc", refit=False)
    per_class = [v.mean_per_class_acc for v in by_class.val]
    assert per_class[by_class.chosen] == max(per_class)


def test_refit_uses_train_and_val_at_the_chosen_l2(noisy):
    (xt, yt), (xv, yv) = noisy
    sweep = logreg.sweep((xt, yt), (xv, yv), 4)
    assert sweep.refit is not None and sweep.refit.l2 == sweep.solutions[sweep.chosen].l2
    both = logreg._Problem.of(torch.cat([xt, xv]).double(), torch.cat([yt, yv]), 4)
    own = logreg.objective(
        both.x, both.y, sweep.refit.weight, sweep.refit.bias + sweep.refit.weight @ both.mean, sweep.refit.l2
    )
    train_only = sweep.solutions[sweep.chosen]
    other = logreg.objective(
        both.x, both.y, train_only.weight, train_only.bias + train_only.weight @ both.mean, train_only.l2
    )
    assert float(own) < float(other)  # the refit minimises the objective over train + val
    assert sweep.final is sweep.refit
    assert logreg.sweep((xt, yt), (xv, yv), 4, refit=False).final is not None


def test_matches_scikit_learn_on_the_same_problem(noisy):
    """The same objective (C = 1 / (λ n)): the same solution, so the same predictions and C."""
    (xt, yt), (xv, yv) = noisy
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    sweep = logreg.sweep((xt, yt), (xv, yv), 4, grid, refit=False, tol=1e-8)
    n = len(yt)
    sk_val = []
    for sol in sweep.solutions:
        clf = LogisticRegression(C=1 / (sol.l2 * n), max_iter=10_000, tol=1e-10).fit(
            xt.double().numpy(), yt.numpy()
        )
        w, b = torch.tensor(clf.coef_), torch.tensor(clf.intercept_)
        theirs = float(logreg.objective(xt.double(), yt, w, b, sol.l2))
        assert sol.loss == pytest.approx(theirs, rel=1e-7, abs=1e-9)
        assert torch.allclose(sol.weight, w, atol=1e-4 * float(w.abs().max()) + 1e-6)
        sk_val.append(clf.score(xv.double().numpy(), yv.numpy()))
    assert [v.acc for v in sweep.val] == pytest.approx(sk_val)
    best = max(sk_val)
    assert sk_val[sweep.chosen] == best  # the same C, or one at equal val accuracy


def test_a_solve_out_of_iterations_says_so():
    x, y = _blobs(50, 3, 10, 2.0, seed=2)
    problem = logreg._Problem.of(x.double(), y, 3)
    sol = logreg.solve(problem, 1e-6, max_iter=15)
    assert sol.stop == "max_iter" and not sol.converged and sol.iterations == 15
    assert logreg.solve(problem, 1e-6).converged


def test_bad_l2_values_are_refused():
    with pytest.raises(ValueError, match="> 0"):
        logreg.check_grid([0.1, 0.0])
    with pytest.raises(ValueError, match="> 0"):
        logreg.check_grid([])
    assert logreg.check_grid([1.0, 0.1, 1.0]) == (0.1, 1.0)


def test_mean_per_class_accuracy_weights_classes_equally_on_an_imbalanced_set():
    y = torch.tensor([0] * 90 + [1] * 10)
    pred = torch.zeros(100, dtype=torch.long)  # always the big class
    counts = confusion(y, pred, 3)  # class 2 never appears: it is left out of the mean
    assert float((pred == y).double().mean()) == 0.9
    assert mean_per_class_acc(counts) == pytest.approx(0.5)
    assert mean_per_class_acc(np.zeros((2, 2), dtype=int)) == 0.0
