"""Matplotlib figures for a cell's artifacts (learning curves, confusion matrix).

Built with the object API (``Figure``, no pyplot state), so they can be rendered off the
training thread and on headless machines. A worker draws the same two figures for every cell
it finishes: each is built once per process (per class list, for the confusion matrix) and
redrawn with the next cell's data, which halves their cost (building axes, ticks and texts was
half of it) and draws the same picture a fresh figure would (``tests/figures/test_run_figures.py``).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

PNG = {"compress_level": 1}  # zlib's fastest: a fifth of the drawing time at level 6, files ~1.5x
_lock = threading.Lock()  # one drawing at a time per figure (the artifact writer is a thread)


@lru_cache(maxsize=1)
def _curves_figure() -> tuple[Figure, Any, Any, dict[str, Any], Any]:
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    lines: dict[str, Any] = {}
    for ax, key, name in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        (lines[f"train_{key}"],) = ax.plot([], [], marker="o", label="train")
        (lines[f"val_{key}"],) = ax.plot([], [], marker="o", label="val")
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0, 1.02)
    title = fig.suptitle("", fontsize=9)
    # fixed margins: tight_layout costs a second full render (2/3 of the plotting time)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.84, wspace=0.22)
    return fig, ax_loss, ax_acc, lines, title


def learning_curves(history: list[dict[str, float]], path: Path, title: str) -> Path:
    epochs = [h["epoch"] for h in history]
    validated = [h for h in history if "val_acc" in h]  # every epoch unless the cell's eval_every > 1
    with _lock:
        fig, ax_loss, ax_acc, lines, suptitle = _curves_figure()
        for key in ("train_loss", "train_acc"):
            lines[key].set_data(epochs, [h[key] for h in history])
        for key in ("val_loss", "val_acc"):
            lines[key].set_data([h["epoch"] for h in validated], [h[key] for h in validated])
        for ax in (ax_loss, ax_acc):
            ax.relim()
        ax_loss.autoscale_view()
        ax_acc.autoscale_view(scaley=False)  # accuracy keeps 0-1.02
        suptitle.set_text(title)
        fig.savefig(path, dpi=100, pil_kwargs=PNG)
    return path


@lru_cache(maxsize=4)
def _confusion_figure(classes: tuple[str, ...]) -> tuple[Figure, Any, Any, list[list[Any]]]:
    n = len(classes)
    size = min(max(4.0, 0.45 * n + 2), 16)
    fig = Figure(figsize=(size, size * 0.9))
    ax = fig.subplots()
    image = ax.imshow(np.zeros((n, n)), cmap="Blues", vmin=0, vmax=1)
    texts: list[list[Any]] = []
    if n <= 30:
        ax.set_xticks(range(n), list(classes), rotation=90, fontsize=7)
        ax.set_yticks(range(n), list(classes), fontsize=7)
        texts = [
            [ax.text(j, i, "", ha="center", va="center", fontsize=6, visible=False) for j in range(n)]
            for i in range(n)
        ]
    ax.set(xlabel="predicted", ylabel="true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    # margins from the longest class name (7 pt text ≈ 0.06 in a character) instead of
    # tight_layout, which renders the figure an extra time to measure it
    w, h = fig.get_size_inches()
    label_in = 0.45 + 0.06 * (max(len(c) for c in classes) if classes and n <= 30 else 2)
    fig.subplots_adjust(
        left=min(label_in / w, 0.45), bottom=min(label_in / h, 0.45), right=1 - 0.5 / w, top=1 - 0.35 / h
    )
    return fig, ax, image, texts


def confusion_matrix(confusion: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    with _lock:
        fig, ax, image, texts = _confusion_figure(tuple(classes))
        image.set_data(norm)
        for i, row in enumerate(texts):
            for j, text in enumerate(row):
                text.set_visible(bool(confusion[i, j]))
                if confusion[i, j]:
                    text.set_text(str(confusion[i, j]))
                    text.set_color("white" if norm[i, j] > 0.5 else "black")
        ax.set_title(title, fontsize=9)
        fig.savefig(path, dpi=100, pil_kwargs=PNG)
    return path
