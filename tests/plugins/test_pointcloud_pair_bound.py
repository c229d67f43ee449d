"""tools/pointcloud_pair_bound.py: the pairwise lemma behind it, checked by Monte Carlo, and the bound itself."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from _tools import ROOT, load_tool
from scipy.stats import norm

pb = load_tool("pointcloud_pair_bound")

SIGMA = 0.25


def _two_points(d: float, draws: int, rng: np.random.Generator):
    """Noisy copies ``[draws, 2, 3]`` of two points of different parts, ``d`` apart along x."""
    x = np.array([[0.0, 0.0, 0.0], [d, 0.0, 0.0]])
    return x[None] + rng.normal(0.0, SIGMA, (draws, 2, 3))


@pytest.mark.parametrize("d", [0.1, 0.3, 0.6])
def test_the_pair_lemma_holds_and_is_tight_for_equivariant_models(d):
    """p_i + p_j ≤ 2Φ(d / (√2σ)). The equivariant rule "the point further left is part a" reaches it exactly;
    the rule that labels by position alone (the midpoint plane) stays below it; a model that reads the
    points' order (not equivariant) gets both right always and breaks it, so equivariance is needed."""
    rng = np.random.default_rng(0)
    y = _two_points(d, 200_000, rng)
    bound = 2 * norm.cdf(d / (math.sqrt(2) * SIGMA))

    def p_sum(label_0: np.ndarray, label_1: np.ndarray) -> float:
        """p_0 + p_1 of a model's labels (part 0 or 1) of the two points over the draws."""
        return float((label_0 == 0).mean() + (label_1 == 1).mean())

    left_first = y[:, 0, 0] < y[:, 1, 0]  # the pair rule: the point further left is part 0, the other part 1
    p_pair = p_sum(np.where(left_first, 0, 1), np.where(left_first, 1, 0))
    p_plane = p_sum((y[:, 0, 0] >= d / 2).astype(int), (y[:, 1, 0] >= d / 2).astype(int))
    p_order = p_sum(np.zeros(len(y), int), np.ones(len(y), int))  # labels by the points' order in the array
    se = 4 * math.sqrt(0.25 / len(y)) * 2
    assert abs(p_pair - bound) < se
    assert p_plane <= bound + se and p_plane < bound - 0.01
    assert abs(p_plane - 2 * norm.cdf(d / (2 * SIGMA))) < se  # the position rules' bound, reached by the plane
    assert p_order > bound + 0.05  # not equivariant: p = 1 for both


def test_conflict_distance():
    assert pb.conflict_distance(SIGMA, 0.82) == pytest.approx(math.sqrt(2) * SIGMA * norm.ppf(0.82))
    assert pb.conflict_distance(SIGMA, 0.5) == pytest.approx(0.0)
    assert pb.conflict_distance(SIGMA, 0.82, "position") == pytest.approx(2 * SIGMA * norm.ppf(0.82))


def test_pair_bound_is_the_largest_independent_set_for_two_clusters():
    """Two parts of 5 and 3 points all within δ of each other: at most the 5 can clear the cut; far apart:
    all 8; three parts in a clump: one part (the largest, 4 points) at most."""
    rng = np.random.default_rng(1)
    clump = rng.normal(0, 0.01, (8, 3))
    labels = np.array([0] * 5 + [1] * 3)
    assert pb.pair_bound(clump, labels, SIGMA, 0.82) == 5
    apart = clump + np.where(labels[:, None] == 1, [5.0, 0, 0], 0.0)
    assert pb.pair_bound(apart, labels, SIGMA, 0.82) == 8
    three = np.array([0] * 4 + [1] * 2 + [2] * 2)
    assert pb.pair_bound(clump, three, SIGMA, 0.82) == 4


def test_a_real_rule_never_beats_the_bound():
    """The nearest-clean-point rule (equivariant: it reads each point's own noisy position) on two touching
    parts: the points whose Monte-Carlo p exceeds the cut never outnumber the bound."""
    rng = np.random.default_rng(2)
    a = np.c_[rng.uniform(-0.6, 0.0, 150), rng.uniform(-0.3, 0.3, 150), np.zeros(150)]
    b = np.c_[rng.uniform(0.0, 0.6, 100), rng.uniform(-0.3, 0.3, 100), np.zeros(100)]
    pts, labels = np.r_[a, b], np.r_[np.zeros(150, int), np.ones(100, int)]
    noisy = pts[None] + rng.normal(0, SIGMA, (400, len(pts), 3))
    nearest = np.linalg.norm(noisy[:, :, None, :] - pts[None, None], axis=-1).argmin(-1)
    p = (labels[nearest] == labels[None]).mean(0)
    for cut in (0.75, 0.82):  # (a position rule: its own, tighter bound holds too)
        assert (p > cut).sum() <= pb.pair_bound(pts, labels, SIGMA, cut, "position") <= pb.pair_bound(
            pts, labels, SIGMA, cut)
    assert pb.pair_bound(pts, labels, SIGMA, 0.82) < len(pts)


def test_cli_runs_on_a_tiny_dataset(tmp_path):
    from geocert_pointcloud.scenes import make_dataset

    data = make_dataset(tmp_path / "data", shapes_per_category=3, num_points=200, seed=1, categories=("Mug",))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "pointcloud_pair_bound.py"), str(data), "--split",
                          "train", "--num-shapes", "2", "--num-points", "200", "--cut", "0.82"],
                         capture_output=True, text=True, check=True).stdout
    share = float(out.split("at most ")[1].split()[0])
    assert 0.0 < share < 1.0
