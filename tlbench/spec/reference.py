"""The grid reference (``docs/grid-reference.md``), generated from the schema and the catalogs:
every key a grid may hold, its type, default and description, and every name an axis entry may
take with its params. One source for each fact: the pydantic fields' descriptions; a test checks
the page is current (``python -m tlbench.spec.reference > docs/grid-reference.md`` rewrites it).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from tlbench.catalog.datasets import AUGMENTATIONS, CATALOG
from tlbench.catalog.optimizers import OPTIMIZERS
from tlbench.catalog.strategies import STRATEGIES
from tlbench.spec.race import RaceConfig
from tlbench.spec.schema import (
    BackboneEntry,
    Block,
    DatasetEntry,
    GridSpec,
    HeadConfig,
    Reported,
    StrategyEntry,
    TrainConfig,
    TuneSpace,
)

HEADER = """# Grid reference

Generated from tlbench's schema and catalogs (`python -m tlbench.spec.reference`); a test fails
when it is out of date. The guide to what these keys do together is [grids](grids.md).
"""


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = re.sub(r"\b(typing|tlbench\.[\w.]+)\.", "", text).replace("NoneType", "None")
    return text.replace("|", "\\|")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(see below)"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"`{value}`" if value not in ("", None, (), {}) else ("none" if value is None else "empty")


def fields_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    """A model's keys: name, type, default, description."""
    rows = ["| key | type | default | what it is |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        text = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {text} |")
    return "\n".join(rows)


def _params(model: type[BaseModel] | None) -> str:
    if model is None:
        return "no params"
    parts = []
    for name, field in model.model_fields.items():
        desc = f": {field.description}" if field.description else ""
        parts.append(f"`{name}` ({_default(field)}){desc}")
    return "; ".join(parts) or "no params"


def names_table(title: str, rows: list[tuple[str, str, str]]) -> str:
    lines = [f"## {title}", "", "| name | what it is | params |", "|---|---|---|"]
    lines += [f"| `{n}` | {d} | {p} |" for n, d, p in rows]
    return "\n".join(lines)


def grid_reference() -> str:
    """The whole page, as Markdown."""
    axes = ("datasets", "backbones", "strategies", "optimizers", "augmentations", "blocks")
    sections = [
        HEADER,
        "## The grid file (top level)",
        "",
        "Besides the five axes (`datasets`, `backbones`, `strategies`, `optimizers`, "
        "`augmentations`: lists of entries, below) and `exclude` (rules of axis globs):",
        "",
        fields_table(GridSpec, skip=(*axes, "exclude")),
        "## `blocks[]`: sub-grids",
        "",
        "A block may replace any axis and adds its own settings, excludes and seeds:",
        "",
        fields_table(Block, skip=axes[:-1]),
        "## Axis entries",
        "",
        "Every entry (or a bare name: `- digits`) has `name`, `label`, `train`, `tune` and `seeds`:",
        "",
        fields_table(StrategyEntry, skip=("params",)),
        "",
        "Datasets, strategies and optimizers also take `params` (below); datasets take `metric`, "
        "backbones `weights` and `model_kwargs`:",
        "",
        fields_table(DatasetEntry, skip=tuple(StrategyEntry.model_fields)),
        "",
        fields_table(BackboneEntry, skip=tuple(StrategyEntry.model_fields)),
        "## `train:` settings (grid, block or any entry; later layers win)",
        "",
        fields_table(TrainConfig),
        "## `train.head`",
        "",
        fields_table(HeadConfig),
        "## `tune:` ranges (`tlbench tune`)",
        "",
        fields_table(TuneSpace),
        "## `race:` (`tlbench run --race`)",
        "",
        fields_table(RaceConfig),
        "## `reported:` numbers (cell-name glob -> numbers published elsewhere)",
        "",
        fields_table(Reported),
        *_catalogs(),
    ]
    return "\n".join(_spaced(sections)).rstrip() + "\n"


def _catalogs() -> list[str]:
    """The names an axis entry may take, with what they are and their params."""
    return [
        names_table(
            "Datasets",
            [
                (
                    n,
                    CATALOG.get(n).description,
                    ", ".join(f"`{k}` (`{v}`)" for k, v in CATALOG.get(n).params.items()) or "no params",
                )
                for n in CATALOG.names()
            ],
        ),
        names_table(
            "Strategies",
            [
                (n, STRATEGIES.get(n).description, _params(STRATEGIES.get(n).params))
                for n in STRATEGIES.names()
            ],
        ),
        names_table(
            "Optimizers",
            [
                (n, OPTIMIZERS.get(n).description, _params(OPTIMIZERS.get(n).params))
                for n in OPTIMIZERS.names()
            ],
        ),
        names_table(
            "Augmentations",
            [
                (
                    n,
                    AUGMENTATIONS.get(n).description,
                    "random" if AUGMENTATIONS.get(n).random else "deterministic",
                )
                for n in AUGMENTATIONS.names()
            ],
        ),
    ]


def _spaced(sections: list[str]) -> list[str]:
    """A blank line after each heading and before each table."""
    out: list[str] = []
    for s in sections:
        if s.startswith("## ") and out and out[-1] != "":
            out.append("")
        out.append(s)
    return out


if __name__ == "__main__":
    print(grid_reference(), end="")
