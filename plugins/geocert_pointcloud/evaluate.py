"""ShapeNet-part evaluation: per-shape part IoU, instance mIoU and class mIoU.

The benchmark's convention: a shape's IoU is the mean over *its category's* parts of
|pred = p ∧ gt = p| / |pred = p ∨ gt = p|, with IoU 1 for a part absent from both. Instance mIoU averages
shapes; class mIoU averages categories (each the mean of its shapes). Abstained points (−1) belong to no
predicted part, so they lower the IoU of their true part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from geocert_pointcloud.data import CATEGORY_PARTS

__all__ = ["shape_iou", "shape_iou_reference", "miou_summary"]


def shape_iou(pred: np.ndarray, target: np.ndarray, parts: Sequence[int]) -> float:
    """Mean part IoU of one shape. ``pred``/``target``: ``[N]`` global part ids (pred may hold −1)."""
    pred, target = np.asarray(pred).reshape(-1), np.asarray(target).reshape(-1)
    parts_a = np.asarray(parts)[:, None]
    p, t = pred[None, :] == parts_a, target[None, :] == parts_a  # [P, N]
    inter, union = (p & t).sum(1), (p | t).sum(1)
    iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(iou.mean())


def shape_iou_reference(pred, target, parts) -> float:
    """Slow twin of :func:`shape_iou` (plain Python loops)."""
    ious = []
    for part in parts:
        inter = sum(1 for a, b in zip(pred, target, strict=False) if a == part and b == part)
        union = sum(1 for a, b in zip(pred, target, strict=False) if a == part or b == part)
        ious.append(1.0 if union == 0 else inter / union)
    return sum(ious) / len(ious)


def miou_summary(ious: Sequence[float], categories: Sequence[str | None]) -> dict:
    """Instance mIoU, class mIoU and per-category mIoU from per-shape IoUs (unknown categories count
    towards the instance mean only)."""
    ious_a = np.asarray(ious, dtype=np.float64)
    per_cat: dict[str, list[float]] = {}
    for v, c in zip(ious_a, categories, strict=False):
        if c is not None:
            per_cat.setdefault(c, []).append(float(v))
    per_cat_mean = {c: float(np.mean(v)) for c, v in per_cat.items()}
    return {
        "instance_miou": float(ious_a.mean()) if ious_a.size else float("nan"),
        "class_miou": float(np.mean(list(per_cat_mean.values()))) if per_cat_mean else float("nan"),
        "per_category_miou": per_cat_mean,
    }


def category_parts(category: str | None) -> tuple[int, ...] | None:
    return CATEGORY_PARTS.get(category) if category is not None else None
