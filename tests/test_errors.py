"""tlbench's user-facing errors share one base and keep their builtin ones."""

from __future__ import annotations

import pytest

from tlbench.data import DatasetNotFoundError
from tlbench.errors import TlbenchError
from tlbench.models.weights import WeightsError
from tlbench.registry import Registry, UnknownNameError
from tlbench.spec import SpecError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (SpecError(None, "train.epochs", "bad"), ValueError),
        (DatasetNotFoundError("no files"), FileNotFoundError),
        (WeightsError("does not fit"), ValueError),
        (UnknownNameError("dataset", "digit", ["digits"]), KeyError),
    ],
)
def test_every_user_error_is_a_tlbench_error_and_keeps_its_builtin_base(error, builtin):
    assert isinstance(error, TlbenchError) and isinstance(error, builtin)
    with pytest.raises(TlbenchError):
        raise error


def test_unknown_name_keeps_its_plain_message():
    reg: Registry[int] = Registry("dataset")
    reg.register("digits", 1)
    with pytest.raises(UnknownNameError) as info:
        reg.get("digit")
    assert str(info.value) == "unknown dataset 'digit'; did you mean 'digits'? (valid: digits)"
