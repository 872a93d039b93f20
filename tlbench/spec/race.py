"""What ``race:`` may say: the rungs, groups and rule of ``tlbench run --race`` (torch-free)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

RACE_AXES = ("dataset", "backbone", "strategy", "optimizer", "augmentation")


class RaceConfig(BaseModel):
    """``race:``: train cells rung by rung and drop the configurations beaten with confidence.

    Rungs are fractions of each cell's epochs (``rungs``) or epochs (``epochs``), rounded up to
    whole epochs (at least 1); the last rung, all of a cell's epochs, is always implied.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="race when the grid runs (`tlbench run --no-race` overrides)")
    rungs: tuple[float, ...] = Field((1 / 9, 1 / 3), description="fractions of each cell's epochs")
    epochs: tuple[int, ...] | None = Field(None, description="rung epochs instead of fractions")
    by: tuple[str, ...] = Field(
        ("dataset", "backbone", "strategy"), description="the axes a comparison group shares"
    )
    eta: int = Field(3, ge=2, description="successive halving (one seed): keep the top 1/eta")
    level: float = Field(0.95, gt=0.5, lt=1.0, description="confidence level of the intervals")

    @field_validator("rungs")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in v):
            raise ValueError(f"rungs are fractions of a cell's epochs, each in (0, 1), got {list(v)}")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"rungs must increase, got {list(v)}")
        return v

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and any(e < 1 for e in v):
            raise ValueError(f"rung epochs must be >= 1, got {list(v)}")
        if v is not None and any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"rung epochs must increase, got {list(v)}")
        return v

    @field_validator("by")
    @classmethod
    def _axes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in v if a not in RACE_AXES]
        if bad:
            raise ValueError(f"unknown axis {bad[0]!r} (valid: {', '.join(RACE_AXES)})")
        return v
