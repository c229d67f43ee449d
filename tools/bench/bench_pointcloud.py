"""Benchmark: certify one 2048-point cloud with n = 1000 (SegCertify, `geocert certify-pc` defaults).

Prints sampling vs statistics time (the statistics must stay < 5% of the total) and, as references measured
in the same run, the time of the bare forward passes the sampling needs (so the overhead of noise drawing
and vote counting shows as a ratio) and the unfused model (BatchNorm not folded).

    python tools/bench/bench_pointcloud.py [--checkpoint outputs/train-pc/model.pt] [--n 1000] [--threads 2]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    checkpoint: Path | None = None
    """A train-pc checkpoint (default: a freshly initialised PointNet of the default width; the timing does
    not depend on the weights)."""
    n: int = 1000
    """Estimation samples."""
    n0: int = 10
    """Selection samples."""
    num_points: int = 2048
    """Points in the cloud."""
    batch_size: int = 100
    """Noisy clouds per forward pass."""
    threads: int = 2
    """torch CPU threads."""


def main() -> None:
    import numpy as np
    import torch
    from geocert_pointcloud.data import CATEGORIES, NUM_PARTS, normalize_unit_sphere
    from geocert_pointcloud.model import (
        PointNetPartSeg,
        fuse_batchnorm,
        load_checkpoint,
        part_mask,
        predict_parts,
    )
    from geocert_pointcloud.scenes import make_shape

    from geocert.certify import certify_from_counts
    from geocert.smoothing import sample_counts

    args = tyro.cli(Args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_checkpoint(args.checkpoint)[0] if args.checkpoint else PointNetPartSeg().eval()
    fused = fuse_batchnorm(model)
    pts, _, _ = make_shape("Chair", np.random.default_rng(0), args.num_points)
    x = torch.from_numpy(normalize_unit_sphere(pts)).float()
    cat = torch.tensor([CATEGORIES.index("Chair")])
    mask = part_mask(cat)

    def base(m):
        return lambda b: predict_parts(m, b, cat.expand(len(b)), mask.expand(len(b), -1))

    total = args.n0 + args.n
    # reference 1: bare forward passes over pre-drawn noisy batches (no noise drawing, no counting)
    batch = x + torch.randn(args.batch_size, *x.shape) * 0.25
    with torch.inference_mode():
        base(fused)(batch)  # warm-up
        t = time.perf_counter()
        for _ in range(3):
            base(fused)(batch)
        fwd = (time.perf_counter() - t) / 3 * total / args.batch_size
        t = time.perf_counter()
        for _ in range(3):
            base(model)(batch)
        fwd_unfused = (time.perf_counter() - t) / 3 * total / args.batch_size
    # the measured run: sampling (n0 + n) and statistics, as certify-pc does it
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    kw = dict(sigma=0.25, num_classes=NUM_PARTS, batch_size=args.batch_size, generator=gen)
    c0 = sample_counts(base(fused), x, n=args.n0, **kw)
    c = sample_counts(base(fused), x, n=args.n, **kw)
    t1 = time.perf_counter()
    cert = certify_from_counts(c0, c, sigma=0.25, tau=0.75, alpha=0.001, correction="holm")
    cert.cohen_radius()
    t2 = time.perf_counter()
    sampling, statistics = t1 - t0, t2 - t1
    print(f"one cloud: {args.num_points} points, n0={args.n0}, n={args.n}, batch {args.batch_size}, "
          f"{args.threads} threads, width {model.width}")
    print(f"  sampling   {sampling:8.2f} s")
    print(f"  statistics {statistics:8.3f} s   ({100 * statistics / (sampling + statistics):.2f}% of the total; "
          f"must be < 5%)")
    print(f"  total      {sampling + statistics:8.2f} s   (paper, GPU: 54 s per cloud)")
    print(f"  reference: bare forward passes {fwd:.2f} s → sampling overhead ×{sampling / fwd:.2f}")
    print(f"  reference: unfused BatchNorm forward passes {fwd_unfused:.2f} s → folding speed-up "
          f"×{fwd_unfused / fwd:.2f}")
    print(f"  certified {cert.num_certified}/{args.num_points} points (abstain {cert.abstain_rate:.3f})")


if __name__ == "__main__":
    main()
