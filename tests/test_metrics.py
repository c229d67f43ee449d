"""geocert.metrics against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from geocert import metrics


def test_abstain_counts_wrong_for_accuracy_and_is_ignored_for_iou():
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, -1, 1, 0, 2, -1])
    assert metrics.certified_accuracy(pred, target) == pytest.approx(3 / 6)
    assert metrics.abstain_rate(pred) == pytest.approx(2 / 6)
    iou = metrics.iou_per_class(pred, target, 3)
    # non-abstained: (0,0) (1,1) (1→0) (2,2): class0 TP1 FP1 FN0 → 1/2; class1 TP1 FN1 → 1/2; class2 1
    np.testing.assert_allclose(iou, [0.5, 0.5, 1.0])
    dice = metrics.dice_per_class(pred, target, 3)
    np.testing.assert_allclose(dice, [2 / 3, 2 / 3, 1.0])
    m = metrics.segmentation_metrics(pred, target, 3)
    assert m["miou"] == pytest.approx(2 / 3) and m["mean_dice"] == pytest.approx(7 / 9)
    assert m["num_components"] == 6


def test_absent_class_is_nan_and_left_out_of_mean():
    iou = metrics.iou_per_class(torch.tensor([0, 0]), torch.tensor([0, 0]), 3)
    assert iou[0] == 1.0 and math.isnan(iou[1]) and math.isnan(iou[2])
    assert metrics.segmentation_metrics(torch.tensor([0, 0]), torch.tensor([0, 0]), 3)["miou"] == 1.0


def test_matches_naive_loops():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, 500)
    p = np.where(rng.random(500) < 0.2, -1, np.where(rng.random(500) < 0.7, t, rng.integers(0, 4, 500)))
    iou = metrics.iou_per_class(torch.from_numpy(p), torch.from_numpy(t), 4)
    for c in range(4):
        tp = sum(1 for a, b in zip(p, t, strict=True) if a != -1 and a == c and b == c)
        fp = sum(1 for a, b in zip(p, t, strict=True) if a != -1 and a == c and b != c)
        fn = sum(1 for a, b in zip(p, t, strict=True) if a != -1 and a != c and b == c)
        assert iou[c] == pytest.approx(tp / (tp + fp + fn))


def test_ignore_index_and_size_mismatch():
    assert metrics.certified_accuracy(torch.tensor([1, 0, 1]), torch.tensor([1, 255, 0]), ignore_index=255) == 0.5
    with pytest.raises(ValueError, match="differ"):
        metrics.certified_accuracy(torch.tensor([1, 0]), torch.tensor([1]))


def test_radius_curve_is_monotone_and_exact():
    target = torch.tensor([0, 1, 1, 0])
    pred = torch.tensor([0, 1, -1, 1])
    radii = torch.tensor([0.5, 0.2, 0.0, 0.9])
    grid, acc = metrics.certified_accuracy_curve(pred, target, radii, grid=[0.0, 0.1, 0.3, 0.6])
    np.testing.assert_allclose(acc, [0.5, 0.5, 0.25, 0.0])
    assert np.all(np.diff(acc) <= 0)
    assert metrics.certified_accuracy_at_radius(pred, target, 0.4, 0.4) == 0.5
