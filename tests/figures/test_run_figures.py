"""A cell's two figures are drawn on figures kept per process: what one cell drew never shows in
the next one's picture, which is the one a fresh figure draws."""

from __future__ import annotations

import numpy as np

from tlbench.figures import run as plots


def _history(epochs: int, every: int = 1, scale: float = 1.0) -> list[dict[str, float]]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": scale / e, "train_acc": 1 - 0.5 / e}
        if e % every == 0 or e == epochs:
            row.update(val_loss=1.5 * scale / e, val_acc=1 - 0.7 / e)
        rows.append(row)
    return rows


def _fresh_curves(history, path, title):
    """The figure as drawn from scratch (a new ``Figure``, each line plotted with its data)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    validated = [h for h in history if "val_acc" in h]
    for ax, key, name in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(
            [h["epoch"] for h in history], [h[f"train_{key}"] for h in history], marker="o", label="train"
        )
        ax.plot(
            [h["epoch"] for h in validated], [h[f"val_{key}"] for h in validated], marker="o", label="val"
        )
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0, 1.02)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.84, wspace=0.22)
    fig.savefig(path, dpi=100, pil_kwargs=plots.PNG)
    return path.read_bytes()


def test_learning_curves_after_another_cell_are_the_fresh_figure(tmp_path):
    a = _history(30)
    fresh = _fresh_curves(a, tmp_path / "fresh.png", "digits/test_resnet/finetune/sgd/none")
    plots._curves_figure.cache_clear()
    assert (
        plots.learning_curves(a, tmp_path / "first.png", "digits/test_resnet/finetune/sgd/none").read_bytes()
        == fresh
    )
    plots._curves_figure.cache_clear()  # the process's figure drew another cell first
    plots.learning_curves(
        _history(4, every=2, scale=9.0), tmp_path / "other.png", "another cell, longer title"
    )
    again = plots.learning_curves(a, tmp_path / "again.png", "digits/test_resnet/finetune/sgd/none")
    assert again.read_bytes() == fresh
    assert (tmp_path / "other.png").read_bytes() != fresh


def _fresh_confusion(confusion, classes, path, title):
    """Drawn from scratch: a new ``Figure``, a text only where the count is not zero."""
    from matplotlib.figure import Figure

    n = len(classes)
    size = min(max(4.0, 0.45 * n + 2), 16)
    fig = Figure(figsize=(size, size * 0.9))
    ax = fig.subplots()
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
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
    w, h = fig.get_size_inches()
    label_in = 0.45 + 0.06 * max(len(c) for c in classes)
    fig.subplots_adjust(
        left=min(label_in / w, 0.45), bottom=min(label_in / h, 0.45), right=1 - 0.5 / w, top=1 - 0.35 / h
    )
    fig.savefig(path, dpi=100, pil_kwargs=plots.PNG)
    return path.read_bytes()


def test_confusion_matrix_after_another_cell_is_the_fresh_figure(tmp_path):
    classes = [str(i) for i in range(10)]
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (10, 10)) * (rng.random((10, 10)) < 0.5)  # zeros: cells left blank
    fresh = _fresh_confusion(a, classes, tmp_path / "fresh.png", "a")
    plots._confusion_figure.cache_clear()
    assert plots.confusion_matrix(a, classes, tmp_path / "first.png", "a").read_bytes() == fresh
    plots._confusion_figure.cache_clear()  # the process's figure drew another cell first
    plots.confusion_matrix(rng.integers(1, 50, (10, 10)), classes, tmp_path / "b.png", "b: every cell")
    plots.confusion_matrix(np.eye(3, dtype=int), ["x", "y", "z"], tmp_path / "c.png", "other classes")
    assert plots.confusion_matrix(a, classes, tmp_path / "again.png", "a").read_bytes() == fresh
    assert (tmp_path / "b.png").read_bytes() != fresh
