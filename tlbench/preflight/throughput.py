"""What a cell will take, from what finished cells took in an MLflow store, with an interval.

``tlbench ls --tracking-uri`` uses it where the store has runs of the cell's key (backbone, input
size, strategy, device) and the FLOP model (``tlbench.preflight.estimate``) where it has none, and
says which. ``benchmarks/perf/estimates.py`` checks it leave-one-out (perf README §17).

**The model** (``Estimator``), from the finished runs of the cell's key:

    seconds = factor × (fixed + per_epoch × epochs + per_image_epoch × train images × epochs)

A run records ``device_s`` (wall time on its device, every attempt: setup, epochs, val passes,
checkpoints, test) and ``train_time_s`` (the training passes alone), so the two parts are fitted
apart: the training seconds per epoch against the train size (intercept: a per-epoch cost, slope:
per image), and the rest against the epochs (intercept: setup and test; slope: each epoch's val
pass, checkpoint and logging). Each is a Theil-Sen line (``scipy.stats.theilslopes``) through the
median of the runs at each distinct x where there are two or more such x, else the median ratio
(y ∝ x) of the one there is; a line with a negative slope or intercept falls back to the ratio.
Runs without ``train_time_s`` fit ``device_s`` as the training part alone.

The runs the shape is fitted on, and the ``factor`` (the median measured / fitted), come from the
runs closest to the cell: those sharing its augmentation, optimizer and batch size, else its
augmentation and optimizer, else its augmentation, else the whole key, at least ``MIN_GROUP`` of
them (the shape: the closest such set with two sizes or more). Augmentation first: a
deterministic one lets a frozen backbone train on cached features (several times faster); then
the optimizer (an AdamW step costs more than an SGD one) and the batch size (steps per epoch).

**The interval**: each run of the key predicted from the key's other runs (leave-one-out) gives a
ratio measured / predicted; the estimate's ~80 % prediction interval is the estimate times the
k-th smallest and k-th largest of those n ratios, k = ⌊0.1 (n + 1)⌋ (at least 1). A new run falls
inside with probability (n + 1 − 2k) / (n + 1) if it errs as the held-out ones did: ≥ 80 % from
n = 9 on; a key with fewer than ``MIN_RESIDUALS`` ratios takes the store's, pooled over its keys.
For a size the key has not run (train images and epochs), the ratios are each run predicted from
the key's runs of other sizes only (leave-size-out, the store's where the key has too few): how
far the fit extrapolates. On a store that has run one size per key that is not known, and the
interval (the leave-one-out one) is too narrow for new sizes.

``rates`` is the predictor before it (#18: the key's median seconds per image-epoch, no
interval), kept as the baseline ``benchmarks/perf/estimates.py`` compares against.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlbench.cells import Cell

Key = tuple[str, int, str, str]  # backbone, input size, strategy, device type
Group = tuple[str, str, str]  # augmentation, optimizer, batch size: what scales a key's times
MIN_GROUP = 2  # runs sharing a cell's group for their factor to be used
MIN_RESIDUALS = 9  # a key's own leave-one-out ratios for its interval ((n-1)/(n+1) = 80 % at 9)
MAX_RESIDUALS = 200  # runs per key predicted leave-one-out for the interval (evenly spread)
COVERAGE = 0.8


def run_key(params: Mapping[str, str], device: str) -> Key | None:
    """The key of a finished run's measurement (None when it lacks what the key needs)."""
    try:
        size = int(float(params["input_size"]))
    except (KeyError, ValueError):
        return None
    backbone, strategy = params.get("backbone.name"), params.get("strategy.name")
    if not backbone or not strategy:
        return None
    return backbone, size, strategy, device.split(":")[0] or "cpu"


def _size(metrics: Mapping[str, float], params: Mapping[str, str]) -> tuple[float, float] | None:
    """(train images, epochs trained) of a run, or None."""
    try:
        epochs = metrics.get("epochs_trained") or float(params["epochs"])
        images = float(params["train_size"])
    except (KeyError, ValueError):
        return None
    return (images, epochs) if epochs and images > 0 else None


def rates(runs: Iterable[tuple[Mapping[str, str], Mapping[str, float], str]]) -> dict[Key, float]:
    """(params, metrics, device) of finished runs -> median seconds per training image-epoch
    (the ratio predictor of #18, without fit or interval)."""
    samples: dict[Key, list[float]] = {}
    for params, metrics, device in runs:
        key = run_key(params, device)
        # runs from before device_s (#18): their training time, without evaluation and setup
        seconds = metrics.get("device_s") or metrics.get("train_time_s")
        size = _size(metrics, params)
        if key is None or not seconds or size is None:
            continue
        samples.setdefault(key, []).append(seconds / (size[0] * size[1]))
    return {k: statistics.median(v) for k, v in samples.items()}


@dataclass(frozen=True)
class Measured:
    """One finished run: its key and group, size, and the seconds it took."""

    key: Key
    group: Group
    images: float
    epochs: float
    seconds: float  # device_s (train_time_s for runs from before device_s)
    train_s: float | None  # train_time_s, the training passes alone (None: not recorded)


def group_of(params: Mapping[str, str]) -> Group:
    return (
        params.get("augmentation.name") or params.get("augmentation") or "",
        params.get("optimizer.name") or params.get("optimizer") or "",
        params.get("batch_size") or "",
    )


def measurements(runs: Iterable[tuple[Mapping[str, str], Mapping[str, float], str]]) -> list[Measured]:
    """(params, metrics, device) of finished runs -> their measurements (runs lacking one left out)."""
    out = []
    for params, metrics, device in runs:
        key, size = run_key(params, device), _size(metrics, params)
        seconds = metrics.get("device_s") or metrics.get("train_time_s")
        if key is None or size is None or not seconds:
            continue
        train = metrics.get("train_time_s") if metrics.get("device_s") else None
        out.append(Measured(key, group_of(params), size[0], size[1], float(seconds), train))
    return out


def cell_key(cell: Cell, device: str) -> Key:
    return cell.backbone.name, int(cell.train.image_size or 224), cell.strategy.name, device


def cell_group(cell: Cell) -> Group:
    return cell.augmentation.name, cell.optimizer.name, str(cell.train.batch_size)


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, bool]:
    """(intercept, slope, fitted) of y against x: a Theil-Sen line through the median y of each
    distinct x where there are two or more (and it is non-negative), else y ∝ x (median ratio)."""
    by_x: dict[float, list[float]] = {}
    for x, y in zip(xs, ys, strict=True):
        by_x.setdefault(x, []).append(y)
    if len(by_x) >= 2:
        from scipy.stats import theilslopes

        ux = sorted(by_x)
        uy = [statistics.median(by_x[x]) for x in ux]
        slope, intercept = theilslopes(uy, ux)[:2]
        if slope >= 0 and intercept >= -1e-9 * max(uy):  # (rounding: an exact line through 0)
            return max(float(intercept), 0.0), float(slope), True
    return 0.0, statistics.median(y / x for x, y in zip(xs, ys, strict=True)), False


@dataclass(frozen=True)
class Shape:
    """A key's seconds as a function of train images and epochs."""

    fixed: float
    per_epoch: float
    per_image_epoch: float
    fitted: bool  # the key's runs had different sizes (a line fitted), not one size's ratio

    @classmethod
    def fit(cls, runs: Sequence[Measured]) -> Shape:
        split = all(r.train_s is not None for r in runs)
        train = [(r.train_s if split else r.seconds) or 0.0 for r in runs]
        # training: seconds per epoch against the train size (slope: per image, intercept: per epoch)
        w, t, fit_train = _line(
            [r.images for r in runs], [s / r.epochs for s, r in zip(train, runs, strict=True)]
        )
        if not split:
            return cls(0.0, w, t, fit_train)
        # the rest: setup and test (fixed), each epoch's val pass, checkpoint and logging
        rest = [max(r.seconds - s, 0.0) for s, r in zip(train, runs, strict=True)]
        f, u, fit_rest = _line([r.epochs for r in runs], rest)
        return cls(f, w + u, t, fit_train or fit_rest)

    def __call__(self, images: float, epochs: float) -> float:
        return self.fixed + self.per_epoch * epochs + self.per_image_epoch * images * epochs


@dataclass(frozen=True)
class Estimate:
    seconds: float
    low: float | None  # the ~80 % prediction interval (None: too few runs to say)
    high: float | None
    runs: int  # finished runs of the key it comes from
    fitted: bool  # fixed + rates fitted over runs of different sizes (False: one size's ratio)


def _levels(runs: Sequence[Measured], group: Group) -> list[list[Measured]]:
    """The runs sharing the group, then its augmentation and optimizer, its augmentation, none of it."""
    return [[r for r in runs if r.group[:n] == group[:n]] for n in (3, 2, 1, 0)]


def _sizes(runs: Sequence[Measured]) -> set[tuple[float, float]]:
    return {(r.images, r.epochs) for r in runs}


def _model(runs: Sequence[Measured], group: Group) -> tuple[Shape, float]:
    """The shape, fitted on the closest set of runs with two sizes or more (the whole key's
    else), and the factor: the median measured / fitted of the closest set of ``MIN_GROUP``."""
    near = [rs for rs in _levels(runs, group) if len(rs) >= MIN_GROUP]
    shape = Shape.fit(next((rs for rs in near if len(_sizes(rs)) >= 2), runs))
    fitted = [(r.seconds, shape(r.images, r.epochs)) for r in (near[0] if near else [])]
    ratios = [s / f for s, f in fitted if f > 0]
    return shape, statistics.median(ratios) if ratios else 1.0


def _predict(runs: Sequence[Measured], group: Group, images: float, epochs: float) -> float:
    shape, factor = _model(runs, group)
    return factor * shape(images, epochs)


def _known(runs: Sequence[Measured], images: float, epochs: float) -> bool:
    """Has the key run this size (train images within 2 %: a stratified subset rounds its own way)?"""
    return any(r.epochs == epochs and abs(r.images - images) <= 0.02 * images for r in runs)


def _bounds(ratios: Sequence[float]) -> tuple[float, float]:
    """The k-th smallest and largest ratio: a distribution-free prediction interval."""
    s = sorted(ratios)
    k = max(1, math.floor((1 - COVERAGE) / 2 * (len(s) + 1)))
    return s[k - 1], s[-k]


class Estimator:
    """Seconds a cell will take, from a store's measurements (see the module's docstring)."""

    def __init__(self, measured: Iterable[Measured]):
        self.by_key: dict[Key, list[Measured]] = {}
        for m in measured:
            self.by_key.setdefault(m.key, []).append(m)
        self._ratios: dict[tuple[Key, str], list[float]] = {}
        self._models: dict[tuple[Key, Group], tuple[Shape, float]] = {}

    def ratios(self, key: Key, hold: str = "one") -> list[float]:
        """Measured / predicted of the key's runs, each predicted from the key's other runs
        (``hold="one"``) or from its runs of other sizes (``"size"``; none where it has one size)."""
        if (key, hold) not in self._ratios:
            runs = self.by_key.get(key, [])
            step = max(1, math.ceil(len(runs) / MAX_RESIDUALS))
            out = []
            for i in range(0, len(runs), step):
                r = runs[i]
                if hold == "one":
                    others = runs[:i] + runs[i + 1 :]
                else:
                    others = [o for o in runs if (o.images, o.epochs) != (r.images, r.epochs)]
                if not others:
                    continue
                predicted = _predict(others, r.group, r.images, r.epochs)
                if predicted > 0:
                    out.append(r.seconds / predicted)
            self._ratios[key, hold] = out
        return self._ratios[key, hold]

    def _pooled(self, hold: str) -> list[float]:
        return [x for key in self.by_key for x in self.ratios(key, hold)]

    def _interval_ratios(self, key: Key, holds: list[str]) -> list[float]:
        """The first of the key's and the store's ratios, per hold-out, with ``MIN_RESIDUALS``
        (else the most there are); the store's are only computed when the key's are too few."""
        tried = []
        for hold in holds:
            for ratios in (self.ratios(key, hold), None):
                ratios = self._pooled(hold) if ratios is None else ratios
                if len(ratios) >= MIN_RESIDUALS:
                    return ratios
                tried.append(ratios)
        return max(tried, key=len)

    def predict(self, key: Key, group: Group, images: float, epochs: float) -> Estimate | None:
        runs = self.by_key.get(key)
        if not runs:
            return None
        if (key, group) not in self._models:
            self._models[key, group] = _model(runs, group)
        shape, factor = self._models[key, group]
        seconds = factor * shape(images, epochs)
        # a size the key has run errs like a run predicted from its other seeds and settings; a
        # new size like a size predicted from the key's other sizes (the store's keys' where the
        # key has too few), else as the former
        ratios = self._interval_ratios(key, ["one"] if _known(runs, images, epochs) else ["size", "one"])
        low, high = (seconds * b for b in _bounds(ratios)) if len(ratios) >= 2 else (None, None)
        return Estimate(seconds, low, high, len(runs), shape.fitted)

    def cell(self, cell: Cell, device: str, images: int | None) -> Estimate | None:
        """The cell's estimate, or None (no run of its key, or its train size unknown)."""
        if images is None:
            return None
        return self.predict(cell_key(cell, device), cell_group(cell), images, cell.train.epochs)


def store_runs(tracker: Any) -> list[tuple[dict[str, str], dict[str, float], str]]:
    """(params, metrics, device) of every finished tlbench cell run in the store, any grid."""
    from tlbench.tracking import tags

    exps = tracker.experiment_ids()
    out = []
    for exp in exps:
        for run in tracker.runs(exp, "FINISHED"):
            device = run.data.tags.get(tags.DEVICE, "")
            out.append((dict(run.data.params), dict(run.data.metrics), device))
    return out


def main_device(runs: list[tuple[dict[str, str], dict[str, float], str]]) -> str:
    """The device type most finished runs used (cpu when none)."""
    kinds = [d.split(":")[0] for _, _, d in runs if d]
    return max(set(kinds), key=kinds.count) if kinds else "cpu"
