"""Racing (``tlbench run --race``): comparison groups trained rung by rung, the configurations
beaten with confidence dropped at each rung (``tlbench.stats.race_rule``: by what their learning
curves could still reach in the epochs they have left), every dropped cell kept resumable.

- **Groups**: cells sharing the ``by`` axes (default dataset, backbone and strategy: strategies
  learn at different paces, and a race across them drops slow starters that win in the end: from
  scratch, LP-FT before its fine-tune phase). A rung is a barrier per group, never for the grid:
  while one group waits for its last cell, the others advance.
- **Rungs**: fractions of each cell's own epochs (or explicit epochs), rounded up to whole epochs
  (at least 1); the last rung is all of its epochs. A cell pauses at a rung through its per-epoch
  checkpoint (``fit(pause_at=...)``): its schedule is its full budget's, so a survivor ends
  bit-identical to an unraced run.
- **Replay**: decisions are recomputed from the store on every run (each cell's best validation
  accuracy after every epoch up to the rung's, from its MLflow history; a live race reads a
  paused cell's history the same way), so a rerun reaches the same drops without training
  anything again, and a cell whose decision changes (more seeds) is continued.
- **States**: paused and dropped runs are SCHEDULED with ``tlbench.race`` = paused | dropped:
  not a crash (KILLED, resumed by the next run) nor a result (FINISHED). ``--no-race``
  continues them from their checkpoints.
- Cells that are another cell's ``cell:`` source are not raced: their dependents need them done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tlbench.cells import Cell
from tlbench.executor.options import RacePlan
from tlbench.executor.runner import CellOutcome, Task
from tlbench.spec import SpecError
from tlbench.tracking import Tracker, tags

DROPPED = "DROPPED"


def rung_epochs(cell: Cell, plan: RacePlan) -> list[int]:
    """The epochs a cell pauses at, then all of its epochs: rounded up, at least 1, no repeats."""
    total = cell.train.epochs
    raw = plan.epochs if plan.epochs else [max(1, math.ceil(f * total - 1e-9)) for f in plan.rungs]
    return sorted({e for e in raw if e < total}) + [total]


def check_plan(cells: list[Cell], plan: RacePlan, file: str | None = None) -> None:
    """Explicit rung epochs beyond a cell's epochs are an error naming the key and the cell."""
    for i, e in enumerate(plan.epochs or ()):
        over = next((c for c in cells if e > c.train.epochs), None)
        if over is not None:
            raise SpecError(
                file,
                f"race.epochs[{i}]",
                f"rung epoch {e} is beyond the {over.train.epochs} epochs of {over.name}; "
                "use fractions (race.rungs) for cells of different lengths",
            )


@dataclass
class _Group:
    cells: dict[str, Cell] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    rung: int = 0
    waiting: set[str] = field(default_factory=set)

    def epoch(self, name: str, plan: RacePlan) -> int:
        rungs = rung_epochs(self.cells[name], plan)
        return rungs[min(self.rung, len(rungs) - 1)]

    def last_rung(self, plan: RacePlan) -> int:
        return max((len(rung_epochs(self.cells[n], plan)) for n in self.alive), default=1) - 1


class Race:
    """The racing part of a run's schedule: which cells train to which rung, and what is dropped.

    ``force``: the store's progress is ignored (every raced cell trains from its first epoch).
    ``what_if``: replay the rule on finished runs' histories without writing anything, finished
    cells dropped like any other (``benchmarks/perf/racing.py --replay``)."""

    def __init__(
        self,
        cells: list[Cell],
        plan: RacePlan,
        tracker: Tracker,
        experiment_id: str,
        variant: str | None = None,
        force: bool = False,
        what_if: bool = False,
    ):
        self.plan, self.tracker, self.experiment_id, self.variant = plan, tracker, experiment_id, variant
        self.what_if = what_if
        sources = {c.depends_on for c in cells if c.depends_on}
        raced = [c for c in cells if c.name not in sources]
        self.groups: dict[tuple[str, ...], _Group] = {}
        for c in raced:
            g = self.groups.setdefault(tuple(c.axis_values()[a] for a in plan.by), _Group())
            g.cells[c.name] = c
            g.alive.add(c.name)
        self.group_of = {n: g for g in self.groups.values() for n in g.cells}
        self.values: dict[str, dict[int, float]] = {}  # cell -> {epoch: best val acc up to it}
        self.run_ids: dict[str, str] = {}
        self.finished: set[str] = set()  # FINISHED runs: results, never dropped
        if not force:
            self._store_progress(raced)
        self.dropped: list[CellOutcome] = []  # taken by the schedule as they come

    def __contains__(self, name: str) -> bool:
        return name in self.group_of

    # the store: how far each cell already went -------------------------------------------------
    def _store_progress(self, cells: list[Cell]) -> None:
        """Each cell's newest run (of this variant) and its validation accuracy history."""
        by_id = {c.id: c for c in cells}
        for run in self.tracker.runs(self.experiment_id):  # newest first
            cell = by_id.get(run.data.tags.get(tags.CELL_ID, ""))
            if cell is None or run.data.tags.get(tags.VARIANT) != self.variant or cell.name in self.run_ids:
                continue
            self.run_ids[cell.name] = run.info.run_id
            if run.info.status == "FINISHED":
                self.finished.add(cell.name)
            self._read_history(cell.name, run.info.run_id)

    def _read_history(self, name: str, run_id: str) -> None:
        """Best of the cell's validation metric (``val_acc``, or the grid's ``metric:``) so far, per epoch."""
        metric = self.group_of[name].cells[name].val_metric
        history = self.tracker.metric_history(run_id, metric)
        best, seen = -1.0, self.values.setdefault(name, {})
        for epoch, m in enumerate(history, start=1):
            best = max(best, m.value)
            seen[epoch] = best

    # the schedule's side -----------------------------------------------------------------------
    def start(self) -> list[Task]:
        """The first tasks of every group (cells already past a rung need none for it)."""
        return [t for g in self.groups.values() for t in self._advance(g)]

    def on_outcome(self, outcome: CellOutcome) -> list[Task]:
        """A raced cell came back (paused at its rung, finished, failed, or left elsewhere)."""
        name = outcome.cell.name
        g = self.group_of[name]
        g.waiting.discard(name)
        if outcome.run_id:
            self.run_ids[name] = outcome.run_id
        if outcome.status == "PAUSED":  # its curve from the store, as a replay reads it
            if outcome.run_id:
                self._read_history(name, outcome.run_id)
            self.values.setdefault(name, {}).setdefault(
                g.epoch(name, self.plan), outcome.metrics["race_val_acc"]
            )
        elif outcome.done:
            self.finished.add(name)
            if outcome.run_id:
                self._read_history(name, outcome.run_id)
        else:  # failed, or held by another process: out of this race
            g.alive.discard(name)
        return [] if g.waiting else self._advance(g)

    def _advance(self, g: _Group) -> list[Task]:
        """Decide every rung whose values are all known; the tasks of the first one that is not."""
        order = list(g.cells)
        while True:
            need = []
            for name in sorted(g.alive, key=order.index):
                epoch = g.epoch(name, self.plan)
                if epoch not in self.values.get(name, {}) and name not in self.finished:
                    final = epoch >= g.cells[name].train.epochs
                    need.append(Task(g.cells[name], pause_at=None if final else epoch))
            if need:
                g.waiting = {t.cell.name for t in need}
                return need
            if g.rung >= g.last_rung(self.plan):
                return []
            self._decide(g)
            g.rung += 1

    def _decide(self, g: _Group) -> None:
        """Drop the configurations beaten at this rung (every alive replicate of each)."""
        from tlbench.stats import race_decisions
        from tlbench.stats.race_rule import headroom

        by_config: dict[str, dict[int, float]] = {}
        curves: dict[str, list[list[float]]] = {}
        left: dict[str, int] = {}
        for name in g.alive:
            c, epoch = g.cells[name], g.epoch(name, self.plan)
            config, seen = c.config_name or c.name, self.values[name]
            by_config.setdefault(config, {})[c.train.seed] = seen[epoch]
            # the best-so-far curve up to the rung (cut at a gap: too short a curve has no trend)
            curve = [seen[e] for e in range(1, epoch + 1) if e in seen]
            curves.setdefault(config, []).append(curve if len(curve) == epoch else [seen[epoch]])
            left[config] = max(left.get(config, 0), c.train.epochs - epoch)
        room = {config: headroom(curves[config], left[config]) for config in by_config}
        for drop in race_decisions(by_config, level=self.plan.level, eta=self.plan.eta, headroom=room):
            for name in [n for n in g.alive if (g.cells[n].config_name or n) == drop.config]:
                g.alive.discard(name)
                if name not in self.finished or self.what_if:  # a finished run stays a result
                    self._drop(g, name, drop)

    def _drop(self, g: _Group, name: str, drop: Any) -> None:
        """The cell's run says the rung, the rule and the leader; its outcome is DROPPED."""
        cell, epoch = g.cells[name], g.epoch(name, self.plan)
        rung = f"rung {g.rung + 1} (epoch {epoch} of {cell.train.epochs})"
        run_id = self.run_ids.get(name)
        if run_id is not None and not self.what_if:
            marks = {
                tags.RACE: tags.DROPPED,
                tags.RACE_RUNG: rung,
                tags.RACE_RULE: drop.rule,
                tags.RACE_LEADER: drop.leader,
                tags.RACE_REASON: drop.why,
            }
            self.tracker.set_tags(run_id, marks)
        metrics = {"race_val_acc": self.values[name][epoch], "epochs_trained": float(epoch)}
        reason = f"raced out at {rung} by {drop.rule}: {drop.why}; leader {drop.leader}"
        self.dropped.append(CellOutcome(cell, DROPPED, run_id, metrics, reason))
