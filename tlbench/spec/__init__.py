"""The grid spec: what a ``benchmarks/grids/*.yaml`` file may say, validated with pydantic.

Every error is raised as ``SpecError`` naming the file, the key path (``backbones[1].weights``)
and the valid choices, so the CLI can print one clear message and exit 2 without a traceback.
Names are checked against the registries (datasets, strategies, optimizers, augmentations);
backbones against timm's model registry only on request (``check_backbones``), because that
imports torch and the rest of the spec layer does not.

``schema``: the models; ``check``: names and settings against the registries; ``load``: files.
"""

from tlbench.spec.check import check_backbone_names, check_spec, validate_train, validate_tune
from tlbench.spec.load import GRIDS_DIR, load_grid, parse_grid, resolve_grid_path
from tlbench.spec.schema import *  # noqa: F403  (the models: schema.__all__)
from tlbench.spec.schema import __all__ as _schema_names

__all__ = [
    *_schema_names,
    "GRIDS_DIR",
    "check_backbone_names",
    "check_spec",
    "load_grid",
    "parse_grid",
    "resolve_grid_path",
    "validate_train",
    "validate_tune",
]
