"""The executors' one policy, on its own: order, sources, out-of-memory retries, dead workers."""

from __future__ import annotations

from helpers import make_cell

from tlbench.cells import expand
from tlbench.executor import RunOptions
from tlbench.executor.policy import OOM_PARAM, Schedule, outcome_line
from tlbench.executor.runner import ELSEWHERE, OOM_REASON, OWN_ATTEMPT, CellOutcome
from tlbench.spec import parse_grid
from tlbench.tracking import Tracker, tags

CHAIN = {
    "name": "chain",
    "train": {"epochs": 1, "batch_size": 32, "image_size": 16, "lr": 0.05, "seed": 0},
    "blocks": [
        {"name": "src", "strategies": ["scratch"], "backbones": [{"name": "test_resnet", "weights": "none"}]},
        {
            "name": "dst",
            "strategies": ["finetune"],
            "backbones": [
                {
                    "name": "test_resnet",
                    "label": "from_src",
                    "weights": "cell:digits/test_resnet/scratch/sgd/none",
                }
            ],
        },
    ],
    "datasets": ["digits"],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["scratch"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


def _schedule(cells, store, **options):
    tracker = Tracker(store)
    lines: list[str] = []
    opts = RunOptions(tracker.uri, tracker.experiment_id("chain"), **options)
    return Schedule(cells, tracker, opts, lines.append), lines


def test_a_dependent_waits_for_its_source_and_fails_with_it(store):
    src, dst = expand(parse_grid(CHAIN))
    schedule, lines = _schedule([src, dst], store)
    first = schedule.next_task()
    assert first.cell is src and schedule.next_task() is None  # dst waits while src runs
    schedule.record(first, CellOutcome(src, "FAILED", reason="boom"))
    assert schedule.next_task() is None and not schedule.active
    (_, failed) = schedule.results()
    assert (
        failed.status == "FAILED"
        and failed.reason == "source cell 'digits/test_resnet/scratch/sgd/none' failed: boom"
    )
    assert lines[0].startswith("[red]✗[/] digits/test_resnet/scratch") and len(lines) == 2


def test_out_of_memory_halves_the_batch_in_a_fresh_process_down_to_one(store):
    cell = make_cell(batch_size=4)
    schedule, lines = _schedule([cell], store)
    task = schedule.next_task()
    sizes = []
    while task is not None:
        sizes.append(task.cell.train.batch_size)
        schedule.record(task, CellOutcome(task.cell, "FAILED", reason=OOM_REASON))
        task = schedule.next_task()
        if task is not None:
            assert task.fresh_process and task.params[OOM_PARAM] == 4  # what the grid asked for
            assert task.tags[tags.OOM_RETRY] == f"batch size halved from {sizes[-1]}"
            assert task.cell.id == cell.id  # the same cell, not a new one
    assert sizes == [4, 2, 1]
    assert schedule.results()[0].reason == OOM_REASON  # at batch size 1 there is nothing left to halve


def test_a_dead_worker_is_retried_then_given_up(store):
    cell = make_cell()
    schedule, lines = _schedule([cell], store)
    for attempt in (1, 2, 3):
        task = schedule.next_task()
        assert task is not None and task.attempts == attempt - 1
        schedule.worker_died(task, "worker died (killed by SIGKILL)", None, None, retries=2)
    assert schedule.next_task() is None and not schedule.active
    assert schedule.results()[0].reason == "worker died (killed by SIGKILL), 3 times"
    assert "retry 2/2" in lines[1]


def test_a_cell_held_elsewhere_is_left_to_its_holder(store):
    """Another `tlbench run` (or machine) is training it: this run leaves it and still succeeds."""
    cell = make_cell()
    schedule, lines = _schedule([cell], store)
    task = schedule.next_task()
    schedule.record(task, CellOutcome(cell, "SKIPPED", reason=ELSEWHERE))
    assert not schedule.active and schedule.results()[0].reason == ELSEWHERE
    assert lines == [f"[yellow]↷[/] {cell.name}  running elsewhere"]


def test_a_source_held_elsewhere_or_an_own_earlier_attempt_is_waited_for(store):
    src, dst = expand(parse_grid(CHAIN))
    schedule, lines = _schedule([src, dst], store)
    task = schedule.next_task()
    schedule.record(task, CellOutcome(src, "SKIPPED", reason=ELSEWHERE))  # dst needs it
    assert schedule.active and schedule.elsewhere and not schedule.outcomes
    assert lines == [f"  waiting for {src.name} (running in another process)"]
    schedule.poll_elsewhere()  # nobody holds it and it has no run: its holder died, run it here
    assert schedule.next_task().cell is src
    single, lines = _schedule([src], store)
    single.record(single.next_task(), CellOutcome(src, "SKIPPED", reason=OWN_ATTEMPT))  # a retried Ray task
    assert single.elsewhere and lines == [f"  waiting for {src.name} (its earlier attempt)"]


def test_finished_cells_are_skipped_unless_forced(store):
    cell = make_cell()
    tracker = Tracker(store)
    exp = tracker.experiment_id("chain")
    run = tracker.start_cell(exp, cell)
    run.end("FINISHED")
    schedule, _ = _schedule([cell], store)
    assert not schedule.active and schedule.results()[0].reason == "finished"
    forced, _ = _schedule([cell], store, force=True)
    assert forced.next_task().cell is cell


def test_outcome_lines_are_one_format_for_every_backend():
    cell = make_cell()
    done = CellOutcome(cell, "FINISHED", metrics={"test_acc": 0.5, "best_val_acc": 0.25})
    assert outcome_line(done, 1.25) == f"[green]✓[/] {cell.name}  test_acc 0.5000  best_val 0.2500  1.2s"
    assert (
        outcome_line(CellOutcome(cell, "SKIPPED", reason="finished")) == f"[yellow]↷[/] {cell.name}  finished"
    )
    assert outcome_line(CellOutcome(cell, "FAILED", reason="x")) == f"[red]✗[/] {cell.name}  FAILED: x"
