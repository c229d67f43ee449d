"""An upper bound on what any permutation-equivariant xyz-only base model can certify on a dataset at noise σ.

The lemma. Let f be a base model that is permutation-equivariant: point i's label is h(x̃_i, M), a function
(possibly random) of its own noisy position and of the multiset M of all noisy positions. Under per-point
noise ε ~ N(0, σ²I), let p_i = P(f labels point i as its true part y_i). Then for two points i, j with
different parts,

    p_i + p_j ≤ 2 Φ(|x_i − x_j| / (√2 σ)).

Proof: map the noise (ε_i, ε_j) ↦ (ε_j + x_j − x_i, ε_i + x_i − x_j) and keep every other point's. In the new
draw point j sits where point i sat and i where j sat, so M is the same and j gets the label i had: the event
"j gets y_j" in the new draw is the event "i gets y_j" in the old one, disjoint from "i gets y_i". The map is
a permutation of the noise coordinates (measure-preserving) followed by a shift of norm √2·|x_i − x_j|, so
the two laws differ by at most the total variation 2Φ(|x_i − x_j| / (2σ/√2)) − 1 between two Gaussians that
far apart: p_j ≤ (1 − p_i) + 2Φ(|x_i − x_j| / (√2σ)) − 1.

So the points whose p_i exceeds a cut c form an independent set of the conflict graph that joins points of
different parts closer than δ = √2 σ Φ⁻¹(c), and their number is at most N minus the size of any matching of
that graph (every edge of a matching loses one of its two ends). The matchings used here are maximum
matchings of the bipartite subgraphs that split the parts in two (exact for two-part categories).

Position rules. A model that labels each point by a fixed partition of space (given the shape, whatever
the other points' noise) has p_i + p_j ≤ 2Φ(|x_i − x_j| / (2σ)) instead (the two points' noisy positions
alone, one Gaussian each: total variation 2Φ(d / (2σ)) − 1), reached by the plane halfway between them:
the same graph with the conflict distance 2σ Φ⁻¹(c) (``--rule position``). Trained models see the other
points too, so this is a reference for them, not a bound; with 2048 points, one point's influence on the
context is small.

What it bounds. A certificate at τ is a level-α test of H0: p_i ≤ τ, so a point with p_i ≤ τ is certified
with probability at most α (Holm only lowers the per-test level). Hence, for every such model, the expected
certified accuracy is at most bound(c = τ) + α. The bound at the cut that certification actually needs
(≈ 0.82 for n = 1000, α = 0.001, Holm over 2048 points, τ = 0.75) is the tighter, heuristic number.

    python tools/pointcloud_pair_bound.py [DATA] --cut 0.82 0.79 0.75 --num-shapes 16 --split test [--rule position]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    data: tyro.conf.Positional[Path | None] = None
    """ShapeNet-part folder (default: the bundled procedural dataset)."""
    split: str = "test"
    num_shapes: int = 16
    """Evenly spaced shapes of the split (0 = all), as certify-pc selects them."""
    num_points: int = 2048
    sigma: float = 0.25
    cut: tuple[float, ...] = (0.82, 0.79, 0.75)
    rule: Literal["equivariant", "position"] = "equivariant"
    """equivariant: the bound for every permutation-equivariant model; position: for rules that label each
    point by a fixed partition of space."""
    per_shape: bool = False


def conflict_distance(sigma: float, cut: float, rule: str = "equivariant") -> float:
    """δ = √2 σ Φ⁻¹(cut) (``position``: 2σ Φ⁻¹(cut)): two points of different parts closer than this cannot
    both have p above the cut."""
    from scipy.stats import norm

    return float((np.sqrt(2.0) if rule == "equivariant" else 2.0) * sigma * norm.ppf(cut))


def pair_bound(points: np.ndarray, labels: np.ndarray, sigma: float, cut: float, rule: str = "equivariant") -> int:
    """An upper bound on how many of the points ``[N, 3]`` (parts ``labels [N]``) can all have p > ``cut``
    at noise σ under any permutation-equivariant base model (``rule="position"``: any fixed partition of
    space): N minus the largest of the maximum matchings of
    the conflict graph's bipartite subgraphs (one per split of the parts into two groups)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching
    from scipy.spatial import cKDTree

    n = len(labels)
    pairs = cKDTree(points).query_pairs(conflict_distance(sigma, cut, rule), output_type="ndarray")
    pairs = pairs[labels[pairs[:, 0]] != labels[pairs[:, 1]]]
    parts = np.unique(labels)
    best = 0
    for mask in range(1, 2 ** (len(parts) - 1)):  # the splits of the parts into two non-empty groups
        left = np.isin(labels, parts[[(mask >> k) & 1 == 1 for k in range(len(parts))]])
        e = pairs[left[pairs[:, 0]] != left[pairs[:, 1]]]
        if not len(e):
            continue
        a = np.where(left[e[:, 0]], e[:, 0], e[:, 1])
        b = np.where(left[e[:, 0]], e[:, 1], e[:, 0])
        match = maximum_bipartite_matching(csr_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), perm_type="column")
        best = max(best, int((match >= 0).sum()))
    return n - best


def main() -> None:
    from geocert_pointcloud.data import load_shapes
    from geocert_pointcloud.scenes import default_dataset

    args = tyro.cli(Args)
    shapes = load_shapes(args.data or default_dataset(), split=args.split, num_shapes=args.num_shapes,
                         num_points=args.num_points, seed=0)
    for cut in args.cut:
        bounds = [pair_bound(sh.points.astype(np.float64), sh.labels, args.sigma, cut, args.rule) for sh in shapes]
        if args.per_shape:
            for sh, b in zip(shapes, bounds, strict=True):
                print(f"  {sh.category:<9} {sh.name}: {b / len(sh.labels):.3f}")
        total = sum(len(sh.labels) for sh in shapes)
        print(f"{args.rule} rules, cut {cut}: conflict distance {conflict_distance(args.sigma, cut, args.rule):.3f}; at most "
              f"{sum(bounds) / total:.3f} of the points ({len(shapes)} shapes of {args.split}) can have p > {cut}",
              flush=True)


if __name__ == "__main__":
    main()
