"""The grid spec: what a ``benchmarks/grids/*.yaml`` file may say, validated with pydantic.

Every error is raised as ``SpecError`` naming the file, the key path (``backbones[1].weights``)
and the valid choices, so the CLI can print one clear message and exit 2 without a traceback.
Names are checked against the registries (datasets, strategies, optimizers, augmentations) and
backbones against timm's model registry.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

AXES = ("datasets", "backbones", "strategies", "optimizers", "augmentations")
AXIS_SINGULAR = {
    "datasets": "dataset",
    "backbones": "backbone",
    "strategies": "strategy",
    "optimizers": "optimizer",
    "augmentations": "augmentation",
}
GRIDS_DIR = Path("benchmarks") / "grids"


class SpecError(ValueError):
    """A grid file that cannot be used: says which file, which key, and what would be valid."""

    def __init__(self, file: str | Path | None, loc: str, message: str):
        self.file = str(file) if file is not None else "<grid>"
        self.loc = loc
        self.detail = message
        super().__init__(f"{self.file}: {loc}: {message}" if loc else f"{self.file}: {message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeadConfig(_Strict):
    """The new classifier: ``linear`` or an ``mlp`` with hidden sizes and dropout (seeds 002/003).

    ``init`` is how its logits layer starts, the same for every backbone family
    (``tlbench.models.init_head_layer``): ``zero`` (default), ``normal`` (std 0.01) or ``pytorch``.
    """

    type: Literal["linear", "mlp"] = "linear"
    hidden: tuple[int, ...] = ()
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    init: Literal["zero", "normal", "pytorch"] = "zero"

    @model_validator(mode="after")
    def _mlp_needs_hidden(self) -> HeadConfig:
        if self.type == "mlp" and not self.hidden:
            raise ValueError("an mlp head needs hidden sizes, e.g. hidden: [256]")
        return self


class TrainConfig(_Strict):
    """Training settings shared by a grid; any axis entry may override any of them."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    lr: float = Field(0.01, gt=0)
    lr_scale: float = Field(1.0, gt=0, description="multiplies lr; scales from several entries multiply")
    weight_decay: float = Field(0.0, ge=0)
    image_size: int | None = Field(None, ge=8, description="input size; None = the backbone's default")
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    step_size: int = Field(10, ge=1, description="epochs between decays of the step schedule")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor of the step schedule")
    min_lr: float = Field(0.0, ge=0)
    seed: int = 0
    subset: float | None = Field(None, gt=0, le=1, description="stratified fraction of train to use")
    val_fraction: float = Field(0.1, gt=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    head: HeadConfig = HeadConfig()
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = True

    @property
    def effective_lr(self) -> float:
        """The learning rate a cell trains with: ``lr`` times the product of every ``lr_scale``."""
        return self.lr * self.lr_scale


_TRAIN_KEYS = set(TrainConfig.model_fields)


class TuneSpace(_Strict):
    """What ``tlbench tune`` searches for a cell; a key left unset takes the strategy's default
    (``tlbench.tune.default_space``). Not part of a cell's id: it does not change its result."""

    lr: tuple[float, float] | None = Field(None, description="[low, high], searched log-uniformly")
    batch_size: tuple[int, ...] | None = Field(None, description="the batch sizes to choose from")

    @field_validator("lr")
    @classmethod
    def _lr_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] < v[1]:
            raise ValueError(f"lr range must be [low, high] with 0 < low < high, got {list(v)}")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch_choices(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None:
            if not v:
                raise ValueError("batch_size needs at least one choice, e.g. [32, 64, 128]")
            if any(b < 1 for b in v):
                raise ValueError(f"batch sizes must be >= 1, got {list(v)}")
        return v


_TUNE_KEYS = set(TuneSpace.model_fields)


def _name_shorthand(value: Any) -> Any:
    """Axis entries may be written as a bare name: ``- digits`` == ``- {name: digits}``."""
    if isinstance(value, str):
        return {"name": value}
    return value


class _Entry(_Strict):
    name: str = Field(min_length=1)
    label: str | None = Field(None, min_length=1)
    train: dict[str, Any] = Field(default_factory=dict)
    tune: dict[str, Any] = Field(default_factory=dict, description="search space for `tlbench tune`")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _name_shorthand(value)

    @field_validator("label")
    @classmethod
    def _no_slash(cls, v: str | None) -> str | None:
        if v is not None and "/" in v:
            raise ValueError("a label cannot contain '/' (it separates the parts of a cell name)")
        return v


class DatasetEntry(_Entry):
    params: dict[str, Any] = Field(default_factory=dict)


class BackboneEntry(_Entry):
    weights: str = Field("hub", description="hub | hub:TAG | file:PATH | cell:CELL_NAME | run:RUN_ID | none")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to timm.create_model")


class StrategyEntry(_Entry):
    params: dict[str, Any] = Field(default_factory=dict)


class OptimizerEntry(_Entry):
    params: dict[str, Any] = Field(default_factory=dict)


class AugmentationEntry(_Entry):
    pass


class Axes(_Strict):
    datasets: tuple[DatasetEntry, ...] | None = None
    backbones: tuple[BackboneEntry, ...] | None = None
    strategies: tuple[StrategyEntry, ...] | None = None
    optimizers: tuple[OptimizerEntry, ...] | None = None
    augmentations: tuple[AugmentationEntry, ...] | None = None
    exclude: tuple[dict[str, str], ...] = ()

    @field_validator("exclude")
    @classmethod
    def _exclude_keys(cls, rules: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
        valid = set(AXIS_SINGULAR.values())
        for rule in rules:
            for key in rule:
                if key not in valid:
                    hint = difflib.get_close_matches(key, sorted(valid), n=1)
                    did = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise ValueError(f"unknown exclude key {key!r}{did} (valid: {', '.join(sorted(valid))})")
        return rules


class Reported(_Strict):
    """A number published elsewhere for a cell (e.g. a seed report), shown beside tlbench's."""

    test_acc: float | None = Field(None, ge=0, le=1)
    best_val_acc: float | None = Field(None, ge=0, le=1)
    source: str = ""


class Block(Axes):
    """A sub-grid: inherits the grid's axes and settings, overrides some (e.g. a source task)."""

    name: str = Field(min_length=1)
    train: dict[str, Any] = Field(default_factory=dict)
    tune: dict[str, Any] = Field(default_factory=dict)
    reported: dict[str, Reported] = Field(
        default_factory=dict, description="cell-name glob -> reported numbers"
    )


class GridSpec(Axes):
    name: str = ""
    description: str = ""
    train: dict[str, Any] = Field(default_factory=dict)
    tune: dict[str, Any] = Field(default_factory=dict, description="search space for `tlbench tune`")
    blocks: tuple[Block, ...] = ()
    reported: dict[str, Reported] = Field(
        default_factory=dict, description="cell-name glob -> reported numbers"
    )


class WeightsSpec(_Strict):
    """Where a backbone's initial weights come from."""

    kind: Literal["hub", "file", "cell", "run", "none"]
    value: str = ""  # hub tag, file path, cell name or MLflow run id

    @classmethod
    def parse(cls, text: str) -> WeightsSpec:
        text = text.strip()
        if text in ("none", "random", ""):
            return cls(kind="none")
        if text == "hub":
            return cls(kind="hub")
        for kind in ("hub", "file", "cell", "run"):
            if text.startswith(kind + ":"):
                value = text[len(kind) + 1 :].strip()
                if not value:
                    raise ValueError(f"'{kind}:' needs a value")
                return cls(kind=kind, value=value)  # type: ignore[arg-type]
        if text.endswith((".safetensors", ".pth", ".pt", ".bin")):
            return cls(kind="file", value=text)
        raise ValueError(
            f"cannot read weights {text!r}; use hub, hub:TAG, file:PATH, cell:CELL_NAME, run:MLFLOW_RUN_ID or none"
        )

    def __str__(self) -> str:
        return self.kind if not self.value else f"{self.kind}:{self.value}"


# ---------------------------------------------------------------------------------------------
# loading


def resolve_grid_path(grid: str | Path, root: Path | None = None) -> Path:
    """``smoke`` -> ``benchmarks/grids/smoke.yaml`` (in the cwd, else the tlbench checkout's own);
    a path to a .yaml file is taken as is."""
    p = Path(grid)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SpecError(p, "", "grid file not found")
        return p
    base = (root or Path.cwd()) / GRIDS_DIR
    candidate = base / f"{grid}.yaml"
    if candidate.exists():
        return candidate
    shipped = Path(__file__).resolve().parents[1] / GRIDS_DIR / f"{grid}.yaml"  # the checkout's own grids
    if root is None and shipped.exists():
        return shipped
    known = sorted(q.stem for q in base.glob("*.yaml")) if base.exists() else []
    hint = difflib.get_close_matches(str(grid), known, n=1)
    msg = f"no grid named {str(grid)!r} in {base}"
    if hint:
        msg += f"; did you mean {hint[0]!r}?"
    if known:
        msg += f" (available: {', '.join(known)})"
    raise SpecError(candidate, "", msg)


def _loc_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _validation_to_spec_error(err: ValidationError, file: Path | str | None, prefix: str = "") -> SpecError:
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
        raise _validation_to_spec_error(err, file, prefix=where) from None
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
        raise _validation_to_spec_error(err, file, prefix=where) from None
    return raw


def merge_tune(*layers: dict[str, Any]) -> dict[str, Any]:
    """Search ranges, later layers winning key by key (same order as ``merge_train``)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return TuneSpace.model_validate(merged).model_dump(exclude_none=True)


def merge_train(*layers: dict[str, Any]) -> TrainConfig:
    """Later layers win: grid < block < dataset < backbone < strategy < optimizer < augmentation.

    ``lr_scale`` is the exception: scales multiply, so "a probe takes 5x the lr" (strategy) and
    "AdamW wants lr 1e-3" (optimizer) combine instead of one overriding the other.
    """
    merged: dict[str, Any] = {}
    scale = 1.0
    for layer in layers:
        merged.update(layer)
        scale *= float(layer.get("lr_scale", 1.0))
    merged["lr_scale"] = scale
    return TrainConfig.model_validate(merged)


def load_grid(grid: str | Path, *, check_backbones: bool = True, root: Path | None = None) -> GridSpec:
    """Read, parse and check a grid file; every failure is a ``SpecError``."""
    path = resolve_grid_path(grid, root)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(path, where, f"not valid YAML: {getattr(err, 'problem', err)}") from None
    spec = parse_grid(raw, file=path, check_backbones=check_backbones)
    if not spec.name:
        spec = spec.model_copy(update={"name": path.stem})
    return spec


def parse_grid(raw: Any, *, file: Path | str | None = None, check_backbones: bool = True) -> GridSpec:
    if not isinstance(raw, dict):
        raise SpecError(file, "", f"a grid must be a mapping at top level, got {type(raw).__name__}")
    try:
        spec = GridSpec.model_validate(raw)
    except ValidationError as err:
        raise _validation_to_spec_error(err, file) from None
    check_spec(spec, file, check_backbones=check_backbones)
    return spec


def _iter_scopes(spec: GridSpec) -> list[tuple[str, Axes]]:
    scopes: list[tuple[str, Axes]] = [("", spec)]
    scopes += [(f"blocks[{i}].", b) for i, b in enumerate(spec.blocks)]
    return scopes


def check_spec(spec: GridSpec, file: Path | str | None, *, check_backbones: bool = True) -> None:
    """Resolve every name and parameter against the registries; raise the first problem found."""
    from tlbench.registry import UnknownNameError

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
                    _check_entry(axis, entry, check_backbones)
                except UnknownNameError as err:
                    raise SpecError(file, f"{where}.name", err.message) from None
                except (ValueError, TypeError) as err:
                    key = "weights" if axis == "backbones" and "weights" in str(err) else "params"
                    raise SpecError(file, f"{where}.{key}", str(err)) from None
    if not spec.blocks:
        missing = [a for a in AXES if getattr(spec, a) is None]
        if missing:
            raise SpecError(
                file, missing[0], f"the grid has no {missing[0]} (every axis needs at least one entry)"
            )
    else:
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


def _check_entry(axis: str, entry: _Entry, check_backbones: bool) -> None:
    if axis == "datasets":
        from tlbench.data import DATASETS, dataset_param_names

        DATASETS.get(entry.name)
        allowed = dataset_param_names(entry.name)
        for key in entry.params:  # type: ignore[attr-defined]
            if key not in allowed:
                raise ValueError(
                    f"dataset {entry.name!r} has no param {key!r} (valid: {', '.join(sorted(allowed)) or 'none'})"
                )
    elif axis == "backbones":
        assert isinstance(entry, BackboneEntry)
        weights = WeightsSpec.parse(entry.weights)
        if check_backbones:
            from tlbench.models import check_backbone_name

            check_backbone_name(entry.name)
            if weights.kind == "hub" and weights.value:
                from tlbench.prefetch import check_hub_tag

                check_hub_tag(f"{entry.name.split('.')[0]}.{weights.value}")
    elif axis == "strategies":
        from tlbench.strategies import STRATEGIES

        _check_params("strategy", entry.name, entry.params, STRATEGIES.get(entry.name).params)  # type: ignore[attr-defined]
    elif axis == "optimizers":
        from tlbench.optim import OPTIMIZERS

        _check_params("optimizer", entry.name, entry.params, OPTIMIZERS.get(entry.name).params)  # type: ignore[attr-defined]
    elif axis == "augmentations":
        from tlbench.data import AUGMENTATIONS

        AUGMENTATIONS.get(entry.name)
