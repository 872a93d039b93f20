"""CellRun's end of run: artifacts, FINISHED, and what must happen before anyone sees it done."""

from __future__ import annotations

import json
import threading
import time

from helpers import make_cell, make_result
from mlflow.tracking import MlflowClient

from tlbench.tracking import Tracker, tags


def test_background_finish_completes_only_after_then_has_run(store):
    cell = make_cell(grid="trk")
    tracker = Tracker(store)
    exp = tracker.experiment_id("trk")
    run = tracker.start_cell(exp, cell)
    result = make_result(cell)
    done = threading.Event()

    def then() -> None:  # e.g. releasing the cell's claim: slow on a remote server
        time.sleep(0.3)
        done.set()

    future = run.finish(result, background=True, then=then)
    assert future is not None
    future.result(timeout=60)
    assert done.is_set()  # a caller that waited on the future never races the claim release
    assert MlflowClient(store).get_run(run.run_id).info.status == "FINISHED"


def test_then_runs_even_when_writing_artifacts_fails(store):
    cell = make_cell(grid="trk")
    tracker = Tracker(store)
    run = tracker.start_cell(tracker.experiment_id("trk"), cell)
    result = make_result(cell)
    result.history = []  # history.csv cannot be written without a header row
    ran = []
    future = run.finish(result, background=True, then=lambda: ran.append(True))
    assert future is not None and future.exception(timeout=60) is not None
    assert ran == [True]  # the claim is released all the same
    status = MlflowClient(store).get_run(run.run_id)
    assert (
        status.info.status == "FAILED"
        and "writing artifacts failed" in status.data.tags["tlbench.failure_reason"]
    )


def test_a_cell_run_logs_its_dataset_and_system_metrics(store, monkeypatch):
    """The UI's Dataset column and system metrics tab, without training: the Reporter calls."""
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    cell = make_cell(grid="trk", dataset={"name": "digits", "train": {"subset": 0.1}})
    tracker = Tracker(store)
    run = tracker.start_cell(tracker.experiment_id("trk"), cell)
    info = {"train_size": 129, "val_size": 143, "test_size": 359, "num_classes": 10, "device": "cpu"}
    run.on_start(info)
    run.on_start(info)  # a second start (the same process) logs it once
    run.end("FINISHED")
    got = MlflowClient(store).get_run(run.run_id)
    (ds_input,) = got.inputs.dataset_inputs
    ds = ds_input.dataset
    assert ds.name == "digits-10pct" and len(ds.digest) == 16 and ds.source_type == "tlbench"
    assert json.loads(ds.profile) == {
        "num_rows": 129,
        "train": 129,
        "val": 143,
        "test": 359,
        "num_classes": 10,
    }
    assert {t.key: t.value for t in ds_input.tags} == {"mlflow.data.context": "train"}
    system = {k for k in got.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    assert got.info.run_name == "digits-10pct/test_resnet/scratch/sgd/none"

    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")  # --no-system-metrics
    off = tracker.start_cell(tracker.experiment_id("trk"), make_cell("linear_probe", grid="trk"))
    off.end("FINISHED")
    got = MlflowClient(store).get_run(off.run_id)
    assert not any(k.startswith("system/") for k in got.data.metrics)
    assert got.info.run_name == "synthetic/test_resnet/lp/sgd/none"  # short: the axes are columns


def test_the_claims_experiment_is_internal_and_listed_last(store):
    client = MlflowClient(store)
    legacy = client.create_experiment(tags.LEGACY_CLAIMS_EXPERIMENT)  # a store from before #16
    tracker = Tracker(store)
    grid = tracker.experiment_id("mine")
    claims = client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT)
    assert claims.tags[tags.EXPERIMENT_NOTE].startswith("tlbench's internal bookkeeping")
    assert client.get_experiment(legacy).lifecycle_stage == "deleted"  # no live claim: retired
    listed = [e.name for e in client.search_experiments(order_by=["last_update_time DESC"])]
    assert listed.index("mine") < listed.index(tags.CLAIMS_EXPERIMENT)  # the UI's default order
    assert sorted(["mine", "zoo", tags.CLAIMS_EXPERIMENT])[-1] == tags.CLAIMS_EXPERIMENT  # by name
    exp = client.get_experiment(grid)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def _at_once(n: int, write) -> list[str]:
    """``write(i)`` from ``n`` threads released together; the errors they raised."""
    barrier, errors = threading.Barrier(n), []

    def one(i: int) -> None:
        barrier.wait()
        try:
            write(i)
        except Exception as err:  # the defect: one writer's insert fails
            errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_processes_setting_one_new_tag_at_once_all_succeed(store):
    """Two workers tagging one run (a study's parent, a summary's replicates) or one experiment
    (machines joining a grid) at the same moment: MLflow's plain set_tag / set_experiment_tag
    lose that race on the tag table's unique key about one time in seven."""
    tracker = Tracker(store)
    clients = [Tracker(store).client for _ in range(4)]
    errors: list[str] = []
    for i in range(6):
        run_id = tracker.client.create_run(tracker.experiment_id("trk")).info.run_id
        errors += _at_once(4, lambda k, r=run_id: clients[k].set_tag(r, "optuna.best_trial", str(k)))
        assert MlflowClient(store).get_run(run_id).data.tags["optuna.best_trial"] in {"0", "1", "2", "3"}
        exp = tracker.client.create_experiment(f"joined-{i}")
        errors += _at_once(4, lambda k, e=exp: clients[k].set_experiment_tag(e, "tlbench.writable", "1"))
        assert MlflowClient(store).get_experiment(exp).tags["tlbench.writable"] == "1"
    assert errors == []


def test_a_pending_end_is_delivered_by_the_next_process_unless_the_run_was_taken_over(store, tmp_path):
    """What a process whose retries ran out leaves behind (``reaping.owe_end``): the next one
    ends the run KILLED with that reason; a run another process has taken since is left alone."""
    from tlbench.tracking.heartbeat import owner_tags
    from tlbench.tracking.reaping import owe_end, settle_pending

    tracker = Tracker(store)
    exp = tracker.experiment_id("trk")
    folder = tmp_path / "ckpt" / ".pending-ends"
    mine = owner_tags()
    reason = "the tracking server was unreachable for 250 s: retries ran out at runs/log-batch"
    left = tracker.client.create_run(exp, tags={tags.CELL_ID: "a", **mine})
    taken = tracker.client.create_run(
        exp, tags={tags.CELL_ID: "b", **mine, tags.PID: "1"}
    )  # resumed by pid 1
    claim = tracker.client.create_run(
        tracker.client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT).experiment_id
    )
    owe_end(folder, tracker.uri, left.info.run_id, "KILLED", reason, claim.info.run_id, mine)
    owe_end(folder, tracker.uri, taken.info.run_id, "KILLED", reason, None, mine)
    owe_end(folder, "http://another-store:5000", "0" * 32, "KILLED", reason, None, mine)
    assert sorted(settle_pending(tracker, folder)) == sorted([left.info.run_id, taken.info.run_id])
    ended = tracker.client.get_run(left.info.run_id)
    assert ended.info.status == "KILLED" and ended.data.tags[tags.REASON] == reason
    assert tracker.client.get_run(taken.info.run_id).info.status == "RUNNING"
    assert tracker.client.get_run(claim.info.run_id).info.lifecycle_stage == "deleted"
    assert [p.stem for p in folder.glob("*.json")] == ["0" * 32]  # another store's: kept for it


def test_released_claims_their_owner_could_not_delete_are_swept(store):
    """A worker with EDIT only on the claims (granted before #29) leaves its released claims
    FINISHED; the next process that may delete runs deletes them, once per store."""
    from tlbench.tracking import claims as claims_module

    tracker = Tracker(store)
    claims = claims_module.claims_experiment(tracker)
    released = [tracker.client.create_run(claims) for _ in range(3)]
    for run in released:
        tracker.client.set_terminated(run.info.run_id, "FINISHED")
    live = tracker.client.create_run(claims)  # a RUNNING claim: someone's, kept
    claims_module._SWEPT.clear()
    claims_module.claims_experiment(tracker)
    left = tracker.client.search_runs([claims])
    assert [r.info.run_id for r in left] == [live.info.run_id]
