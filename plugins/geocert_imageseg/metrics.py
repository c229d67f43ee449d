"""Certified segmentation scores per named class, as the medical denoised-smoothing paper reports them.

The scores themselves come from :mod:`geocert.metrics` (certified accuracy with abstentions counted wrong;
Dice and IoU over the non-abstained pixels only, Laousy et al.). What this module adds is imageseg's report:
class names, the share of each class's ground-truth pixels that abstained (% ∅ per class), the foreground
means (classes 1..K−1), and ``None`` instead of NaN for a class absent from both prediction and target.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["class_scores"]


def _none_if_nan(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def class_scores(pred: Any, target: Any, num_classes: int, class_names: list[str] | None = None) -> dict[str, Any]:
    """Scores of certified labels ``pred`` (−1 = abstain) against ``target`` (same shape, ``0..K−1``).

    Returns ``certified_pixel_accuracy`` (fraction; abstain counts wrong), ``abstain_pct`` (percent),
    ``mean_dice`` / ``mean_iou`` over the classes present, the same over the foreground classes, ``pixels``,
    and ``per_class[name]`` = ``dice``, ``iou``, ``abstain_pct`` (of the class's ground-truth pixels),
    ``pixels`` (ground-truth pixels of the class)."""
    from geocert.metrics import segmentation_metrics

    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(target).reshape(-1).long()
    if p.shape != t.shape:
        raise ValueError(f"pred and target sizes differ: {p.numel()} vs {t.numel()}")
    seg = segmentation_metrics(p, t, num_classes)
    names = class_names or [f"class_{c}" for c in range(num_classes)]
    gt_total = torch.bincount(t, minlength=num_classes)[:num_classes].tolist()
    gt_abstain = torch.bincount(t[p < 0], minlength=num_classes)[:num_classes].tolist()
    dices = [_none_if_nan(v) for v in seg["dice_per_class"]]
    ious = [_none_if_nan(v) for v in seg["iou_per_class"]]
    per_class = {
        names[c]: {"dice": dices[c], "iou": ious[c],
                   "abstain_pct": 100.0 * gt_abstain[c] / gt_total[c] if gt_total[c] else None,
                   "pixels": int(gt_total[c])}
        for c in range(num_classes)
    }
    total = int(t.numel())
    return {
        "certified_pixel_accuracy": _none_if_nan(seg["certified_accuracy"]) if total else None,
        "abstain_pct": 100.0 * seg["abstain_rate"] if total else None,
        "mean_dice": _mean(dices),
        "mean_iou": _mean(ious),
        "mean_dice_foreground": _mean(dices[1:]),
        "mean_iou_foreground": _mean(ious[1:]),
        "per_class": per_class,
        "pixels": total,
    }
