"""What a grid will cost before it runs: images processed and FLOPs per cell, and GPU-hours.

FLOPs per image come from torch's FlopCounterMode on a model built on the ``meta`` device (no
memory, no weights: milliseconds per backbone). Training an image costs ~3 forward passes; a
linear probe on cached features costs one forward pass per image, once. Hours assume the
sustained rate we measured for ResNet-50 @ 224 in ``train.fit`` on an H100 (see
benchmarks/perf/README.md) - a planning figure, not a promise.
"""

from __future__ import annotations

from functools import lru_cache

from tlbench.catalog.datasets import AUGMENTATIONS
from tlbench.catalog.strategy_params import DEFAULT_ALPHAS
from tlbench.catalog.torchvision import tv_set
from tlbench.cells import Cell

# train images after the default 10% val carve (None: depends on the user's files)
TRAIN_IMAGES = {
    "cifar10": 45_000,
    "cifar100": 45_000,
    "cifar100_coarse": 45_000,
    "fashion_mnist": 54_000,
    "digits": 1_295,  # 1,797 less the fixed 20 % test (359) and the 10 % val carve (143)
    "hymenoptera": 244,
    "imagefolder": None,
}
CLASSES = {
    "cifar10": 10,
    "cifar100": 100,
    "cifar100_coarse": 20,
    "fashion_mnist": 10,
    "digits": 10,
    "hymenoptera": 2,
}
SUSTAINED_FLOPS = 3600 * 3 * 4.1e9 * 1.0  # ~44 TFLOP/s: ResNet-50 @224, 3.6k img/s measured on an H100


@lru_cache(maxsize=128)
def forward_flops(backbone: str, size: int) -> float:
    """FLOPs of one forward pass of one image (counted on the meta device)."""
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import tlbench.models.seed_cnn  # noqa: F401  (our own registered models)

    with torch.device("meta"):
        model = timm.create_model(backbone, num_classes=10)
        x = torch.empty(1, 3, size, size)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return float(counter.get_total_flops())


def _catalog_train_images(cell: Cell) -> int | None:
    """A torchvision set's train images after the val carve (its own val split: none carved)."""
    tv = tv_set(cell.dataset.name)
    if tv is None or not tv.train_images:
        return None
    return tv.train_images if "val" in tv.splits else round(tv.train_images * (1 - cell.train.val_fraction))


def _classes(cell: Cell) -> int | None:
    if cell.dataset.name == "synthetic":
        return int(cell.dataset.params.get("classes", 10))
    tv = tv_set(cell.dataset.name)
    return (tv.classes or None) if tv else CLASSES.get(cell.dataset.name)


def train_images(cell: Cell) -> int | None:
    """Images one epoch trains on: the set after the val carve, or the cell's subset / shots / train_examples."""
    t = cell.train
    if t.train_examples is not None:
        return t.train_examples - t.train_examples // 5
    if t.shots is not None:
        classes = _classes(cell)
        return t.shots * classes if classes else None
    if cell.dataset.name == "synthetic":
        n = int(cell.dataset.params.get("classes", 10)) * int(cell.dataset.params.get("train_per_class", 200))
    else:
        n = TRAIN_IMAGES.get(cell.dataset.name) or _catalog_train_images(cell)
    if n is None:
        return None
    return max(1, round(n * (t.subset or 1.0)))


# forward passes' worth of compute per training image: a full backward is ~2 forwards (inputs'
# and weights' gradients); a frozen backbone with parameters inside (biases, norms, LoRA, prompts)
# still needs the inputs' gradients all the way down, not the frozen weights': ~1 forward
PASSES = {"linear_probe": 1.2, "bitfit": 2.0, "norm_tune": 2.0, "lora": 2.1, "vpt": 2.1}


def cell_flops(cell: Cell) -> float | None:
    """Training FLOPs of a cell (None when the dataset size is unknown before loading)."""
    n = train_images(cell)
    if n is None:
        return None
    size = cell.train.image_size or 224
    fwd = forward_flops(cell.backbone.name, size)
    frozen_cached = (
        cell.strategy.name == "linear_probe" and not AUGMENTATIONS.get(cell.augmentation.name).random
    )
    if frozen_cached:
        return n * fwd * 1.1  # one pass over train (+ val), then a head on features
    per_image = fwd * PASSES.get(cell.strategy.name, 3.0)
    flops = n * cell.train.epochs * per_image * 1.1  # + ~10% for the val pass each epoch
    if cell.strategy.name == "wise_ft":  # each alpha: a BatchNorm pass over train, val and test
        flops += n * fwd * 1.5 * len(cell.strategy.params.get("alphas") or DEFAULT_ALPHAS)
    return flops


def gpu_hours(flops: float) -> float:
    return flops / SUSTAINED_FLOPS / 3600
