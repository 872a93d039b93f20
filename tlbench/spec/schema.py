"""What a ``benchmarks/grids/*.yaml`` file may say: the pydantic models of a grid spec.

The models check types, ranges and unknown keys; names (datasets, strategies, ...) are checked
against the registries by ``tlbench.spec.check``, and files are read by ``tlbench.spec.load``.
Nothing here imports torch: listing or validating a grid does not need it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tlbench.errors import TlbenchError
from tlbench.spec.race import RaceConfig

__all__ = [
    "AXES",
    "AXIS_SINGULAR",
    "AugmentationEntry",
    "Axes",
    "BackboneEntry",
    "Block",
    "DatasetEntry",
    "GridSpec",
    "HeadConfig",
    "METRICS",
    "Metric",
    "OptimizerEntry",
    "RaceConfig",
    "Reported",
    "SpecError",
    "StrategyEntry",
    "TrainConfig",
    "TuneSpace",
    "WeightsSpec",
    "merge_train",
    "merge_tune",
    "seed_list",
]

AXES = ("datasets", "backbones", "strategies", "optimizers", "augmentations")
# what a grid's report, racing, tuning and model selection rank cells by (``metric:``): top-1
# accuracy, or the mean over classes of each class's accuracy (Kornblith et al. 2019 report it
# for Aircraft, Pets, Caltech-101 and Flowers, whose test sets are not balanced)
METRICS = ("acc", "mean_per_class_acc")
Metric = Literal["acc", "mean_per_class_acc"]
AXIS_SINGULAR = {
    "datasets": "dataset",
    "backbones": "backbone",
    "strategies": "strategy",
    "optimizers": "optimizer",
    "augmentations": "augmentation",
}


class SpecError(TlbenchError, ValueError):
    """A grid file that cannot be used: says which file, which key, and what would be valid.

    The CLI prints it as one line and exits 2, without a traceback.
    """

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
    (``tlbench.models.heads.init_head_layer``): ``zero`` (default), ``normal`` (std 0.01) or ``pytorch``.
    """

    type: Literal["linear", "mlp"] = Field("linear", description="linear, or an mlp with hidden layers")
    hidden: tuple[int, ...] = Field((), description="mlp: the hidden layers' widths, e.g. [256]")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before each layer of the head")
    init: Literal["zero", "normal", "pytorch"] = Field(
        "zero", description="the logits layer's init: zero (BiT's), normal (std 0.01), pytorch (nn.Linear's)"
    )

    @model_validator(mode="after")
    def _mlp_needs_hidden(self) -> HeadConfig:
        if self.type == "mlp" and not self.hidden:
            raise ValueError("an mlp head needs hidden sizes, e.g. hidden: [256]")
        return self


class TrainConfig(_Strict):
    """Training settings shared by a grid; any axis entry may override any of them."""

    epochs: int = Field(10, ge=1, description="passes over the training set (all phases together)")
    batch_size: int = Field(64, ge=1, description="training batch size")
    eval_batch_size: int = Field(512, ge=1, description="batch size of evaluation and feature extraction")
    eval_every: int = Field(
        1,
        ge=1,
        description="validate every N epochs (and at every phase's last epoch and racing rung); the best "
        "epoch is chosen among the validated ones. A few-shot cell's val set is many times its train "
        "set: validating every epoch is most of its cost",
    )
    lr: float = Field(0.01, gt=0, description="the learning rate (times every lr_scale)")
    lr_scale: float = Field(1.0, gt=0, description="multiplies lr; scales from several entries multiply")
    weight_decay: float = Field(
        0.0, ge=0, description="weight decay (not on biases and norms: timm's groups)"
    )
    image_size: int | None = Field(None, ge=8, description="input size; None = the backbone's default")
    schedule: Literal["constant", "step", "cosine"] = Field(
        "cosine", description="the lr schedule, stepped per update"
    )
    warmup_epochs: int = Field(0, ge=0, description="linear warmup from ~0 over this many epochs")
    step_size: int = Field(10, ge=1, description="epochs between decays of the step schedule")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor of the step schedule")
    min_lr: float = Field(0.0, ge=0, description="the cosine schedule's floor")
    seed: int = Field(
        0, description="the cell's seed: init, batch order, augmentation (and data, unless data_seed)"
    )
    data_seed: int | None = Field(
        None,
        description="draws the val carve and the subset / shots / train_examples; None = seed "
        "(replicates resample the data)",
    )
    subset: float | None = Field(None, gt=0, le=1, description="stratified fraction of train to use")
    shots: int | None = Field(None, ge=1, description="K train images per class (few-shot); val as is")
    train_examples: int | None = Field(
        None, ge=5, description="VTAB-1k style: N images of train, 80 % train + 20 % val (1000 -> 800 + 200)"
    )
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="val carved from train where the source has none"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="of the training loss")
    head: HeadConfig = Field(HeadConfig(), description="the new classifier (train.head below)")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = Field(True, description="channels_last memory format (faster convolutions on GPUs)")

    @model_validator(mode="after")
    def _one_size(self) -> TrainConfig:
        """``subset``, ``shots`` and ``train_examples`` each say how much of train a cell sees."""
        sizes = [k for k in ("subset", "shots", "train_examples") if getattr(self, k) is not None]
        if len(sizes) > 1:
            raise ValueError(
                f"{' and '.join(sizes)} are both set; a cell takes one training-set size "
                "(subset: fraction, shots: K per class, train_examples: N)"
            )
        return self

    @property
    def effective_lr(self) -> float:
        """The learning rate a cell trains with: ``lr`` times the product of every ``lr_scale``."""
        return self.lr * self.lr_scale


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


Seeds = int | tuple[int, ...] | None


def _check_seeds(v: Seeds) -> Seeds:
    """``seeds: N`` (seeds 0..N-1) or a list of distinct seeds >= 0."""
    if v is None:
        return v
    if isinstance(v, int):
        if v < 1:
            raise ValueError(f"{v} gives no replicate; use N >= 1 (seeds 0..N-1) or a list such as [0, 1, 2]")
        return v
    if not v:
        raise ValueError("an empty list gives no replicate; list at least one seed, e.g. [0, 1, 2]")
    if any(s < 0 for s in v):
        raise ValueError(f"every seed must be >= 0, got {list(v)}")
    if len(set(v)) != len(v):
        raise ValueError(f"the seeds must be distinct, got {list(v)}")
    return v


def seed_list(v: Seeds) -> tuple[int, ...] | None:
    """The replicates' seeds, in order: ``3`` -> (0, 1, 2); None when not replicated."""
    if v is None:
        return None
    return tuple(range(v)) if isinstance(v, int) else tuple(v)


def _name_shorthand(value: Any) -> Any:
    """Axis entries may be written as a bare name: ``- digits`` == ``- {name: digits}``."""
    if isinstance(value, str):
        return {"name": value}
    return value


class _Entry(_Strict):
    name: str = Field(min_length=1, description="the registered name (a timm model for a backbone)")
    label: str | None = Field(
        None, min_length=1, description="the name in cell names and reports (default: name)"
    )
    train: dict[str, Any] = Field(default_factory=dict, description="training settings this entry overrides")
    tune: dict[str, Any] = Field(default_factory=dict, description="search space for `tlbench tune`")
    seeds: Seeds = Field(None, description="replicates: N (seeds 0..N-1) or a list of seeds")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _name_shorthand(value)

    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _check_seeds(v)))

    @field_validator("label")
    @classmethod
    def _no_slash(cls, v: str | None) -> str | None:
        if v is not None and "/" in v:
            raise ValueError("a label cannot contain '/' (it separates the parts of a cell name)")
        return v


class DatasetEntry(_Entry):
    params: dict[str, Any] = Field(default_factory=dict, description="the dataset's params (Datasets below)")
    metric: Metric | None = Field(
        None, description="what this dataset's cells are ranked by: acc | mean_per_class_acc"
    )


class BackboneEntry(_Entry):
    weights: str = Field("hub", description="hub | hub:TAG | file:PATH | cell:CELL_NAME | run:RUN_ID | none")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to timm.create_model")


class StrategyEntry(_Entry):
    params: dict[str, Any] = Field(
        default_factory=dict, description="the strategy's params (Strategies below)"
    )


class OptimizerEntry(_Entry):
    params: dict[str, Any] = Field(
        default_factory=dict, description="the optimizer's params (Optimizers below)"
    )


class AugmentationEntry(_Entry):
    pass


class Axes(_Strict):
    datasets: tuple[DatasetEntry, ...] | None = Field(None, description="the datasets axis (entries below)")
    backbones: tuple[BackboneEntry, ...] | None = Field(None, description="timm models and their weights")
    strategies: tuple[StrategyEntry, ...] | None = Field(None, description="how each backbone is adapted")
    optimizers: tuple[OptimizerEntry, ...] | None = Field(None, description="sgd, adam, adamw")
    augmentations: tuple[AugmentationEntry, ...] | None = Field(None, description="none, basic, strong")
    exclude: tuple[dict[str, str], ...] = Field(
        (), description="cells to leave out: rules of axis -> glob over labels or names, all must match"
    )

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
    """Numbers published elsewhere for a cell (a paper's table, a seed report), shown beside
    tlbench's with its interval over seeds. Fractions in [0, 1]: a table's 93.6 % is 0.936."""

    test_acc: float | None = Field(None, ge=0, le=1, description="test top-1 accuracy")
    best_val_acc: float | None = Field(None, ge=0, le=1, description="validation accuracy")
    mean_per_class_acc: float | None = Field(None, ge=0, le=1, description="test mean per-class accuracy")
    source: str = Field("", description="where the number comes from (paper, table, row)")
    protocol: str | None = Field(None, description="what the published setup did differently from the cell")


class Block(Axes):
    """A sub-grid: inherits the grid's axes and settings, overrides some (e.g. a source task)."""

    name: str = Field(min_length=1, description="the block's name (tlbench ls, MLflow's block param)")
    metric: Metric | None = Field(
        None, description="what the block's cells are ranked by (default: the grid's)"
    )
    train: dict[str, Any] = Field(default_factory=dict, description="training settings of the block's cells")
    tune: dict[str, Any] = Field(default_factory=dict, description="search space for `tlbench tune`")
    seeds: Seeds = Field(None, description="replicates: N (seeds 0..N-1) or a list of seeds")
    reported: dict[str, Reported] = Field(
        default_factory=dict, description="cell-name glob -> reported numbers"
    )

    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _check_seeds(v)))


class GridSpec(Axes):
    name: str = Field("", description="the grid's name: its MLflow experiment (default: the file's name)")
    description: str = Field("", description="one line, for `tlbench grids`")
    metric: Metric = Field(
        "acc", description="what cells are ranked and selected by: acc | mean_per_class_acc"
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="training settings every cell starts from"
    )
    tune: dict[str, Any] = Field(default_factory=dict, description="search space for `tlbench tune`")
    seeds: Seeds = Field(None, description="replicates: N (seeds 0..N-1) or a list of seeds")
    race: RaceConfig | None = Field(None, description="race the cells rung by rung (`tlbench run --race`)")
    blocks: tuple[Block, ...] = Field((), description="sub-grids inheriting the axes above (blocks[] below)")
    reported: dict[str, Reported] = Field(
        default_factory=dict, description="cell-name glob -> reported numbers"
    )

    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _check_seeds(v)))


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
