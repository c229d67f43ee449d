"""tools/pointcloud_subset_spread.py: pooling certify-pc results and the spread of balanced subsets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _tools import ROOT, load_tool

ss = load_tool("pointcloud_subset_spread")


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"name": n, "category": c, "certified_accuracy": a}) + "\n" for n, c, a in rows))
    return path


def test_subsets_are_balanced_and_their_mean_is_the_pooled_score(tmp_path):
    a = _write(tmp_path / "a.jsonl", [("a1", "A", 0.2), ("a2", "A", 0.4), ("b1", "B", 0.9)])
    b = _write(tmp_path / "b.jsonl", [("a3", "A", 0.6), ("b2", "B", 0.7), ("b1", "B", 0.9)])  # b1 again: once
    by_cat = ss.read_results([a, b])
    assert {c: sorted(v) for c, v in by_cat.items()} == {"A": ["a1", "a2", "a3"], "B": ["b1", "b2"]}
    assert ss.balanced_score(by_cat) == pytest.approx((0.4 + 0.8) / 2)
    scores = ss.subset_scores(by_cat, 1, 30000, np.random.default_rng(0))
    assert set(np.round(scores, 6)) == {round((x + y) / 2, 6) for x in (0.2, 0.4, 0.6) for y in (0.9, 0.7)}
    assert scores.mean() == pytest.approx(0.6, abs=0.005)  # every shape equally likely: the pooled mean
    two = ss.subset_scores(by_cat, 2, 100, np.random.default_rng(0))  # B has exactly two: always both
    assert set(np.round(two, 6)) <= {0.55, 0.6, 0.65}  # A's mean of two of three, B's 0.8


def test_disagreeing_files_and_too_few_shapes_are_refused(tmp_path):
    a = _write(tmp_path / "a.jsonl", [("a1", "A", 0.2)])
    b = _write(tmp_path / "b.jsonl", [("a1", "A", 0.3)])
    with pytest.raises(SystemExit, match="a1"):
        ss.read_results([a, b])
    with pytest.raises(SystemExit, match="missing.jsonl: no such results file"):
        ss.read_results([a, tmp_path / "missing.jsonl"])
    with pytest.raises(SystemExit, match="fewer than 2 shapes of A"):
        ss.subset_scores(ss.read_results([a]), 2, 10, np.random.default_rng(0))


def test_cli(tmp_path):
    a = _write(tmp_path / "a.jsonl", [(f"s{i}", c, 0.1 * i) for i, c in enumerate("AABB")])
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "pointcloud_subset_spread.py"), str(a),
                          "--per-category", "1", "--mark", str(a)], capture_output=True, text=True, check=True).stdout
    assert "4 shapes in 2 categories: pooled certified accuracy 0.1500" in out and "percentile" in out
