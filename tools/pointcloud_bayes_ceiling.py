"""What the Bayes rule certifies on a dataset at noise σ (a reference point for base models, NOT a ceiling).

Under per-point noise ε ~ N(0, σ²I), given the clean shape, point i's part is best guessed from its own
noisy position y = x_i + ε_i by the rule that predicts the part maximising Σ_{j ∈ part} φ_h(y − x_j) with
h = σ (the Bayes posterior of which clean point produced y; it knows the clean shape, which no real model
does). This script estimates, per point, p_i = P(that rule is correct) by Monte Carlo and reports the
fraction of points with p_i > cut (≈ 0.82: what n = 1000 samples and Holm at α = 0.001 over 2048 points
need at τ = 0.75), and the mean p.

The Bayes rule maximises the MEAN of p_i, not the number of points with p_i above the cut, so its certified
fraction is no upper bound: rules with the same knowledge that trade hopeless points for ones near the cut
(a wider kernel, --kernel-scale 1.4; per-part weights) certify more, and so do trained models with
certification-aware training (docs/pointcloud.md). The only bound that follows from the Bayes rule is
mean p / cut (Markov: no rule has mean p above the Bayes rule's, and each counted point contributes > cut).

    python tools/pointcloud_bayes_ceiling.py [DATA] --sigma 0.25 --num-shapes 16 [--kernel-scale 1.4]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    data: tyro.conf.Positional[Path | None] = None
    """ShapeNet-part folder (default: the bundled procedural dataset)."""
    split: str = "test"
    """Split to evaluate."""
    sigma: float = 0.25
    """Noise std on xyz (unit-sphere units)."""
    tau: float = 0.75
    """Threshold τ."""
    margin: float = 0.07
    """p must exceed τ + margin (≈ what n=1000, Holm, α=0.001, 2048 points need)."""
    kernel_scale: float = 1.0
    """Kernel width h of the rule in units of σ (1 = the Bayes rule; wider kernels certify more points)."""
    num_shapes: int = 16
    """Evenly spaced shapes of the split."""
    num_points: int = 1024
    """Points per shape (the kernel sum is O(points²))."""
    samples: int = 100
    """Monte-Carlo noise draws per shape."""
    seed: int = 0


def main() -> None:
    import numpy as np
    import torch
    from geocert_pointcloud.data import CATEGORY_PARTS, load_shapes
    from geocert_pointcloud.scenes import default_dataset

    args = tyro.cli(Args)
    torch.set_num_threads(1)
    shapes = load_shapes(args.data or default_dataset(), split=args.split, num_shapes=args.num_shapes,
                         num_points=args.num_points)
    gen = torch.Generator().manual_seed(args.seed)
    per_cat: dict[str, list[np.ndarray]] = {}
    for sh in shapes:
        x = torch.from_numpy(sh.points).double()
        lab = torch.from_numpy(sh.labels)
        parts = torch.tensor(CATEGORY_PARTS[sh.category])
        onehot = (lab[:, None] == parts[None]).double()
        hits = torch.zeros(len(x), dtype=torch.float64)
        for _ in range(args.samples):
            y = x + torch.randn(x.shape, generator=gen, dtype=torch.float64) * args.sigma
            h = args.sigma * args.kernel_scale
            score = torch.exp(-torch.cdist(y, x) ** 2 / (2 * h**2)) @ onehot
            hits += (parts[score.argmax(1)] == lab).double()
        per_cat.setdefault(sh.category, []).append((hits / args.samples).numpy())
    thr = args.tau + args.margin
    rule = "Bayes rule" if args.kernel_scale == 1 else f"kernel rule (h = {args.kernel_scale}σ)"
    print(f"{rule} at σ={args.sigma}: fraction of points with p > {thr:.2f} (τ={args.tau}) — what this rule "
          "certifies, not an upper bound for other models")
    allp = []
    for cat, ps in per_cat.items():
        p = np.concatenate(ps)
        allp.append(p)
        print(f"  {cat:<10} {len(ps):3d} shapes  certifies {np.mean(p > thr):.3f}   mean p {p.mean():.3f}")
    p = np.concatenate(allp)
    print(f"  {'all':<10} {len(shapes):3d} shapes  certifies {np.mean(p > thr):.3f}   mean p {p.mean():.3f}")
    if args.kernel_scale == 1:
        print(f"  bound for any rule (Bayes mean p / cut): {min(p.mean() / thr, 1.0):.3f}")


if __name__ == "__main__":
    main()
