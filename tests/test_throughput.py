"""`tlbench ls --tracking-uri`: estimates at the throughput finished runs measured (per backbone,
input size, strategy and device), the FLOP model where the store has no match, and says which."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from tlbench.cells import expand
from tlbench.cli import main
from tlbench.preflight.estimate import train_images
from tlbench.preflight.throughput import cell_seconds, rates
from tlbench.spec import parse_grid
from tlbench.tracking import Tracker, tags

RAW = {
    "name": "est",
    "train": {"epochs": 4, "image_size": 32},
    "datasets": ["digits"],
    "backbones": [
        {"name": "test_resnet", "weights": "none"},
        {"name": "test_efficientnet", "weights": "none"},
    ],
    "strategies": ["scratch"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


def _measure(client: MlflowClient, exp: str, backbone: str, seconds: float, images: int, epochs: int) -> None:
    run = client.create_run(exp, tags={tags.CELL_ID: f"x{seconds}", tags.DEVICE: "cpu"})
    params = {
        "backbone.name": backbone,
        "strategy.name": "scratch",
        "input_size": "32",
        "train_size": str(images),
    }
    for k, v in params.items():
        client.log_param(run.info.run_id, k, v)
    client.log_metric(run.info.run_id, "device_s", seconds)
    client.log_metric(run.info.run_id, "epochs_trained", epochs)
    client.set_terminated(run.info.run_id, "FINISHED")


def test_rates_are_the_median_per_key_and_unmatched_cells_fall_back(tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    exp = Tracker(store).experiment_id("earlier")
    client = MlflowClient(store)
    for seconds in (10.0, 12.0, 30.0):  # 1000 images x 2 epochs: median 12 s -> 0.006 s per image-epoch
        _measure(client, exp, "test_resnet", seconds, 1000, 2)
    measured = rates([(r[0], r[1], r[2]) for r in _store(store)])
    assert measured == {("test_resnet", 32, "scratch", "cpu"): pytest.approx(0.006)}
    resnet, effnet = expand(parse_grid(RAW))
    expect = 0.006 * train_images(resnet) * 4
    assert cell_seconds(resnet, measured, "cpu", train_images(resnet)) == pytest.approx(expect)
    assert cell_seconds(effnet, measured, "cpu", train_images(effnet)) is None
    grid = tmp_path / "est.yaml"
    grid.write_text(yaml.safe_dump(RAW))
    result = CliRunner().invoke(main, ["ls", "--grid", str(grid), "--tracking-uri", store])
    assert result.exit_code == 0, result.output
    assert f"{expect / 60:,.1f}" in result.output and "FLOPs" in result.output
    assert "1 of 2 cells at the throughput measured" in result.output


def _store(store: str):
    from tlbench.preflight.throughput import store_runs

    return store_runs(Tracker(store))
