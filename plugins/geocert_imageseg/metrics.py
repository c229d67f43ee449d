"""Certified segmentation metrics, counted as the papers do.

* **certified pixel accuracy** (SegCertify): fraction of all pixels whose certified label equals the ground
  truth; an abstained pixel counts as wrong.
* **certified Dice / IoU per class** (Laousy et al.): computed over the non-abstained pixels only (the abstain
  class ∅ is ignored): Dice_c = 2|P_c ∩ G_c| / (|P_c| + |G_c|), IoU_c = |P_c ∩ G_c| / |P_c ∪ G_c|, where P_c, G_c
  are the predicted / ground-truth pixels of class c among the non-abstained pixels. A class absent from both
  is undefined (``None``) and left out of the means.
* **% abstain**: overall, and per class as the share of the class's ground-truth pixels that were abstained.

Sufficient statistics (:func:`confusion_stats`) are integer counts, so data-set results can be accumulated
image by image (resumable) and summarized at the end (:func:`summarize_stats`, pooled over pixels).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["confusion_stats", "confusion_stats_reference", "summarize_stats", "STAT_KEYS"]

STAT_KEYS = ("inter", "pred", "gt", "gt_total", "gt_abstain", "correct", "total", "abstain")


def confusion_stats(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Integer counts for the metrics above.

    Args:
        pred: ``[...]`` predicted labels, −1 = abstain.
        target: ``[...]`` ground-truth labels in ``0..num_classes-1`` (same shape).
    Returns:
        ``inter``, ``pred``, ``gt`` (non-abstained pixels), ``gt_total``, ``gt_abstain``: int64 ``[K]``;
        ``correct``, ``total``, ``abstain``: int64 scalars.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    k = num_classes
    kept = p >= 0
    pk, tk = p[kept], t[kept]
    inter = torch.bincount(tk[pk == tk], minlength=k)[:k]
    return {
        "inter": inter,
        "pred": torch.bincount(pk, minlength=k)[:k],
        "gt": torch.bincount(tk, minlength=k)[:k],
        "gt_total": torch.bincount(t, minlength=k)[:k],
        "gt_abstain": torch.bincount(t[~kept], minlength=k)[:k],
        "correct": (p == t).sum(),
        "total": torch.tensor(p.numel()),
        "abstain": (~kept).sum(),
    }


def confusion_stats_reference(pred, target, num_classes: int) -> dict[str, list[int] | int]:
    """Slow twin of :func:`confusion_stats` with Python loops over pixels."""
    out: dict[str, Any] = {key: [0] * num_classes for key in ("inter", "pred", "gt", "gt_total", "gt_abstain")}
    out.update(correct=0, total=0, abstain=0)
    for pv, tv in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist(), strict=False):
        out["total"] += 1
        out["gt_total"][tv] += 1
        if pv < 0:
            out["abstain"] += 1
            out["gt_abstain"][tv] += 1
            continue
        out["pred"][pv] += 1
        out["gt"][tv] += 1
        if pv == tv:
            out["inter"][pv] += 1
            out["correct"] += 1
    return out


def summarize_stats(stats: dict[str, Any], num_classes: int, class_names: list[str] | None = None) -> dict[str, Any]:
    """Turn accumulated :func:`confusion_stats` into metrics (fractions in [0, 1], % abstain in percent)."""
    def arr(key):
        return torch.as_tensor(stats[key]).double()

    inter, pred, gt = arr("inter"), arr("pred"), arr("gt")
    gt_total, gt_abs = arr("gt_total"), arr("gt_abstain")
    names = class_names or [f"class_{c}" for c in range(num_classes)]
    per_class = {}
    dices, ious = [], []
    for c in range(num_classes):
        denom = float(pred[c] + gt[c])
        dice = 2 * float(inter[c]) / denom if denom > 0 else None
        union = denom - float(inter[c])
        iou = float(inter[c]) / union if union > 0 else None
        abst = 100.0 * float(gt_abs[c]) / float(gt_total[c]) if gt_total[c] > 0 else None
        per_class[names[c]] = {"dice": dice, "iou": iou, "abstain_pct": abst, "pixels": int(gt_total[c])}
        dices.append(dice)
        ious.append(iou)

    def mean(vals):
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None

    total = float(arr("total"))
    return {
        "certified_pixel_accuracy": float(arr("correct")) / total if total else None,
        "abstain_pct": 100.0 * float(arr("abstain")) / total if total else None,
        "mean_dice": mean(dices),
        "mean_iou": mean(ious),
        "mean_dice_foreground": mean(dices[1:]),
        "mean_iou_foreground": mean(ious[1:]),
        "per_class": per_class,
        "pixels": int(total),
    }
