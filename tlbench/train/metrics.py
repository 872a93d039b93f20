"""A classifier's numbers from its confusion matrix: the one definition every path shares.

Top-1 accuracy weights classes by their test images; the mean per-class accuracy weights them
equally (the mean of each class's recall, over the classes the split holds), which is what
Kornblith et al. 2019 and SimCLR report for Aircraft, Pets, Caltech-101 and Flowers-102.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts[true, predicted], on the labels' device."""
    return torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes).view(
        num_classes, num_classes
    )


def per_class_acc(counts: np.ndarray) -> np.ndarray:
    """Each class's recall; 0 for a class the split does not hold."""
    totals = counts.sum(axis=1)
    return np.divide(np.diag(counts), totals, out=np.zeros(len(totals)), where=totals > 0)


def mean_per_class_acc(counts: np.ndarray | torch.Tensor) -> float:
    """The mean recall over the classes present in the split (0.0 for an empty split)."""
    counts = counts.cpu().numpy() if isinstance(counts, torch.Tensor) else np.asarray(counts)
    present = counts.sum(axis=1) > 0
    return float(per_class_acc(counts)[present].mean()) if present.any() else 0.0
