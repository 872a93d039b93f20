"""Expand a grid spec into cells: the cross product of its axes, minus excludes, in run order.

Needs no torch: the registries it fills defaults from are plain metadata, so listing a grid
(``tlbench ls``) stays fast.

A cell's id is a hash of what determines its result (names, params with defaults filled in,
non-default training settings, and for ``cell:`` weights the *id* of the source cell), so the
same spec gives the same ids whatever the order of entries or keys. Its name is the readable
``dataset/backbone/strategy/optimizer/augmentation`` built from the entries' labels.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tlbench.catalog.datasets import AUGMENTATIONS, dataset_param_names
from tlbench.catalog.optimizers import OPTIMIZERS
from tlbench.catalog.strategies import (
    LBFGS_IGNORES,
    STRATEGIES,
    id_params,
    lbfgs_conflict,
    lbfgs_ignored,
    lbfgs_probe,
)
from tlbench.cells.cell import Cell
from tlbench.cells.replicates import expand_replicates, innermost_seeds, interleave, resolve_sources
from tlbench.spec import (
    AXES,
    AXIS_SINGULAR,
    BackboneEntry,
    DatasetEntry,
    GridSpec,
    OptimizerEntry,
    SpecError,
    StrategyEntry,
    TrainConfig,
    WeightsSpec,
    merge_train,
    merge_tune,
)
from tlbench.spec.scopes import Scope, scopes

ID_LENGTH = 12
# The training recipe's version, part of every cell's id. Bump it when a default changes what a
# cell trains without changing its spec, so stores rerun such cells instead of mixing old and new
# results under one id. 2: one head init for every backbone (zero), BatchNorm mode per strategy.
RECIPE = 2


def _filled_params(axis: str, entry: Any) -> dict[str, Any]:
    """Params with defaults filled in, so ``{name: partial}`` and its spelled-out form are one cell."""
    if axis in ("strategies", "optimizers"):
        registry = STRATEGIES if axis == "strategies" else OPTIMIZERS
        model = registry.get(entry.name).params
        return model.model_validate(entry.params).model_dump(mode="json") if model else {}
    if axis == "datasets":
        return {**dataset_param_names(entry.name), **entry.params}
    return {}


def _auto_label(axis: str, entry: Any) -> str:
    if entry.label:
        return entry.label
    if axis == "datasets" and entry.train.get("subset") is not None:
        pct = float(entry.train["subset"]) * 100
        return f"{entry.name}-{pct:g}pct"
    if axis == "datasets" and entry.train.get("shots") is not None:
        return f"{entry.name}-{int(entry.train['shots'])}shot"  # dtd-5shot
    if axis == "datasets" and entry.train.get("train_examples") is not None:
        return f"{entry.name}-{int(entry.train['train_examples'])}ex"  # dtd-1000ex (VTAB-1k)
    return entry.name


def _matches(rule: dict[str, str], labels: dict[str, str], names: dict[str, str]) -> bool:
    return all(
        fnmatch.fnmatchcase(labels[k], pat) or fnmatch.fnmatchcase(names[k], pat) for k, pat in rule.items()
    )


def _lbfgs_cell(
    entries: dict[str, Any], train: TrainConfig, name: str, scope: Scope, file: Path | str | None
) -> tuple[TrainConfig, dict[str, Any]]:
    """An L-BFGS probe: one pass (``epochs: 1``) and what it ignores, or the SpecError naming
    its entry when it cannot run as the grid combines it (``strategies.lbfgs_conflict``)."""
    strategy, aug, opt = entries["strategies"], entries["augmentations"], entries["optimizers"]
    why = lbfgs_conflict(train, aug.label or aug.name, AUGMENTATIONS.get(aug.name).random)
    if why:
        index = list(scope.axes.strategies or ()).index(strategy)
        pair = f"{{strategy: {strategy.label or strategy.name}, augmentation: {aug.label or aug.name}}}"
        raise SpecError(
            file,
            f"{scope.where['strategies']}[{index}].params.solver",
            f"cell {name}: {why.replace('{pair}', pair)}",
        )
    return train.model_copy(update={"epochs": 1}), {
        "optimizer": opt.label or opt.name,
        **lbfgs_ignored(train),
    }


def _digest(content: dict[str, Any]) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:ID_LENGTH]


def expand(spec: GridSpec, file: Path | str | None = None) -> list[Cell]:
    """All cells of a grid, dependencies first, otherwise in declaration order."""
    pending: list[dict[str, Any]] = []
    for scope in scopes(spec):
        axis_entries = [list(getattr(scope.axes, a)) for a in AXES]
        for combo in itertools.product(*axis_entries):
            entries = dict(zip(AXES, combo, strict=True))
            labels = {AXIS_SINGULAR[a]: _auto_label(a, e) for a, e in entries.items()}
            names = {AXIS_SINGULAR[a]: e.name for a, e in entries.items()}
            if any(_matches(rule, labels, names) for rule in scope.excludes):
                continue
            filled = {a: _filled_params(a, e) for a, e in entries.items()}
            ds: DatasetEntry = entries["datasets"].model_copy(update={"params": filled["datasets"]})
            st: StrategyEntry = entries["strategies"].model_copy(update={"params": filled["strategies"]})
            op: OptimizerEntry = entries["optimizers"].model_copy(update={"params": filled["optimizers"]})
            bb: BackboneEntry = entries["backbones"]
            name = "/".join(labels[AXIS_SINGULAR[a]] for a in AXES)
            layers = (spec.train, scope.train, *(entries[a].train for a in AXES))
            train = _merged_train(layers, name, file)
            ignored: dict[str, Any] = {}
            if lbfgs_probe(st.name, st.params) is not None:
                train, ignored = _lbfgs_cell(entries, train, name, scope, file)
            tune = merge_tune(spec.tune, scope.tune, *(entries[a].tune for a in AXES))
            weights = WeightsSpec.parse(bb.weights)
            if st.name == "scratch":
                weights = WeightsSpec(kind="none")  # scratch means random init, whatever the entry says
            seeds = innermost_seeds(spec.seeds, scope.seeds, *(entries[a].seeds for a in AXES))
            cell = {
                "block": scope.block,
                "dataset": ds,
                "backbone": bb,
                "strategy": st,
                "optimizer": op,
                "augmentation": entries["augmentations"],
                "weights": weights,
                "train": train,
                "tune": tune,
                "labels": labels,
                "name": name,
                "metric": ds.metric or scope.metric,
                "ignored": ignored,
            }
            pending += expand_replicates(cell, seeds)

    by_name = _unique(pending, spec, file)
    for p in by_name.values():
        p["reported"] = _reported_for(spec, p)
    resolve_sources(list(by_name.values()), file)
    return _with_ids(spec, _topological(interleave(list(by_name.values())), file))


def _merged_train(layers: tuple[dict[str, Any], ...], name: str, file: Path | str | None) -> TrainConfig:
    """The cell's settings; a conflict between layers (``subset`` on the grid, ``shots`` on an entry)
    is a SpecError naming the cell, as one layer's own conflict names its key path."""
    try:
        return merge_train(*layers)
    except ValidationError as err:
        msg = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise SpecError(
            file, "train", f"cell {name}: {msg}; unset one in a later layer (e.g. subset: null)"
        ) from None


def _unique(
    pending: list[dict[str, Any]], spec: GridSpec, file: Path | str | None
) -> dict[str, dict[str, Any]]:
    """One entry per name: a cell declared twice (e.g. in two blocks) is kept once; two different
    cells under one name are an error."""
    by_name: dict[str, dict[str, Any]] = {}
    for p in pending:
        if p["name"] in by_name:
            if _content(by_name[p["name"]], {}) != _content(p, {}):
                raise SpecError(
                    file,
                    "blocks" if spec.blocks else "",
                    f"two different cells are both named {p['name']!r}; give one of their entries a `label`",
                )
            continue
        by_name[p["name"]] = p
    return by_name


def _with_ids(spec: GridSpec, ordered: list[dict[str, Any]]) -> list[Cell]:
    """Cells with their ids (sources first: a ``cell:`` target's id holds its source's)."""
    ids: dict[str, str] = {}
    config_ids: dict[str, str] = {}
    cells = []
    for p in ordered:
        dep = p["weights"].value if p["weights"].kind == "cell" else None
        cid = _digest(_content(p, ids))
        config_ids.setdefault(p["config_name"], _digest(_content(p, config_ids, config=True)))
        ids[p["name"]] = cid
        fields = {k: v for k, v in p.items() if k not in ("base_train", "rank", "source_config")}
        cells.append(
            Cell(
                grid=spec.name,
                id=cid,
                depends_on=dep,
                depends_on_id=ids.get(dep or ""),
                config_id=config_ids[p["config_name"]],
                **fields,
            )
        )
    return cells


def _reported_for(spec: GridSpec, p: dict[str, Any]) -> dict[str, Any]:
    """Reported numbers whose glob matches the cell's name: the grid's, then its block's."""
    out: dict[str, Any] = {}
    scopes = [spec.reported] + [b.reported for b in spec.blocks if b.name == p["block"]]
    for reported in scopes:
        for pattern, numbers in reported.items():
            if fnmatch.fnmatchcase(p["name"], pattern):
                out.update(numbers.model_dump(exclude_none=True))
    return out


def _content(p: dict[str, Any], ids: dict[str, str], config: bool = False) -> dict[str, Any]:
    """What determines a cell's result (``config``: its configuration's, at the base seed, with a
    ``cell:`` source's configuration id: the same for every replicate)."""
    w: WeightsSpec = p["weights"]
    weights: Any = str(w)
    if w.kind == "cell":
        source = p["source_config"] if config else w.value
        weights = {"cell": ids.get(source, source)}
    train = p["base_train"] if config else p["train"]
    content = {  # what determines a cell's result; labels and reported numbers do not
        "recipe": RECIPE,
        "dataset": {"name": p["dataset"].name, "params": p["dataset"].params},
        "backbone": {"name": p["backbone"].name, "weights": weights, "kwargs": p["backbone"].model_kwargs},
        "strategy": {
            "name": p["strategy"].name,
            "params": id_params(p["strategy"].name, p["strategy"].params),
        },
        "optimizer": {"name": p["optimizer"].name, "params": p["optimizer"].params},
        "augmentation": p["augmentation"].name,
        "train": train.model_dump(mode="json", exclude_defaults=True),
    }
    if p["metric"] != "acc":  # it picks the best epoch (or λ); acc, the default, left out: ids stay
        content["metric"] = p["metric"]
    if p["ignored"]:  # an L-BFGS probe: what it ignores is no part of its result
        content["optimizer"] = None
        content["train"] = {k: v for k, v in content["train"].items() if k not in LBFGS_IGNORES}
    return content


def _topological(items: list[dict[str, Any]], file: Path | str | None) -> list[dict[str, Any]]:
    """Stable topological order: a ``cell:`` source always runs before the cells it initialises."""
    names = {p["name"] for p in items}
    for p in items:
        w = p["weights"]
        if w.kind == "cell" and w.value not in names:
            close = [n for n in names if n.split("/")[0] == w.value.split("/")[0]] or sorted(names)
            raise SpecError(
                file,
                "backbones.weights",
                f"cell:{w.value} names no cell of this grid (cells include: {', '.join(sorted(close)[:5])})",
            )
    done: set[str] = set()
    out: list[dict[str, Any]] = []
    visiting: set[str] = set()
    index = {p["name"]: p for p in items}

    def visit(p: dict[str, Any]) -> None:
        if p["name"] in done:
            return
        if p["name"] in visiting:
            raise SpecError(
                file, "backbones.weights", f"cell dependencies form a cycle through {p['name']!r}"
            )
        visiting.add(p["name"])
        w = p["weights"]
        if w.kind == "cell":
            visit(index[w.value])
        visiting.discard(p["name"])
        done.add(p["name"])
        out.append(p)

    for p in items:
        visit(p)
    return out
