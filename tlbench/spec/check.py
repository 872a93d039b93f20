"""Checking a parsed grid: settings key by key, and every name against the registries.

Errors become ``SpecError``s naming the file, the key path (``strategies[1].params``) and the
valid choices. ``check_spec`` needs no torch: the registries it reads are plain metadata.
Backbone names are timm's, so checking them imports timm (and torch): that is the separate
``check_backbone_names``, which the commands that build models call.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tlbench.catalog.backbones import check_backbone_name, check_hub_tag, hub_model_name, split_model_name_tag
from tlbench.catalog.datasets import AUGMENTATIONS, dataset_param_names
from tlbench.catalog.optimizers import OPTIMIZERS
from tlbench.catalog.strategies import STRATEGIES
from tlbench.registry import UnknownNameError
from tlbench.spec.schema import (
    AXES,
    AugmentationEntry,
    Axes,
    BackboneEntry,
    Block,
    DatasetEntry,
    GridSpec,
    HeadConfig,
    OptimizerEntry,
    Reported,
    SpecError,
    StrategyEntry,
    TrainConfig,
    TuneSpace,
    WeightsSpec,
)

_TRAIN_KEYS = set(TrainConfig.model_fields)
_TUNE_KEYS = set(TuneSpace.model_fields)


def _loc_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def spec_error_from_validation(err: ValidationError, file: Path | str | None, prefix: str = "") -> SpecError:
    """Up to five pydantic errors as one ``SpecError``; an unknown key lists the valid ones."""
    lines = []
    for e in err.errors()[:5]:
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or "-" in p)))
        where = _loc_str(loc)
        if prefix:
            where = f"{prefix}.{where}" if where else prefix
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent_model = _model_at(loc[:-1])
            valid = sorted(parent_model.model_fields) if parent_model else []
            hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            msg = f"unknown key {loc[-1]!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            if valid:
                msg += f" (valid: {', '.join(valid)})"
        lines.append((where, msg))
    if len(lines) == 1:
        return SpecError(file, lines[0][0], lines[0][1])
    return SpecError(file, lines[0][0], lines[0][1] + "".join(f"\n  also {w}: {m}" for w, m in lines[1:]))


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model a key path points into, to list the valid keys of an unknown one."""
    model: type[BaseModel] | None = GridSpec
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        target = {
            "datasets": DatasetEntry,
            "backbones": BackboneEntry,
            "strategies": StrategyEntry,
            "optimizers": OptimizerEntry,
            "augmentations": AugmentationEntry,
            "blocks": Block,
            "head": HeadConfig,
            "reported": Reported,
        }.get(str(part))
        model = target
    return model


MAX_IMAGE_SIZE = 1024


def validate_train(raw: dict[str, Any], file: Path | str | None, where: str) -> dict[str, Any]:
    """Check a (partial) ``train:`` mapping key by key, so errors point at the entry that set them."""
    if not isinstance(raw, dict):
        raise SpecError(file, where, f"expected a mapping of training settings, got {type(raw).__name__}")
    for key in raw:
        if key not in _TRAIN_KEYS:
            hint = difflib.get_close_matches(str(key), sorted(_TRAIN_KEYS), n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise SpecError(
                file,
                f"{where}.{key}",
                f"unknown training setting {key!r}{did} (valid: {', '.join(sorted(_TRAIN_KEYS))})",
            )
    try:
        TrainConfig.model_validate(raw)
    except ValidationError as err:
        raise spec_error_from_validation(err, file, prefix=where) from None
    size = raw.get("image_size")
    if isinstance(size, int) and size > MAX_IMAGE_SIZE:  # would only fail (out of memory) mid-run
        raise SpecError(
            file,
            f"{where}.image_size",
            f"{size} px is beyond any backbone's use (at most {MAX_IMAGE_SIZE}; ImageNet models take 224-518)",
        )
    return raw


def validate_tune(raw: dict[str, Any], file: Path | str | None, where: str) -> dict[str, Any]:
    """Check a ``tune:`` mapping (search ranges) so errors point at the entry that set them."""
    if not isinstance(raw, dict):
        raise SpecError(
            file, where, f"expected a mapping like {{lr: [1e-4, 1e-1]}}, got {type(raw).__name__}"
        )
    for key in raw:
        if key not in _TUNE_KEYS:
            hint = difflib.get_close_matches(str(key), sorted(_TUNE_KEYS), n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise SpecError(
                file, f"{where}.{key}", f"cannot tune {key!r}{did} (valid: {', '.join(sorted(_TUNE_KEYS))})"
            )
    try:
        TuneSpace.model_validate(raw)
    except ValidationError as err:
        raise spec_error_from_validation(err, file, prefix=where) from None
    return raw


def _iter_scopes(spec: GridSpec) -> list[tuple[str, Axes]]:
    """(key path prefix, axes) of the grid itself and of each block."""
    scopes: list[tuple[str, Axes]] = [("", spec)]
    scopes += [(f"blocks[{i}].", b) for i, b in enumerate(spec.blocks)]
    return scopes


def check_spec(spec: GridSpec, file: Path | str | None, *, check_backbones: bool = False) -> None:
    """Resolve every name and parameter against the registries; raise the first problem found.

    ``check_backbones`` also checks backbone names and hub tags against timm
    (``check_backbone_names``), which imports torch.
    """
    validate_train(spec.train, file, "train")
    validate_tune(spec.tune, file, "tune")
    for prefix, scope in _iter_scopes(spec):
        if isinstance(scope, Block):
            validate_train(scope.train, file, f"{prefix}train")
            validate_tune(scope.tune, file, f"{prefix}tune")
        for axis in AXES:
            entries = getattr(scope, axis)
            if entries is None:
                continue
            if len(entries) == 0:
                raise SpecError(file, f"{prefix}{axis}", "an axis needs at least one entry")
            for i, entry in enumerate(entries):
                where = f"{prefix}{axis}[{i}]"
                validate_train(entry.train, file, f"{where}.train")
                validate_tune(entry.tune, file, f"{where}.tune")
                try:
                    _check_entry(axis, entry)
                except UnknownNameError as err:
                    raise SpecError(file, f"{where}.name", err.message) from None
                except (ValueError, TypeError) as err:
                    key = "weights" if axis == "backbones" and "weights" in str(err) else "params"
                    raise SpecError(file, f"{where}.{key}", str(err)) from None
    _check_axes_present(spec, file)
    _check_seed_conflicts(spec, file)
    if check_backbones:
        check_backbone_names(spec, file)


def _seed_owners(spec: GridSpec) -> list[tuple[str, Any]]:
    """(key path, item) of every block and axis entry: where ``seeds:`` or ``train:`` may stand."""
    out: list[tuple[str, Any]] = []
    for prefix, scope in _iter_scopes(spec):
        if isinstance(scope, Block):
            out.append((prefix.rstrip("."), scope))
        out += [
            (f"{prefix}{axis}[{i}]", e) for axis in AXES for i, e in enumerate(getattr(scope, axis) or ())
        ]
    return out


def _check_seed_conflicts(spec: GridSpec, file: Path | str | None) -> None:
    """``seeds:`` sets each replicate's ``train.seed``: an entry that also sets it contradicts it.
    (The grid's own ``train.seed`` is the base seed: the replicate with that seed is the cell.)"""
    owners = _seed_owners(spec)
    declared = [("seeds", spec.seeds)] + [(f"{loc}.seeds", item.seeds) for loc, item in owners]
    where = next((loc for loc, seeds in declared if seeds is not None), None)
    if where is None:
        return
    for loc, item in owners:
        if "seed" in item.train:
            raise SpecError(
                file,
                f"{loc}.train.seed",
                f"conflicts with `seeds:` ({where}): replicates set each cell's seed; remove one "
                "(the grid's own train.seed is the base seed; train.data_seed holds the data split fixed)",
            )


def _check_axes_present(spec: GridSpec, file: Path | str | None) -> None:
    """Every axis has entries: in the grid, or (with blocks) in each block or the grid."""
    if not spec.blocks:
        missing = [a for a in AXES if getattr(spec, a) is None]
        if missing:
            raise SpecError(
                file, missing[0], f"the grid has no {missing[0]} (every axis needs at least one entry)"
            )
        return
    for i, block in enumerate(spec.blocks):
        missing = [a for a in AXES if getattr(block, a) is None and getattr(spec, a) is None]
        if missing:
            raise SpecError(
                file,
                f"blocks[{i}].{missing[0]}",
                f"block {block.name!r} has no {missing[0]}, nor does the grid",
            )


def _check_params(kind: str, name: str, params: dict[str, Any], model: type[BaseModel] | None) -> None:
    if model is None:
        if params:
            raise ValueError(f"{kind} {name!r} takes no params")
        return
    try:
        model.model_validate(params)
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            raise ValueError(
                f"{kind} {name!r} has no param {key!r} (valid: {', '.join(sorted(model.model_fields)) or 'none'})"
            ) from None
        raise ValueError(f"{kind} {name!r} param {key!r}: {e['msg']}") from None


def _check_entry(axis: str, entry: Any) -> None:
    """One axis entry's name and params: ``UnknownNameError`` for a name, ``ValueError`` otherwise."""
    if axis == "datasets":
        allowed = dataset_param_names(entry.name)
        for key in entry.params:
            if key not in allowed:
                raise ValueError(
                    f"dataset {entry.name!r} has no param {key!r} (valid: {', '.join(sorted(allowed)) or 'none'})"
                )
    elif axis == "backbones":
        weights = WeightsSpec.parse(entry.weights)
        if weights.kind == "hub":
            hub_model_name(entry.name, weights.value)  # the backbone and hub:TAG name different tags
    elif axis == "strategies":
        _check_params("strategy", entry.name, entry.params, STRATEGIES.get(entry.name).params)
    elif axis == "optimizers":
        _check_params("optimizer", entry.name, entry.params, OPTIMIZERS.get(entry.name).params)
    elif axis == "augmentations":
        AUGMENTATIONS.get(entry.name)


def check_backbone_names(spec: GridSpec, file: Path | str | None) -> None:
    """Every backbone is a timm model, and every pretrained tag it loads one timm has weights for.

    Separate from ``check_spec`` because it imports timm (and torch): ``load_grid(...,
    check_backbones=True)`` calls it for the commands that go on to build models (validate, run,
    tune, prefetch); listing or expanding a grid does not need it.
    """
    for prefix, scope in _iter_scopes(spec):
        for i, entry in enumerate(scope.backbones or ()):
            weights = WeightsSpec.parse(entry.weights)
            try:
                check_backbone_name(entry.name)
                if weights.kind == "hub":
                    name = hub_model_name(entry.name, weights.value)
                    if split_model_name_tag(name)[1]:
                        check_hub_tag(name)
            except UnknownNameError as err:
                raise SpecError(file, f"{prefix}backbones[{i}].name", err.message) from None
