"""``tlbench init``: a commented starter grid, valid as written and runnable offline on a CPU.

Kept as text (not built from the schema) so its comments teach the format; a test loads it.
"""

from __future__ import annotations

import re
from pathlib import Path

from tlbench.errors import TlbenchError
from tlbench.spec.schema import SpecError

STARTER = """\
# {name}: a starter grid written by `tlbench init`. Edit it, then
#   tlbench validate --grid {name}.yaml   # every name, dataset and weight resolves?
#   tlbench ls --grid {name}.yaml         # the cells it expands to
#   tlbench run --grid {name}.yaml        # train them (finished cells are skipped on a rerun)
#   tlbench ui --grid {name}              # the MLflow comparison table, sorted by test accuracy
# A grid is datasets x backbones x strategies x optimizers x augmentations; any axis entry may
# override any `train:` setting. `tlbench grids` lists the shipped grids to copy from.
name: {name}
description: a tiny backbone pretrained on fractals, transferred to scikit-learn's digits

train:                 # shared settings (grid < block < dataset < backbone < strategy < ...)
  epochs: 3
  batch_size: 64
  lr: 0.05
  image_size: 32       # leave out to use the backbone's own input size
  schedule: cosine     # constant | step | cosine
  seed: 0              # `seeds: 3` (here or on any entry) runs replicates with intervals

optimizers: [sgd]      # sgd | adam | adamw; e.g. {{name: adamw, train: {{lr: 0.002}}}}
augmentations: [none]  # none | basic | strong

blocks:
  # 1. a source model, trained from scratch on procedural fractals (no download)
  - name: source
    datasets:
      - {{name: synthetic, params: {{classes: 10, train_per_class: 50, image_size: 32}}}}
    backbones:
      - {{name: test_resnet, weights: none}}
    strategies: [scratch]

  # 2. its checkpoint transferred to digits, all of it and a stratified 10 %
  - name: transfer
    datasets:
      - digits
      - {{name: digits, train: {{subset: 0.1}}}}
    backbones:
      # any timm model: {{name: resnet18, weights: hub}} downloads ImageNet weights once
      - {{name: test_resnet, weights: "cell:synthetic/test_resnet/scratch/sgd/none"}}
    strategies:
      - linear_probe   # frozen backbone, new head
      - finetune       # everything trains
      - scratch        # the baseline: same model, random init
"""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def write_starter(name: str, folder: Path) -> Path:
    """Write ``NAME.yaml`` into ``folder``; never over an existing file."""
    if not _NAME.match(name):
        raise TlbenchError(f"tlbench init {name!r}: use letters, digits, '-', '_' or '.' (it names the file)")
    path = folder / f"{name}.yaml"
    if path.exists():
        raise SpecError(path, "", "already exists; pick another name or delete it")
    path.write_text(STARTER.format(name=name))
    return path
