"""Batched augmentation: shapes, ranges, per-sample draws, determinism, `none` = resize+normalize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tlbench.data import AUGMENTATIONS, make_augment

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _batch(n=16, c=3, size=16, same=False):
    g = torch.Generator().manual_seed(0)
    if same:
        one = torch.randint(0, 256, (1, c, size, size), generator=g, dtype=torch.uint8)
        return one.repeat(n, 1, 1, 1)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def test_presets_registered():
    assert AUGMENTATIONS.names() == ["basic", "none", "strong"]
    assert not AUGMENTATIONS.get("none").random and AUGMENTATIONS.get("strong").random


@pytest.mark.parametrize("preset", ["none", "basic", "strong"])
@pytest.mark.parametrize("train", [True, False])
def test_shapes_dtype_and_range(preset, train):
    aug = make_augment(preset, out_size=24, mean=MEAN, std=STD, train=train)
    out = aug(_batch(), torch.Generator().manual_seed(1))
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    lo = min((0 - m) / s for m, s in zip(MEAN, STD, strict=True))
    hi = max((1 - m) / s for m, s in zip(MEAN, STD, strict=True))
    assert out.min() >= lo - 1e-4 and out.max() <= hi + 1e-4


def test_none_is_exactly_resize_and_normalize():
    x = _batch()
    out = make_augment("none", out_size=32, mean=MEAN, std=STD, train=True)(x, torch.Generator())
    ref = F.interpolate(x.float() / 255, size=(32, 32), mode="bilinear", align_corners=False)
    ref = (ref - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(out, ref, atol=1e-6)
    # eval mode of a random preset is the same transform
    ev = make_augment("strong", out_size=32, mean=MEAN, std=STD, train=False)(x, None)
    assert torch.equal(ev, out)


@pytest.mark.parametrize("preset", ["basic", "strong"])
def test_each_sample_gets_its_own_draw_and_seed_reproduces(preset):
    x = _batch(n=32, same=True)
    aug = make_augment(preset, out_size=16, mean=MEAN, std=STD, train=True)
    a = aug(x, torch.Generator().manual_seed(7))
    distinct = {tuple(img.flatten()[:64].tolist()) for img in a}
    assert len(distinct) > 8  # identical inputs, different outputs across the batch
    b = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    c = aug(x, torch.Generator().manual_seed(8))
    assert not torch.equal(a, c)


def test_basic_is_a_crop_and_flip_of_the_image():
    """Each output of `basic` at the source size equals a padded shift (maybe flipped) of the input."""
    x = _batch(n=8, size=16)
    aug = make_augment("basic", out_size=16, mean=(0, 0, 0), std=(1, 1, 1), train=True)
    out = aug(x, torch.Generator().manual_seed(3))
    padded = F.pad(x.float() / 255, (2, 2, 2, 2))
    for i in range(8):
        found = False
        for dy in range(5):
            for dx in range(5):
                crop = padded[i, :, dy : dy + 16, dx : dx + 16]
                if torch.allclose(out[i], crop) or torch.allclose(out[i], crop.flip(-1)):
                    found = True
        assert found, f"sample {i} is not a crop/flip"


def test_grayscale_becomes_three_channels():
    out = make_augment("strong", out_size=16, mean=MEAN, std=STD, train=True)(_batch(c=1), torch.Generator())
    assert out.shape == (16, 3, 16, 16)


def test_rejects_float_input():
    with pytest.raises(ValueError, match="uint8"):
        make_augment("none", out_size=8, mean=MEAN, std=STD, train=False)(torch.zeros(2, 3, 8, 8), None)
