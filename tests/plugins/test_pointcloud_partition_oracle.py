"""tools/pointcloud_partition_oracle.py: exact box masses, the greedy partition, and its simulated certification."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _tools import ROOT, load_tool
from scipy.stats import binom

po = load_tool("pointcloud_partition_oracle")

SIGMA = 0.25


def test_box_mass_is_the_gaussian_probability_of_the_box():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.5, 0.5, (4, 3))
    box = po.Box(np.array([-0.2, -np.inf, 0.1]), np.array([0.3, 0.4, np.inf]), 0)
    noisy = pts[None] + rng.normal(0, SIGMA, (200_000, 4, 3))
    inside = ((noisy >= box.lo) & (noisy <= box.hi)).all(-1).mean(0)
    assert np.abs(po.box_mass(pts, box, SIGMA) - inside).max() < 4 * np.sqrt(0.25 / 200_000)


def test_grown_boxes_tile_space_and_each_move_raises_the_count():
    """The class probabilities of a grown partition sum to one at every point (the boxes tile space), and
    growing with more boxes never certifies fewer fitting points."""
    rng = np.random.default_rng(1)
    pts = np.r_[rng.uniform(-1, 0, (60, 3)), rng.uniform(0, 1, (40, 3))]
    labels = np.r_[np.zeros(60, int), np.ones(40, int)]
    counts = []
    for max_boxes in (1, 2, 4):
        boxes = po.grow_partition(pts, labels, 2, sigma=SIGMA, cut=0.82, max_boxes=max_boxes)
        probs = po.class_probabilities(pts, boxes, 2, SIGMA)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
        counts.append(int((probs[np.arange(100), labels] > 0.82).sum()))
    assert counts[0] == 60 and counts == sorted(counts) and counts[-1] > 60  # one box: the larger part


def test_a_thin_part_between_two_others_needs_the_slab_move():
    """Part 1 is a thin sheet at x = 0 between two blocks of part 0: no single split certifies it (one side of
    it always borders part 0 within reach of the noise), the slab carve-out (two cuts at once) does."""
    rng = np.random.default_rng(2)
    block = rng.uniform(-0.3, 0.3, (200, 3))
    left, right = block[:100] + [-1.6, 0, 0], block[100:] + [1.6, 0, 0]
    sheet = np.c_[np.zeros(80), rng.uniform(-0.3, 0.3, (80, 2))]
    pts, labels = np.r_[left, right, sheet], np.r_[np.zeros(200, int), np.ones(80, int)]
    boxes = po.grow_partition(pts, labels, 2, sigma=SIGMA, cut=0.82, max_boxes=3)
    own = po.class_probabilities(pts, boxes, 2, SIGMA)[np.arange(len(labels)), labels]
    assert (own[labels == 1] > 0.82).all() and (own[labels == 0] > 0.82).mean() > 0.9
    assert any(b.part == 1 and np.isfinite(b.lo[0]) and np.isfinite(b.hi[0]) for b in boxes)


@pytest.mark.parametrize("p", [0.70, 0.83, 0.99])
def test_simulated_certification_matches_the_binomial_test(p):
    """Points whose true-part probability is p: none certified when p < τ (the test's guarantee), nearly all
    at 0.99, and at 0.83 the share the Binomial tail at the Holm count predicts (between the most and least
    lenient levels α/m and α)."""
    probs = np.tile([p, 1 - p], (400, 1))
    labels = np.zeros(400, int)
    acc = po.simulate_certified_accuracy(probs, labels, n0=10, n=1000, tau=0.75, alpha=0.001, correction="holm",
                                         sigma=SIGMA, trials=3, rng=np.random.default_rng(3))
    if p < 0.75:
        assert acc == 0.0
    elif p > 0.95:
        assert acc > 0.99
    else:
        from geocert import stats

        def share(level: float) -> float:
            k = next(k for k in range(1001) if stats.clopper_pearson_lower(np.array([k]), 1000, level)[0] > 0.75)
            return float(binom.sf(k - 1, 1000, p))

        assert share(0.001 / 400) - 0.05 <= acc <= share(0.001) + 0.05


def test_cli_compares_with_a_results_file(tmp_path):
    from geocert_pointcloud.data import load_shapes
    from geocert_pointcloud.scenes import make_dataset

    data = make_dataset(tmp_path / "data", shapes_per_category=3, num_points=200, seed=1, categories=("Mug",))
    name = load_shapes(data, split="train", num_shapes=1, num_points=200)[0].name
    results = tmp_path / "results.jsonl"
    results.write_text(f'{{"name": "{name}", "certified_accuracy": 0.5}}\n')
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "pointcloud_partition_oracle.py"), str(data),
                          "--split", "train", "--num-shapes", "1", "--num-points", "200", "--fit-points", "0",
                          "--cut", "0.82", "--trials", "1", "--compare", str(results)],
                         capture_output=True, text=True, check=True).stdout
    acc = float(out.split("certified accuracy ")[1].split()[0])
    assert 0.0 <= acc <= 1.0 and "model 0.500" in out and "the better of the two" in out
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "pointcloud_partition_oracle.py"), str(data),
                          "--compare", str(tmp_path / "missing.jsonl")], capture_output=True, text=True)
    assert bad.returncode != 0 and "missing.jsonl: no such results file" in bad.stderr
