"""The scores ``tlbench rank`` computes, by name: what each reads and how it is called.

Every score is higher-is-better. ``probe`` is the L-BFGS linear probe of the linear-evaluation
protocol (``train.logreg``: λ over the default grid chosen on val), its val metric the score;
``knn`` is weighted k-NN accuracy (k = 20, T = 0.07) of val against train; the others read the
train rows alone, as their papers do (LEEP and NCE through the source model's predictions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tlbench.errors import TlbenchError
from tlbench.rank.features import TargetFeatures


class RankError(TlbenchError, ValueError):
    """An unknown score, a score that cannot be computed where it must be, nothing to rank."""


@dataclass(frozen=True)
class Score:
    name: str
    what: str  # one line for --help and the report
    needs_source: bool
    fn: Callable[[TargetFeatures, str], float]


def _logme(f: TargetFeatures, metric: str) -> float:
    from tlbench.transferability.logme import logme

    return logme(f.train, f.train_labels)


def _leep(f: TargetFeatures, metric: str) -> float:
    from tlbench.transferability.leep import leep

    assert f.source_probs is not None
    return leep(f.source_probs, f.train_labels)


def _nce(f: TargetFeatures, metric: str) -> float:
    from tlbench.transferability.nce import nce

    assert f.source_probs is not None
    return nce(f.source_probs.argmax(1), f.train_labels, num_source_classes=f.source_probs.shape[1])


def _hscore(f: TargetFeatures, metric: str) -> float:
    from tlbench.transferability.hscore import hscore

    return hscore(f.train, f.train_labels)


def _reg_hscore(f: TargetFeatures, metric: str) -> float:
    from tlbench.transferability.hscore import regularized_hscore

    return regularized_hscore(f.train, f.train_labels)


def _transrate(f: TargetFeatures, metric: str) -> float:
    from tlbench.transferability.transrate import transrate

    return transrate(f.train, f.train_labels)


def _knn(f: TargetFeatures, metric: str) -> float:
    from tlbench.transferability.knn import knn_accuracy

    return knn_accuracy(f.train, f.train_labels, f.val, f.val_labels)


def _probe(f: TargetFeatures, metric: str) -> float:
    import torch

    from tlbench.train import logreg

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x)

    sweep = logreg.sweep(
        (t(f.train), t(f.train_labels).long()),
        (t(f.val), t(f.val_labels).long()),
        f.num_classes,
        logreg.DEFAULT_GRID,
        metric=metric,
        refit=False,
    )
    return sweep.val[sweep.chosen].get(metric)


SCORES: dict[str, Score] = {
    s.name: s
    for s in (
        Score("logme", "LogME: log marginal evidence of a linear model (You et al. 2021)", False, _logme),
        Score("leep", "LEEP: log expected empirical prediction (Nguyen et al. 2020)", True, _leep),
        Score(
            "nce",
            "NCE: negative conditional entropy of target given source labels (Tran et al. 2019)",
            True,
            _nce,
        ),
        Score("hscore", "H-score (Bao et al. 2019)", False, _hscore),
        Score("reg_hscore", "H-score with shrinkage (Ibrahim et al. 2022)", False, _reg_hscore),
        Score("transrate", "TransRate: coding-rate difference (Huang et al. 2022)", False, _transrate),
        Score("knn", "weighted 20-NN accuracy on val (DINO's protocol)", False, _knn),
        Score("probe", "the L-BFGS linear probe's val metric (l2 chosen on val)", False, _probe),
    )
}


def parse_scores(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Score names from a comma list (None: all); an unknown one lists the valid ones."""
    if names is None:
        return list(SCORES)
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    bad = [n for n in items if n not in SCORES]
    if bad or not items:
        what = f"unknown score {bad[0]!r}" if bad else "no score named"
        raise RankError(f"{what} (valid: {', '.join(SCORES)})")
    return list(dict.fromkeys(items))
