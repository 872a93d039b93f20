"""Replicates: a configuration trained with several seeds, each seed its own cell.

``seeds:`` (grid, block or axis entry; the innermost wins) turns one configuration into cells that
differ only in ``train.seed``, named ``CONFIG@sSEED``. The replicate whose seed is the grid's base
``train.seed`` *is* the configuration's cell (same content, same id), so adding ``seeds:`` to a
grid never reruns what it already holds, and a configuration's id (its content at the base seed)
equals that cell's id. A replicated ``cell:`` target loads the source replicate with its own seed
(or the source's single cell when the source is not replicated). Replicates run interleaved:
seed 0 of every configuration before seed 1 of any, so a grid stopped half-way has a complete
first pass.
"""

from __future__ import annotations

from typing import Any

from tlbench.spec import SpecError, WeightsSpec, seed_list

SEP = "@s"  # CONFIG@sSEED: one syntax for --select, cell:, run names and reports


def replicate_name(config_name: str, seed: int) -> str:
    return f"{config_name}{SEP}{seed}"


def config_of(name: str) -> str:
    """The configuration a (possibly replicate) name belongs to."""
    return name.split(SEP, 1)[0]


def innermost_seeds(*layers: Any) -> tuple[int, ...] | None:
    """The seeds of the innermost layer (grid < block < dataset < ... < augmentation) that says."""
    chosen = None
    for seeds in layers:
        if seeds is not None:
            chosen = seeds
    return seed_list(chosen)


def expand_replicates(p: dict[str, Any], seeds: tuple[int, ...] | None) -> list[dict[str, Any]]:
    """The cells of one configuration: itself, or one per seed (``rank`` = position in the list)."""
    base = {**p, "config_name": p["name"], "base_train": p["train"], "replicate": None, "rank": 0}
    if seeds is None:
        return [base]
    return [
        {
            **base,
            "name": replicate_name(p["name"], s),
            "train": p["train"].model_copy(update={"seed": s}),
            "replicate": s,
            "rank": rank,
        }
        for rank, s in enumerate(seeds)
    ]


def resolve_sources(pending: list[dict[str, Any]], file: Any) -> None:
    """Point each ``cell:`` weight at a concrete cell: the named one, or for a configuration
    name the replicate with the target's seed (the single cell when the source has no replicates)."""
    replicas: dict[str, dict[int, str]] = {}
    for p in pending:
        if p["replicate"] is not None:
            replicas.setdefault(p["config_name"], {})[p["replicate"]] = p["name"]
    for p in pending:
        w: WeightsSpec = p["weights"]
        p["source_config"] = config_of(w.value) if w.kind == "cell" else None
        if w.kind != "cell" or SEP in w.value or w.value not in replicas:
            continue
        seed = p["train"].seed
        if seed not in replicas[w.value]:
            raise SpecError(
                file,
                "backbones.weights",
                f"cell:{w.value} has replicates with seeds {sorted(replicas[w.value])} but not seed {seed}, "
                f"which {p['name']} needs: give the source the same seeds, none, or name one (cell:NAME@sK)",
            )
        p["weights"] = WeightsSpec(kind="cell", value=replicas[w.value][seed])


def interleave(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed rank 0 of every configuration first, then rank 1, ...; stable within a rank."""
    return sorted(pending, key=lambda p: p["rank"])
