"""Procedural images for pretraining without downloads, in the spirit of FractalDB.

Each class is an Iterated Function System (2-4 contractive affine maps) drawn from a seeded RNG;
a sample is a chaos-game render of its class's IFS with small per-sample perturbations of the
maps, a random pose (scale, rotation, position), random foreground / background colours and a
background texture. Classes differ in shape, samples in everything else: a real (formula-driven)
source task, deterministic for given parameters, generated in about a second. ``load`` is the
``synthetic`` dataset's loader (its params and defaults are in ``catalog.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlbench.catalog.datasets import RawSplits

GENERATOR_VERSION = "1"  # bump when the images change: it keys the tensor cache
N_WALKERS = 96  # parallel chaos-game walkers per image
N_STEPS = 28  # steps per walker; the first BURN_IN are discarded
BURN_IN = 6
POSE_ROTATION = np.pi / 6  # ±30°
POSE_SCALE = (0.65, 0.95)
PERTURB = 0.03  # std of per-sample noise on the maps' parameters


def _random_ifs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A (k,2,2), b (k,2), p (k,)) for a random contractive IFS; p proportional to |det A|."""
    k = int(rng.integers(2, 5))
    a = np.empty((k, 2, 2))
    for i in range(k):
        t1, t2 = rng.uniform(0, 2 * np.pi, size=2)
        s = rng.uniform(0.25, 0.8, size=2) * rng.choice([-1, 1], size=2)
        r1 = np.array([[np.cos(t1), -np.sin(t1)], [np.sin(t1), np.cos(t1)]])
        r2 = np.array([[np.cos(t2), -np.sin(t2)], [np.sin(t2), np.cos(t2)]])
        a[i] = r1 @ np.diag(s) @ r2
    b = rng.uniform(-1, 1, size=(k, 2))
    det = np.abs(np.linalg.det(a)) + 1e-3
    return a, b, det / det.sum()


def _chaos_points(a: np.ndarray, b: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points (B, P, 2) on the attractors of B perturbed systems (a: (B,k,2,2), b: (B,k,2))."""
    n = a.shape[0]
    x = rng.uniform(-1, 1, size=(n, N_WALKERS, 2))
    rows = np.arange(n)[:, None]
    out = []
    cum = np.cumsum(p)
    cum[-1] = 1.0
    for step in range(N_STEPS):
        choice = np.searchsorted(cum, rng.random((n, N_WALKERS)), side="right")
        m, t = a[rows, choice], b[rows, choice]  # (B, W, 2, 2), (B, W, 2)
        x = np.stack(
            (
                m[..., 0, 0] * x[..., 0] + m[..., 0, 1] * x[..., 1] + t[..., 0],
                m[..., 1, 0] * x[..., 0] + m[..., 1, 1] * x[..., 1] + t[..., 1],
            ),
            axis=-1,
        )
        if step >= BURN_IN:
            out.append(x)
    return np.concatenate(out, axis=1)


def _rasterize(points: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Density masks (B, size, size) in [0, 1]: each cloud posed randomly inside the frame."""
    n = points.shape[0]
    lo = np.percentile(points, 1, axis=1, keepdims=True)
    hi = np.percentile(points, 99, axis=1, keepdims=True)
    centre = (lo + hi) / 2
    extent = np.maximum((hi - lo).max(axis=2, keepdims=True), 1e-6)
    pts = (points - centre) / extent  # about [-0.5, 0.5]
    theta = rng.uniform(-POSE_ROTATION, POSE_ROTATION, size=n)  # pose varies, shape identity stays
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    pts = np.stack((cos * pts[..., 0] - sin * pts[..., 1], sin * pts[..., 0] + cos * pts[..., 1]), axis=-1)
    scale = rng.uniform(*POSE_SCALE, size=(n, 1, 1)) * size
    shift = size / 2 + rng.uniform(-0.12, 0.12, size=(n, 1, 2)) * size
    pix = np.floor(pts * scale + shift).astype(np.int64)
    inside = (pix >= 0).all(axis=2) & (pix < size).all(axis=2)
    flat = (np.arange(n)[:, None] * size * size + pix[..., 1] * size + pix[..., 0])[inside]
    counts = np.bincount(flat, minlength=n * size * size).reshape(n, size, size).astype(np.float32)
    # density -> intensity: a few hits saturate, so thin structures stay visible
    return np.clip(counts / 2.0, 0, 1)


def _textures(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Background textures (B, size, size) in [0, 1]: smooth noise or stripes at random angles."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    tex = np.empty((n, size, size), dtype=np.float32)
    kind = rng.integers(0, 3, size=n)
    for i in range(n):
        if kind[i] == 0:
            tex[i] = 0.5
        elif kind[i] == 1:
            ang = rng.uniform(0, np.pi)
            freq = rng.uniform(2, 6)
            tex[i] = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(ang) * xx + np.sin(ang) * yy))
        else:
            coarse = rng.uniform(0, 1, size=(4, 4))
            tex[i] = np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1)))[:size, :size]
    return tex


def class_systems(classes: int, seed: int, size: int = 32) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One IFS per class; systems whose attractor covers too little of the frame are redrawn."""
    rng = np.random.default_rng([seed, 0xF2AC7A1])
    systems = []
    while len(systems) < classes:
        a, b, p = _random_ifs(rng)
        pts = _chaos_points(a[None], b[None], p, rng)
        lo, hi = np.percentile(pts[0], 1, axis=0), np.percentile(pts[0], 99, axis=0)
        aspect = (hi - lo).min() / max((hi - lo).max(), 1e-6)
        cover = (_rasterize(pts, size, np.random.default_rng(0)) > 0).mean()
        if aspect > 0.2 and cover > 0.06:
            systems.append((a, b, p))
    return systems


def generate(
    classes: int, per_class: int, image_size: int, seed: int, split_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class: uint8 (N, 3, H, W) and int64 labels (N,).

    ``seed`` fixes the classes (the IFS systems); ``split_seed`` the samples, so train, val and
    test are different renders of the same classes.
    """
    systems = class_systems(classes, seed)
    rng = np.random.default_rng([seed, split_seed, 0x5A3])
    images = np.empty((classes * per_class, 3, image_size, image_size), dtype=np.uint8)
    for c, (a, b, p) in enumerate(systems):
        a_s = a[None] + rng.normal(0, PERTURB, size=(per_class, *a.shape))
        b_s = b[None] + rng.normal(0, PERTURB, size=(per_class, *b.shape))
        mask = _rasterize(_chaos_points(a_s, b_s, p, rng), image_size, rng)  # (n, H, W)
        # bright shape on a darker, textured background: colour varies, the shape stays visible
        fg = rng.uniform(0.55, 1.0, size=(per_class, 3, 1, 1))
        bg = rng.uniform(0.0, 0.45, size=(per_class, 3, 1, 1))
        tex = _textures(per_class, image_size, rng)[:, None]
        background = bg * (0.75 + 0.5 * tex)
        img = background * (1 - mask[:, None]) + fg * mask[:, None]
        img += rng.normal(0, 0.03, size=img.shape)
        images[c * per_class : (c + 1) * per_class] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    labels = np.repeat(np.arange(classes), per_class).astype(np.int64)
    return images, labels


def load(
    data_dir: Path,
    download: bool,
    *,
    classes: int,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int,
    image_size: int,
    seed: int,
) -> RawSplits:
    """The ``synthetic`` dataset: train, val and test renders of the same ``classes`` systems."""
    if classes < 2 or min(train_per_class, val_per_class, test_per_class) < 1 or image_size < 8:
        raise ValueError(
            "synthetic needs classes >= 2, at least 1 image per class and split, image_size >= 8"
        )
    train = generate(classes, train_per_class, image_size, seed, split_seed=0)
    val = generate(classes, val_per_class, image_size, seed, split_seed=1)
    test = generate(classes, test_per_class, image_size, seed, split_seed=2)
    return RawSplits(
        train=train,
        val=val,
        test=test,
        classes=[f"ifs_{i:02d}" for i in range(classes)],
        source=f"generated (IFS fractals, seed {seed})",
    )


def fingerprint(data_dir: Path, **params: object) -> str:
    """The generator's version: the tensor cache is rebuilt when the images change."""
    return f"synthetic-generator-{GENERATOR_VERSION}"
