"""Racing for real (worker pool, 2 workers): a clearly bad configuration is dropped at the first
rung and a near-tie is not; survivors end bit-identical to an unraced run; a rerun replays the
decisions without training; --no-race continues a dropped cell from its checkpoint; a rung is a
barrier per group; on a store filled through MLflow's client, curves that cross keep their late
winner."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tlbench.cells import expand
from tlbench.executor import RunOptions, execute
from tlbench.executor.options import RacePlan
from tlbench.executor.racing import Race, check_plan, rung_epochs
from tlbench.executor.runner import CellOutcome
from tlbench.spec import SpecError, parse_grid
from tlbench.tracking import Tracker, tags

GRID = {
    "name": "race",
    "train": {"epochs": 6, "batch_size": 32, "image_size": 16, "lr": 0.1, "seed": 0, "subset": 0.5},
    "seeds": 3,
    "datasets": ["digits"],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["scratch"],
    "optimizers": [
        {"name": "sgd", "label": "good"},
        {"name": "sgd", "label": "near", "train": {"lr": 0.09}},
        # lr far too small, and a random head: it stays at chance
        {"name": "sgd", "label": "tiny", "train": {"lr": 1e-6, "head": {"init": "pytorch"}}},
    ],
    "augmentations": ["none"],
}
PLAN = RacePlan(rungs=(0.5,))


def _run(store: str, cells, race: RacePlan | None, tmp_path, workers: int = 2):
    tracker = Tracker(store)
    options = RunOptions(
        tracker.uri, tracker.experiment_id("race"), checkpoint_dir=str(tmp_path / "ckpt"), race=race
    )
    console = Console(file=io.StringIO(), width=200)
    outcomes = execute(cells, tracker, options, workers=workers, console=console)
    return {o.cell.name: o for o in outcomes}, tracker, console.file.getvalue()


def _history(tracker: Tracker, run_id: str, metric: str = "val_acc") -> list[tuple[int, float, int]]:
    return sorted((m.step, m.value, m.timestamp) for m in tracker.client.get_metric_history(run_id, metric))


@pytest.fixture(scope="module")
def raced(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("race")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    cells = expand(parse_grid(GRID))
    outcomes, tracker, out = _run(store, cells, PLAN, tmp)
    return cells, store, tmp, outcomes, tracker, out


def test_the_bad_configuration_is_dropped_at_the_first_rung_and_the_near_tie_runs_to_the_end(raced):
    cells, _, _, outcomes, tracker, out = raced
    status = {name: o.status for name, o in outcomes.items()}
    for c in cells:
        expected = "DROPPED" if "/tiny/" in c.name else "FINISHED"
        assert status[c.name] == expected, out
    tiny = outcomes["digits/test_resnet/scratch/tiny/none@s1"]
    run = tracker.client.get_run(tiny.run_id)
    assert run.info.status == "SCHEDULED"  # neither a crash (KILLED) nor a result (FINISHED)
    t = run.data.tags
    assert t[tags.RACE] == "dropped" and t[tags.RACE_RULE] == "confidence"
    assert t[tags.RACE_RUNG] == "rung 1 (epoch 3 of 6)"
    assert t[tags.RACE_LEADER] in (
        "digits/test_resnet/scratch/good/none",
        "digits/test_resnet/scratch/near/none",
    )
    assert len(_history(tracker, tiny.run_id)) == 3  # trained to the rung, not beyond
    assert run.data.metrics["epochs_trained"] == 3 and run.data.metrics["device_s"] > 0
    finished = tracker.finished_runs(tracker.experiment_id("race"))
    assert tiny.cell.id not in finished  # a dropped cell is not a result


def test_a_rung_is_a_barrier_for_its_group(raced):
    """No cell trains its fourth epoch before every cell of the group logged its third."""
    cells, _, _, outcomes, tracker, _ = raced
    at_rung = [_history(tracker, o.run_id)[2][2] for o in outcomes.values()]
    after = [_history(tracker, o.run_id)[3][2] for o in outcomes.values() if o.status == "FINISHED"]
    assert min(after) >= max(at_rung)


def test_survivors_are_bit_identical_to_an_unraced_run(raced, tmp_path):
    cells, _, _, outcomes, tracker, _ = raced
    survivors = [c for c in cells if c.name.endswith("/good/none@s0")]
    plain, plain_tracker, _ = _run(f"sqlite:///{tmp_path / 'plain.db'}", survivors, None, tmp_path)
    for c in survivors:
        raced_run, plain_run = outcomes[c.name], plain[c.name]
        assert raced_run.metrics["test_acc"] == plain_run.metrics["test_acc"]
        assert raced_run.metrics["best_val_acc"] == plain_run.metrics["best_val_acc"]
        for metric in ("val_acc", "train_loss"):
            values = [v for _, v, _ in _history(tracker, raced_run.run_id, metric)]
            assert values == [v for _, v, _ in _history(plain_tracker, plain_run.run_id, metric)]
        assert tracker.client.get_run(raced_run.run_id).data.tags[tags.RESUMES] == "1"  # paused once


def test_a_rerun_replays_the_decisions_and_no_race_continues_a_dropped_cell(raced):
    cells, store, tmp, first, tracker, _ = raced
    again, _, out = _run(store, cells, PLAN, tmp, workers=1)
    for name, o in first.items():  # the finished are found finished, the dropped dropped again
        assert again[name].status == ("SKIPPED" if o.status == "FINISHED" else "DROPPED"), out
    assert "⏸" not in out and "✓" not in out  # nothing trained
    tiny = "digits/test_resnet/scratch/tiny/none@s0"
    assert again[tiny].run_id == first[tiny].run_id
    assert len(_history(tracker, first[tiny].run_id)) == 3  # nothing trained again
    cell = next(c for c in cells if c.name == tiny)
    done, _, _ = _run(store, [cell], None, tmp, workers=1)
    run = tracker.client.get_run(done[tiny].run_id)
    assert done[tiny].status == "FINISHED" and run.info.run_id == first[tiny].run_id
    assert [s for s, _, _ in _history(tracker, run.info.run_id)] == [0, 1, 2, 3, 4, 5]  # from its checkpoint
    assert tags.RACE not in run.data.tags


def test_rungs_round_up_to_whole_epochs_and_bad_plans_name_the_key():
    cell = expand(parse_grid({**GRID, "seeds": None, "train": {**GRID["train"], "epochs": 10}}))[0]
    assert rung_epochs(cell, RacePlan()) == [2, 4, 10]  # ceil(10/9), ceil(10/3), all
    assert rung_epochs(cell, RacePlan(epochs=(3, 12))) == [3, 10]
    one = expand(parse_grid({**GRID, "seeds": None, "train": {**GRID["train"], "epochs": 1}}))[0]
    assert rung_epochs(one, RacePlan()) == [1]
    with pytest.raises(SpecError, match=r"race\.epochs\[1\].*beyond the 10 epochs"):
        check_plan([cell], RacePlan(epochs=(3, 12)), "g.yaml")
    with pytest.raises(SpecError, match=r"race\.rungs: .*must increase"):
        parse_grid({**GRID, "race": {"rungs": [0.5, 0.3]}})
    with pytest.raises(SpecError, match=r"race\.by: .*unknown axis 'datset'"):
        parse_grid({**GRID, "race": {"by": ["datset"]}})


def test_the_report_accounts_for_the_race_and_leaves_dropped_cells_out_of_the_means(raced, tmp_path):
    from tlbench import report as rp

    cells, _, _, outcomes, tracker, _ = raced
    exp = tracker.experiment_id("race")
    rep = rp.build(
        cells, tracker, exp, grid="race", rows=["dataset"], cols=["optimizer"], compare="optimizer"
    )
    grid_row = rep.race.set_index("dataset").loc["all"]
    # 3 tiny cells were dropped; the rerun test may have continued one of them to the end
    finished, dropped = int(grid_row["finished"]), int(grid_row["dropped"])
    assert grid_row["cells"] == 9 and finished + dropped == 9 and dropped in (2, 3)
    assert (grid_row["epochs_budget"], grid_row["epochs_trained"]) == (54, 6 * finished + 3 * dropped)
    assert grid_row["epochs_saved_pct"] == pytest.approx(100 * 3 * dropped / 54, abs=0.1)
    assert grid_row["device_s"] > grid_row["device_s_saved"] > 0
    assert rep.race.set_index("dataset").loc["digits", "winner"].split("/")[3] in ("good", "near")
    assert len(rep.raced_out) == dropped and rep.raced_out["race_leader"].str.contains("/scratch/").all()
    configs = rep.configs.set_index("optimizer")
    assert f"DROPPED {dropped}" in configs.loc["tiny", "status"] and configs.loc["tiny", "n"] == 3 - dropped
    md = rp.render.to_markdown(rep)
    assert "## Racing" in md and "### Raced out" in md


def test_the_command_line_refuses_a_bad_race_before_training(tmp_path):
    import yaml
    from click.testing import CliRunner

    from tlbench.cli import main

    grid = tmp_path / "race.yaml"
    grid.write_text(yaml.safe_dump({**GRID, "race": {"epochs": [2, 9]}}))
    store = f"sqlite:///{tmp_path / 'm.db'}"
    bad_axis = CliRunner().invoke(
        main, ["run", "--grid", str(grid), "--tracking-uri", store, "--race-by", "datset"]
    )
    assert bad_axis.exit_code == 2 and "unknown axis 'datset'" in bad_axis.output
    beyond = CliRunner().invoke(main, ["run", "--grid", str(grid), "--tracking-uri", store])
    assert (
        beyond.exit_code == 2 and "race.epochs[1]" in beyond.output and "beyond the 6 epochs" in beyond.output
    )
    assert not (tmp_path / "m.db").exists() or "FINISHED" not in beyond.output


# the rule on a store filled through MLflow's client: curves that cross -------------------------

CROSSING = {
    **GRID,
    "name": "crossing",
    "train": {**GRID["train"], "epochs": 9},
    "optimizers": [
        {"name": "sgd", "label": "early"},  # fast start, saturates at 0.89
        {"name": "sgd", "label": "late", "train": {"lr": 0.5}},  # trails until it anneals, wins
        {"name": "sgd", "label": "flat", "train": {"lr": 1e-3}},  # slows down far below: hopeless
    ],
}
CURVES = {  # val_acc per epoch; seed s adds 0.01 * (s - 1)
    "early": [0.60, 0.80, 0.85, 0.87, 0.88, 0.885, 0.89, 0.89, 0.89],
    "late": [0.15, 0.30, 0.50, 0.75, 0.90, 0.94, 0.96, 0.97, 0.97],
    "flat": [0.20, 0.35, 0.42, 0.45, 0.46, 0.47, 0.47, 0.47, 0.47],
}


def _fill(store: str, cells, upto: int, status: str) -> dict[str, str]:
    """One run per cell with its val_acc history up to epoch ``upto`` (no training): cell -> run id."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client, exp = MlflowClient(store), Tracker(store).experiment_id(cells[0].grid)
    ids = {}
    for i, c in enumerate(cells):
        run_tags = {
            tags.CELL_ID: c.id,
            tags.CELL: c.name,
            tags.CONFIG_ID: c.config_id or c.id,
            tags.GRID: c.grid,
        }
        run = client.create_run(exp, start_time=1_700_000_000_000 + 1000 * i, tags=run_tags)
        curve = [v + 0.01 * (c.train.seed - 1) for v in CURVES[c.name.split("/")[3]][:upto]]
        if c.name.endswith("/late/none@s1"):
            curve[1] = 0.12  # a dip below its first epoch: the race ranks by best so far
        metrics = [Metric("val_acc", v, 0, e) for e, v in enumerate(curve)]
        client.log_batch(run.info.run_id, metrics=metrics)
        client.set_terminated(run.info.run_id, status)
        ids[c.name] = run.info.run_id
    return ids


def test_a_late_winner_behind_at_the_rung_is_kept_where_the_level_alone_drops_it(tmp_path, monkeypatch):
    """Rungs at epochs 1 and 3 of 9: at both, 'late' trails 'early' with confidence (0.50 vs 0.85
    at epoch 3) but its curve is still speeding up; it wins at epoch 9. 'flat' slows down far
    below the leader. Replaying the rule on the finished runs drops 'flat' only, at epoch 3;
    ranking by the level so far (no headroom: the rule before) drops the winner at epoch 1."""
    from tlbench.stats import race_rule

    cells = expand(parse_grid(CROSSING))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _fill(store, cells, upto=9, status="FINISHED")
    tracker = Tracker(store)

    def replay():
        race = Race(cells, RacePlan(), tracker, tracker.experiment_id("crossing"), what_if=True)
        assert race.start() == []  # every value is in the store: nothing to train
        return {d.cell.name.split("/")[3]: d for d in race.dropped}

    dropped = replay()
    assert set(dropped) == {"flat"}
    assert dropped["flat"].metrics["epochs_trained"] == 3 and "+ headroom" in dropped["flat"].reason
    assert "leader digits/test_resnet/scratch/early/none" in dropped["flat"].reason
    monkeypatch.setattr(race_rule, "headroom", lambda curves, left: 0.0)  # the level alone
    old = replay()
    assert set(old) == {"late", "flat"} and old["late"].metrics["epochs_trained"] == 1


def test_a_live_race_decides_on_the_curves_a_replay_reads(tmp_path):
    """Every cell paused at its rung (epoch 3), as a race leaves them: the race drops 'flat' (its
    runs tagged), sends 'early' and 'late' on to the end; a paused outcome's curve is read from
    the store, as the replay reads it."""
    cells = expand(parse_grid(CROSSING))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _fill(store, cells, upto=3, status="SCHEDULED")
    tracker = Tracker(store)
    race = Race(cells, RacePlan(), tracker, tracker.experiment_id("crossing"))
    tasks = race.start()
    assert sorted(t.cell.name for t in tasks) == sorted(c.name for c in cells if "/flat/" not in c.name)
    assert all(t.pause_at is None for t in tasks)  # the last rung: to the end
    assert sorted(d.cell.name for d in race.dropped) == sorted(c.name for c in cells if "/flat/" in c.name)
    for d in race.dropped:
        marks = tracker.client.get_run(ids[d.cell.name]).data.tags
        assert marks[tags.RACE] == tags.DROPPED and marks[tags.RACE_RUNG] == "rung 2 (epoch 3 of 9)"
    # from the start: the first rung's pauses come back with their histories in the store
    fresh = Race(cells, RacePlan(), tracker, tracker.experiment_id("crossing"), force=True)
    first = fresh.start()
    assert {t.pause_at for t in first} == {1} and len(first) == len(cells)
    late = next(c for c in cells if c.name.endswith("/late/none@s0"))
    fresh.on_outcome(CellOutcome(late, "PAUSED", ids[late.name], {"race_val_acc": 0.14}))
    assert fresh.values[late.name] == pytest.approx({1: 0.14, 2: 0.29, 3: 0.49})
