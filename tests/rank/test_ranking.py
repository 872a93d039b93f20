"""``rank_grid`` / ``tlbench rank`` end to end: a tiny grid trained into a temporary store, its
backbones scored from the feature store, the scores logged and checked against the results."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

import tlbench
from tlbench.cli import main
from tlbench.features.store import FeatureStore
from tlbench.rank.scores import RankError
from tlbench.tracking import tags
from tlbench.tracking.rankings import RANK, latest_rankings, ranking_values

GRID = """
name: rank_e2e
train: {epochs: 2, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
optimizers: [sgd]
augmentations: [none]
blocks:
  - name: source
    datasets:
      - {name: synthetic, params: {classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}
    backbones: [{name: test_resnet, weights: none}]
    strategies: [scratch]
  - name: transfer
    seeds: 2
    datasets: [{name: digits, train: {subset: 0.15}}]
    backbones:
      - {name: test_resnet, label: random, weights: none}
      - {name: test_resnet, label: fractal, weights: "cell:synthetic/test_resnet/scratch/sgd/none"}
      - {name: test_resnet, label: fractal-wide, model_kwargs: {drop_rate: 0.1}, weights: "cell:synthetic/test_resnet/scratch/sgd/none"}
    strategies: [{name: linear_probe, params: {solver: lbfgs}}, finetune]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The grid, its source trained (and, for the check, every cell), in a module-wide store."""
    root = tmp_path_factory.mktemp("rank")
    path = root / "rank_e2e.yaml"
    path.write_text(GRID)
    store = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    g = tlbench.load_grid(path)
    with pytest.raises(RankError, match="not trained yet: synthetic/test_resnet/scratch/sgd/none"):
        tlbench.rank_grid(g, tracking_uri=store, scores="logme")
    result = tlbench.run_grid(g, tracking_uri=store, system_metrics=False)
    assert not result.failed
    return g, store


@pytest.mark.slow
def test_rank_scores_every_backbone_logs_a_run_and_checks_against_finetune(trained):
    g, store = trained
    ranking = tlbench.rank_grid(g, tracking_uri=store)
    v = ranking.values
    assert set(v["backbone"]) == {"random", "fractal", "fractal-wide"}
    assert set(v["seed"]) == {0, 1}
    assert set(v["score"]) == {"logme", "leep", "nce", "hscore", "reg_hscore", "transrate", "knn", "probe"}
    # LEEP and NCE need the source's classifier: the random init has none, and says so
    leep = v[v["score"] == "leep"].set_index(["backbone", "seed"])["value"]
    assert all(math.isnan(leep[("random", s)]) for s in (0, 1))
    assert all(math.isfinite(leep[("fractal", s)]) for s in (0, 1))
    assert any("leep skipped for random on digits-15pct: random init" in n for n in ranking.notes)
    # drop_rate acts only in training: same eval-mode features, same scores as "fractal"
    logme = v[v["score"] == "logme"].set_index(["backbone", "seed"])["value"]
    assert logme[("fractal", 0)] == pytest.approx(logme[("fractal-wide", 0)])
    # a random init is drawn per seed: its features (and scores) differ between seeds
    assert logme[("random", 0)] != logme[("random", 1)]
    # checked against the finished finetune cells: three backbones, two seeds
    a = ranking.agreement.set_index("score")
    assert set(a.index) >= {"logme", "probe"}
    assert a.loc["logme", "n_backbones"] == 3 and a.loc["logme", "n_seeds"] == 2
    assert -1 <= a.loc["logme", "weighted_tau"] <= 1
    assert ranking.seconds["total"] > 0 and ranking.seconds["features"] > 0
    # the probe is the grid's own L-BFGS probe cell's best val accuracy: solving it again agrees
    from tlbench.rank.ranking import check_targets, score_targets

    one = [t for t in check_targets(g.cells, _tracker(store), exp_id(store)) if t.backbone == "fractal"][:1]
    fresh, _, _ = score_targets(
        one,
        ["probe"],
        _weights(store, one[0].cell),
        data_dir=None,
        device=None,
        metric_of=lambda t: "acc",
        say=print,
    )
    probe = v[v["score"] == "probe"].set_index(["backbone", "seed"])["value"]
    assert fresh["value"].iloc[0] == pytest.approx(probe[("fractal", one[0].seed)], abs=1e-9)
    # one MLflow run for the dataset, its metrics the values above
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("rank_e2e")
    run = latest_rankings(_tracker(store), exp.experiment_id)["digits-15pct"]
    assert run.data.tags[RANK] == "digits-15pct" and run.data.tags[tags.VARIANT] == "rank"
    assert run.data.metrics["logme.fractal.s1"] == pytest.approx(logme[("fractal", 1)])
    assert run.data.metrics["logme.fractal"] == pytest.approx(
        (logme[("fractal", 0)] + logme[("fractal", 1)]) / 2
    )
    assert run.data.metrics["weighted_tau.logme"] == pytest.approx(a.loc["logme", "weighted_tau"])
    assert "leep.random" not in run.data.metrics
    back = {
        (r["backbone"], r["seed"], r["score"]): r["value"] for r in ranking_values(run, ["logme", "leep"])
    }
    assert back[("fractal", 0, "logme")] == pytest.approx(logme[("fractal", 0)])
    # the rank run is no cell's: the grid's report still counts its cells
    assert len(tlbench.results(g, tracking_uri=store).cells) == len(g.cells)


def exp_id(store):
    return MlflowClient(store).get_experiment_by_name("rank_e2e").experiment_id


def _weights(store, cell):
    import tempfile
    from pathlib import Path

    from tlbench.rank.ranking import _Weights

    w = _Weights(_tracker(store), exp_id(store), Path(tempfile.mkdtemp()))
    return w.file


def _tracker(store):
    from tlbench.tracking import Tracker

    return Tracker(store)


@pytest.mark.slow
def test_features_come_from_the_store_the_probes_filled(trained, tmp_path, monkeypatch):
    g, store = trained
    monkeypatch.setenv("TLBENCH_FEATURE_STORE", str(tmp_path / "features"))
    first = tlbench.rank_grid(g, tracking_uri=store, scores="logme,knn", log=False)
    entries = FeatureStore(tmp_path / "features").entries()
    assert entries  # extracted once...
    again = tlbench.rank_grid(g, tracking_uri=store, scores="logme,knn", log=False)
    assert len(FeatureStore(tmp_path / "features").entries()) == len(entries)  # ...then read
    assert list(again.values["value"]) == list(first.values["value"])
    # a frozen probe of the grid reads what rank extracted: same key
    probe = [c for c in g.cells if c.strategy.name == "linear_probe" and c.labels["backbone"] == "fractal"][0]
    tlbench.run_grid(g, select=[probe.name], tracking_uri=store, force=True, system_metrics=False)
    run = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("rank_e2e").experiment_id],
        filter_string=f"tags.`{tags.CELL_ID}` = '{probe.id}'",
        order_by=["start_time DESC"],
        max_results=1,
    )[0]
    splits = dict(kv.split(":") for kv in run.data.params["feature_store.splits"].split(","))
    assert splits["train"] == "hit"  # (test was never extracted by rank: scores do not read it)


@pytest.mark.slow
def test_order_by_runs_the_best_scored_backbone_first(trained):
    g, store = trained
    from tlbench.api import order_cells

    tracker = _tracker(store)
    exp = tracker.experiment_id(g.name)
    order = order_cells(g.cells, "probe", tracker, exp, grid=g.name)
    ranking = tlbench.rank_grid(g, tracking_uri=store, scores="probe", log=False)
    table = ranking.table[ranking.table["score"] == "probe"].sort_values("mean", ascending=False)
    transfer = [c for c in order if c.strategy.name != "scratch"]
    assert transfer[0].labels["backbone"] == table["backbone"].iloc[0]
    with pytest.raises(RankError, match="cannot be computed for random on digits-15pct"):
        order_cells(g.cells, "leep", tracker, exp, grid=g.name)


def test_bad_scores_exit_2_listing_the_valid_ones(write_grid, store):
    path = write_grid(GRID, "rank_e2e.yaml")
    res = CliRunner().invoke(
        main, ["rank", "--grid", str(path), "--tracking-uri", store, "--metrics", "logme,bogus"]
    )
    assert res.exit_code == 2, res.output
    assert "unknown score 'bogus'" in res.output and "logme, leep, nce" in res.output
    res = CliRunner().invoke(
        main,
        ["run", "--grid", str(path), "--tracking-uri", store, "--order-by", "bogus", "--no-system-metrics"],
    )
    assert res.exit_code == 2, res.output
    assert "unknown score 'bogus'" in res.output
