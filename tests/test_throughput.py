"""`tlbench ls --tracking-uri`: estimates from the finished runs of the cell's key (backbone, input
size, strategy, device), fixed + per-epoch + per-image-epoch fitted where the key has run several
sizes, scaled for the cell's augmentation / optimizer / batch size, with an ~80 % interval; the FLOP
model where the store has no match, and says which."""

from __future__ import annotations

import itertools

import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from tlbench.cells import expand
from tlbench.cli import main
from tlbench.preflight.estimate import train_images
from tlbench.preflight.throughput import Estimator, Measured, Shape, measurements, rates, store_runs
from tlbench.spec import parse_grid
from tlbench.tracking import Tracker, tags

RAW = {
    "name": "est",
    "train": {"epochs": 4, "image_size": 32, "batch_size": 64},
    "datasets": ["digits"],
    "backbones": [
        {"name": "test_resnet", "weights": "none"},
        {"name": "test_efficientnet", "weights": "none"},
    ],
    "strategies": ["scratch"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}
KEY = ("test_resnet", 32, "scratch", "cpu")
JITTER = (0.9, 1.0, 1.1)  # three seeds of each size: their median is the exact time
# (train images, epochs): any one left out, the others still have two train sizes and two epochs
SIZES = [(200, 2), (400, 4), (800, 2), (1600, 4), (3200, 2)]


def _measure(
    client: MlflowClient,
    exp: str,
    backbone: str,
    seconds: float,
    images: int,
    epochs: int,
    train_s: float | None = None,
    optimizer: str = "sgd",
) -> None:
    run = client.create_run(exp, tags={tags.CELL_ID: f"x{seconds}", tags.DEVICE: "cpu"})
    params = {
        "backbone.name": backbone,
        "strategy.name": "scratch",
        "input_size": "32",
        "train_size": str(images),
        "optimizer.name": optimizer,
        "augmentation.name": "none",
        "batch_size": "64",
    }
    for k, v in params.items():
        client.log_param(run.info.run_id, k, v)
    client.log_metric(run.info.run_id, "device_s", seconds)
    if train_s is not None:
        client.log_metric(run.info.run_id, "train_time_s", train_s)
    client.log_metric(run.info.run_id, "epochs_trained", epochs)
    client.set_terminated(run.info.run_id, "FINISHED")


def _exact(client: MlflowClient, exp: str, sizes, optimizer: str = "sgd", scale: float = 1.0) -> None:
    """Runs taking 2 s + 1 ms per image-epoch (their training 1 ms per image-epoch), x the jitter."""
    for (images, epochs), j in itertools.product(sizes, JITTER):
        train = 0.001 * images * epochs
        _measure(
            client, exp, "test_resnet", scale * j * (2 + train), images, epochs, scale * j * train, optimizer
        )


def _store(tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    return store, Tracker(store).experiment_id("earlier"), MlflowClient(store)


def test_the_fit_recovers_fixed_and_rate_and_predicts_a_held_out_size(tmp_path):
    store, exp, client = _store(tmp_path)
    _exact(client, exp, SIZES)
    measured = measurements(store_runs(Tracker(store)))
    assert len(measured) == 15 and all(m.train_s is not None for m in measured)
    shape = Shape.fit(measured)  # the medians of each size lie on the line: Theil-Sen finds it
    assert shape.fitted
    assert shape.fixed == pytest.approx(2.0)
    assert shape.per_epoch == pytest.approx(0.0, abs=1e-9)
    assert shape.per_image_epoch == pytest.approx(0.001)
    est = Estimator(measured).predict(KEY, ("none", "sgd", "64"), 1000, 3)  # a size no run had
    assert est is not None and est.fitted and est.runs == 15
    assert est.seconds == pytest.approx(5.0)  # 2 + 0.001 x 1000 x 3
    assert est.low is not None and est.high is not None
    assert est.low < 5.0 < est.high  # the jitter's spread, not a point
    for j in JITTER:  # a new run of that size, erring as the others did, falls inside
        assert est.low * (1 - 1e-9) <= j * 5.0 <= est.high * (1 + 1e-9)
    # and no wider: each size predicted from the others is exact, so the ratios are the jitter's
    assert (est.low, est.high) == (pytest.approx(4.5), pytest.approx(5.5))
    # the old predictor (one ratio per key) cannot: 2 s fixed is spread over the image-epochs
    old = rates(store_runs(Tracker(store)))[KEY] * 1000 * 3
    assert abs(old - 5.0) / 5.0 > 0.2


def test_without_train_time_the_whole_run_is_fitted_per_epoch(tmp_path):
    store, exp, client = _store(tmp_path)
    for images in (200, 800, 3200):  # device_s only (runs from before the split): 2 s + 1 ms per image-epoch
        _measure(client, exp, "test_resnet", 2 + 0.001 * images * 4, images, 4)
    measured = measurements(store_runs(Tracker(store)))
    assert [m.train_s for m in measured] == [None] * 3
    est = Estimator(measured).predict(KEY, ("none", "sgd", "64"), 1000, 4)
    assert est is not None and est.seconds == pytest.approx(6.0)  # at the epochs the runs had: exact


def test_one_size_is_a_ratio_and_the_cells_optimizer_scales_it(tmp_path):
    store, exp, client = _store(tmp_path)
    _exact(client, exp, [(1000, 3)])  # SGD: 5 s (4.5, 5, 5.5)
    _measure(client, exp, "test_resnet", 7.5, 1000, 3, 4.5, optimizer="adamw")  # AdamW: 1.5x
    _measure(client, exp, "test_resnet", 7.5, 1000, 3, 4.5, optimizer="adamw")
    est = Estimator(measurements(store_runs(Tracker(store))))
    sgd = est.predict(KEY, ("none", "sgd", "64"), 2000, 3)
    adamw = est.predict(KEY, ("none", "adamw", "64"), 2000, 3)
    assert sgd is not None and adamw is not None and not sgd.fitted
    # one size: the training part at its ratio (1 ms per image-epoch), the rest per epoch (2 s / 3)
    assert sgd.seconds == pytest.approx(0.001 * 2000 * 3 + 2.0)
    assert adamw.seconds == pytest.approx(1.5 * sgd.seconds)
    # an optimizer the key has never run: the augmentation's runs, unscaled
    lamb = est.predict(KEY, ("none", "lamb", "64"), 2000, 3)
    assert lamb is not None and sgd.seconds < lamb.seconds < adamw.seconds
    assert est.predict(("test_resnet", 64, "scratch", "cpu"), ("none", "sgd", "64"), 2000, 3) is None


def test_interval_comes_from_leave_one_out_ratios():
    runs = [
        Measured(KEY, ("none", "sgd", "64"), 100, 1, s, None) for s in (8, 9, 10, 10, 10, 10, 10, 11, 12, 30)
    ]
    est = Estimator(runs)
    ratios = sorted(est.ratios(KEY))
    assert len(ratios) == 10 and ratios[-1] == pytest.approx(3.0)  # 30 s against the others' median 10
    e = est.predict(KEY, ("none", "sgd", "64"), 100, 1)
    assert e is not None and e.seconds == pytest.approx(10.0)
    # k = floor(0.1 x 11) = 1: the smallest and largest ratio
    assert (e.low, e.high) == (pytest.approx(10 * ratios[0]), pytest.approx(30.0))


def test_ls_prints_estimates_with_intervals_and_falls_back_to_flops(tmp_path):
    store, exp, client = _store(tmp_path)
    _exact(client, exp, SIZES)
    resnet, effnet = expand(parse_grid(RAW))
    measured = Estimator(measurements(store_runs(Tracker(store))))
    est = measured.cell(resnet, "cpu", train_images(resnet))
    assert est is not None and est.fitted
    assert est.seconds == pytest.approx(2 + 0.001 * train_images(resnet) * 4)  # 7.18 s
    assert measured.cell(effnet, "cpu", train_images(effnet)) is None
    assert est.low is not None and est.high is not None and est.low < est.seconds < est.high
    grid = tmp_path / "est.yaml"
    grid.write_text(yaml.safe_dump(RAW))
    result = CliRunner().invoke(main, ["ls", "--grid", str(grid), "--tracking-uri", store])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # the console wraps long lines
    assert f"0.12 ({est.low / 60:.2g}–{est.high / 60:.2g})" in out  # minutes (80 % interval)
    assert "0.12 (0.11–0.13)" in out  # 7.18 s, 6.46–7.90 s: the runs' ±10 %
    assert "est. min (cpu, 80 %)" in out and "FLOPs" in out
    assert "1 of 2 cells from the runs" in out and "1 fitted over runs of different sizes" in out
    total = f"≈ {est.seconds / 3600:.2g} h, 80 % interval {est.low / 3600:.2g}–{est.high / 3600:.2g} h"
    assert total in out
    assert "the other 1 by the FLOP model above" in out


def test_old_rates_are_the_median_per_key(tmp_path):
    store, exp, client = _store(tmp_path)
    for seconds in (10.0, 12.0, 30.0):  # 1000 images x 2 epochs: median 12 s -> 0.006 s per image-epoch
        _measure(client, exp, "test_resnet", seconds, 1000, 2)
    assert rates(store_runs(Tracker(store))) == {KEY: pytest.approx(0.006)}
