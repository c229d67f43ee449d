"""Certified segmentation metrics.

Conventions (as in SegCertify and the denoised-smoothing paper):

- **certified accuracy**: fraction of all components whose certified label equals the ground truth; an
  abstention (−1) counts as wrong.
- **% abstain**: fraction of components with label −1.
- **IoU / Dice per class**: computed over the *non-abstained* components only (abstentions are neither
  true nor false positives); a class absent from both prediction and target there gets NaN and is left
  out of the mean (mIoU, mean Dice).
- **certified accuracy at radius r**: a component counts if it is correct and its certified radius ≥ r.

Components carrying ``ignore_index`` in the target are dropped everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

from geocert.certify import ABSTAIN

__all__ = [
    "certified_accuracy",
    "abstain_rate",
    "confusion_matrix",
    "iou_per_class",
    "dice_per_class",
    "segmentation_metrics",
    "certified_accuracy_at_radius",
    "certified_accuracy_curve",
]


def _flat(pred, target, ignore_index):
    pred = torch.as_tensor(pred).reshape(-1).long()
    target = torch.as_tensor(target).reshape(-1).long()
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target differ in size: {pred.numel()} vs {target.numel()}")
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    return pred, target


def certified_accuracy(pred, target, ignore_index: int | None = None) -> float:
    """Fraction of components with ``pred == target``; abstentions (−1) count as wrong."""
    pred, target = _flat(pred, target, ignore_index)
    return float((pred == target).float().mean()) if pred.numel() else float("nan")


def abstain_rate(pred, target=None, ignore_index: int | None = None) -> float:
    """Fraction of components that abstained (−1)."""
    pred = torch.as_tensor(pred).reshape(-1)
    if target is not None:
        pred, _ = _flat(pred, target, ignore_index)
    return float((pred == ABSTAIN).float().mean()) if pred.numel() else float("nan")


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """``[C, C]`` int64 counts (rows target, columns prediction) over non-abstained components."""
    pred, target = _flat(pred, target, ignore_index)
    keep = pred != ABSTAIN
    pred, target = pred[keep], target[keep]
    if pred.numel() and (int(pred.max()) >= num_classes or int(target.max()) >= num_classes or int(target.min()) < 0):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """``[C]`` IoU = TP / (TP + FP + FN) over non-abstained components; NaN where the class is absent."""
    cm = confusion_matrix(pred, target, num_classes, ignore_index).double().numpy()
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def dice_per_class(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """``[C]`` Dice = 2TP / (2TP + FP + FN) over non-abstained components; NaN where the class is absent."""
    cm = confusion_matrix(pred, target, num_classes, ignore_index).double().numpy()
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def _nanmean(a: np.ndarray) -> float:
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def segmentation_metrics(pred, target, num_classes: int, ignore_index: int | None = None) -> dict:
    """All of the above in one plain dict (JSON-ready; NaN for undefined per-class values)."""
    iou = iou_per_class(pred, target, num_classes, ignore_index)
    dice = dice_per_class(pred, target, num_classes, ignore_index)
    return {
        "certified_accuracy": certified_accuracy(pred, target, ignore_index),
        "abstain_rate": abstain_rate(pred, target, ignore_index),
        "miou": _nanmean(iou),
        "mean_dice": _nanmean(dice),
        "iou_per_class": iou.tolist(),
        "dice_per_class": dice.tolist(),
        "num_components": int(_flat(pred, target, ignore_index)[0].numel()),
    }


def certified_accuracy_at_radius(pred, target, radii, r: float, ignore_index: int | None = None) -> float:
    """Fraction of components that are correct and certified at radius ≥ r (``radii`` per component or scalar)."""
    pred_t = torch.as_tensor(pred).reshape(-1).long()
    target_t = torch.as_tensor(target).reshape(-1).long()
    radii_t = torch.as_tensor(radii, dtype=torch.float64)
    radii_t = radii_t.expand(pred_t.shape) if radii_t.ndim == 0 else radii_t.reshape(-1)
    keep = target_t != ignore_index if ignore_index is not None else torch.ones_like(target_t, dtype=torch.bool)
    ok = (pred_t == target_t) & (radii_t >= r) & keep
    total = int(keep.sum())
    return float(ok.sum()) / total if total else float("nan")


def certified_accuracy_curve(pred, target, radii, grid=None, ignore_index: int | None = None):
    """Certified accuracy as a function of radius.

    Returns:
        ``(grid, accuracy)`` numpy arrays; ``grid`` defaults to 0 … max radius in 50 steps.
    """
    radii_t = torch.as_tensor(radii, dtype=torch.float64)
    if grid is None:
        top = float(radii_t.max()) if radii_t.numel() else 0.0
        grid = np.linspace(0.0, max(top, 1e-9), 50)
    grid = np.asarray(grid, dtype=np.float64)
    acc = np.array([certified_accuracy_at_radius(pred, target, radii_t, float(r), ignore_index) for r in grid])
    return grid, acc
