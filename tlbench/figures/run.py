"""Matplotlib figures for a cell's artifacts (learning curves, confusion matrix).

Built with the object API (``Figure``, no pyplot state), so they can be rendered off the
training thread and on headless machines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def learning_curves(history: list[dict[str, float]], path: Path, title: str) -> Path:
    epochs = [h["epoch"] for h in history]
    validated = [h for h in history if "val_acc" in h]  # every epoch unless the cell's eval_every > 1
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot([h["epoch"] for h in validated], [h["val_loss"] for h in validated], marker="o", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], marker="o", label="train")
    ax_acc.plot([h["epoch"] for h in validated], [h["val_acc"] for h in validated], marker="o", label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    # fixed margins: tight_layout costs a second full render (2/3 of the plotting time)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.84, wspace=0.22)
    fig.savefig(path, dpi=100)
    return path


def confusion_matrix(confusion: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    n = len(classes)
    size = min(max(4.0, 0.45 * n + 2), 16)
    fig = Figure(figsize=(size, size * 0.9))
    ax = fig.subplots()
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6, color=color)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    # margins from the longest class name (7 pt text ≈ 0.06 in a character) instead of
    # tight_layout, which renders the figure an extra time to measure it
    w, h = fig.get_size_inches()
    label_in = 0.45 + 0.06 * (max(len(c) for c in classes) if classes and n <= 30 else 2)
    fig.subplots_adjust(
        left=min(label_in / w, 0.45), bottom=min(label_in / h, 0.45), right=1 - 0.5 / w, top=1 - 0.35 / h
    )
    fig.savefig(path, dpi=100)
    return path
