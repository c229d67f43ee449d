"""Benchmark of the RS-SDF paper's claim (rs-sdf plugin, ``geocert sdf``): the SDF of randomized smoothing,
computed by Monte-Carlo (n noisy occupancy queries per point, the core's ``sample_counts``), equals the grid
convolution — same values, far less time. Agreement and time are measured in the same run.

    python tools/bench/bench_rs_sdf_sdf.py [--resolution 128] [--sigma 1.5] [--points 2000] [--quick]

On the bundled scene's mesh (``scenes.ground_truth_mesh(160)``) voxelized on a ``resolution`` grid:

1. grid path: voxelize (binary, ray parity) + exact-tap blur + σ·Φ⁻¹ for every voxel of the grid;
2. Monte-Carlo on ``points`` voxel centres of the band |SDF| < 2σ, with two base classifiers:
   a. the voxel occupancy itself (the value of the voxel containing the noisy point): MC estimates exactly
      what the grid blur computes, so the two differ only by sampling error — reported as z-scores
      (difference / predicted MC standard deviation σ·√(p(1−p)/n)/φ(Φ⁻¹(p)));
   b. the continuous object (the analytic ``scenes.object_sdf`` < 0): MC estimates the RS-SDF of the true
      shape; the grid differs from it by its discretization (binary, and k = 3 partial volume).
Time: MC seconds per point × the grid's voxel count against the grid path's seconds, printed as a ratio.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch


def mc_sdf(classify, points_vox: torch.Tensor, sigma: float, n: int, seed: int, batch: int) -> tuple[np.ndarray, float]:
    """Monte-Carlo RS-SDF (voxels) at ``points_vox [N, 3]`` and its wall time."""
    from geocert.smoothing import sample_counts

    t0 = time.perf_counter()
    counts = sample_counts(classify, points_vox, sigma=sigma, n=n, num_classes=2, batch_size=batch,
                           generator=torch.Generator().manual_seed(seed))
    p = counts[:, 1].double() / n
    sdf = (sigma * torch.special.ndtri(p.clamp(1e-6, 1 - 1e-6))).numpy()
    return sdf, time.perf_counter() - t0


def mc_std(sdf_ref: np.ndarray, sigma: float, n: int) -> np.ndarray:
    """Standard deviation of the MC estimate of σ·Φ⁻¹(p) at the true value (delta method)."""
    z = sdf_ref / sigma
    p = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    phi = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return sigma * np.sqrt(p * (1 - p) / n) / phi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--sigma", type=float, default=1.5, help="σ in voxels")
    ap.add_argument("--points", type=int, default=2000, help="band points for Monte-Carlo")
    ap.add_argument("--samples", type=int, nargs="+", default=[1000, 10000], help="Monte-Carlo n values")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="48³ grid, 200 points, n = 500 (smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.resolution, args.points, args.samples = 48, 200, [500]
    torch.set_num_threads(args.threads)

    from geocert_rs_sdf.scenes import ground_truth_mesh, object_sdf
    from geocert_rs_sdf.sdf import rs_sdf
    from geocert_rs_sdf.voxelize import grid_for_mesh, margin_voxels, supersampled_occupancy, voxelize

    sigma = args.sigma
    vertices, faces = ground_truth_mesh(160)
    grid = grid_for_mesh(vertices, args.resolution, margin_voxels(sigma))
    n_vox = math.prod(grid.shape)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; scene mesh {len(faces)} faces; grid "
          f"{'×'.join(map(str, grid.shape))} ({n_vox:,} voxels), σ = {sigma} voxels")

    t0 = time.perf_counter()
    occ = voxelize(vertices, faces, grid)
    t_vox = time.perf_counter() - t0
    t1 = time.perf_counter()
    sdf_grid = rs_sdf(torch.from_numpy(occ.astype(np.float64)), sigma).numpy()
    t_blur = time.perf_counter() - t1
    t_grid = t_vox + t_blur
    occ3 = supersampled_occupancy(vertices, faces, grid, 3)
    sdf_grid3 = rs_sdf(torch.from_numpy(occ3), sigma, 3).numpy()
    print(f"[grid] voxelize {t_vox:.3f} s + blur and σ·Φ⁻¹ {t_blur:.3f} s = {t_grid:.3f} s for all voxels "
          f"({t_grid / n_vox * 1e6:.3f} µs per voxel)")

    rng = np.random.default_rng(0)
    band = np.argwhere(np.abs(sdf_grid) < 2 * sigma)
    idx = band[rng.choice(len(band), min(args.points, len(band)), replace=False)]
    pts = torch.from_numpy(idx.astype(np.float64))
    ref = sdf_grid[tuple(idx.T)]
    ref3 = sdf_grid3[tuple(idx.T)]
    occ_t = torch.from_numpy(occ)
    hi = torch.tensor(grid.shape) - 1
    origin = torch.tensor(grid.origin, dtype=torch.float64)

    def classify_grid(x: torch.Tensor) -> torch.Tensor:  # [B, N, 3] voxel coords → occupancy of that voxel
        cell = torch.minimum(torch.floor(x + 0.5).long().clamp_min(0), hi)
        return occ_t[cell[..., 0], cell[..., 1], cell[..., 2]].long()

    def classify_true(x: torch.Tensor) -> torch.Tensor:  # the analytic object (object_sdf < 0 inside)
        world = (origin + x * grid.h).numpy()
        return torch.from_numpy(object_sdf(world) < 0.0).long()

    print(f"[monte-carlo] {len(idx)} band voxel centres (|SDF| < 2σ), base classifiers: voxel occupancy, "
          "analytic object")
    for n in args.samples:
        batch = max(1, min(n, 2_000_000 // len(idx)))
        mc, t_mc = mc_sdf(classify_grid, pts, sigma, n, seed=1, batch=batch)
        std = mc_std(ref, sigma, n)
        z = (mc - ref) / std
        diff = np.abs(mc - ref)
        per_point = t_mc / len(idx)
        print(f"  n={n:>6} voxel occupancy: {t_mc:.2f} s ({per_point * 1e3:.3f} ms/point); |MC − grid| mean "
              f"{diff.mean():.4f}, max {diff.max():.4f} voxels; predicted MC std mean {std.mean():.4f}; "
              f"z mean {z.mean():+.3f}, z std {z.std():.3f}, |z| > 3: {(np.abs(z) > 3).mean():.2%}")
        print(f"      time for the whole grid by MC ≈ {per_point * n_vox:.0f} s (extrapolated) vs grid "
              f"{t_grid:.3f} s: MC / grid = {per_point * n_vox / t_grid:,.0f}×; band only "
              f"({len(band):,} voxels) {per_point * len(band) / t_grid:,.0f}×")
        mct, t_true = mc_sdf(classify_true, pts, sigma, n, seed=2, batch=batch)
        std_t = mc_std(mct, sigma, n)
        e1, e3 = ref - mct, ref3 - mct
        print(f"  n={n:>6} analytic object: {t_true:.2f} s; grid − MC(true shape): binary mean {e1.mean():+.4f} "
              f"(|·| {np.abs(e1).mean():.4f}), k=3 partial volume mean {e3.mean():+.4f} (|·| "
              f"{np.abs(e3).mean():.4f}) voxels; MC std mean {std_t.mean():.4f}")
    n_needed = math.ceil((sigma * 0.5 / (0.05 * (1 / math.sqrt(2 * math.pi)))) ** 2)
    print(f"[note] MC needs n ≥ {n_needed} samples per point for a 0.05-voxel standard deviation at the surface "
          f"(σ·√(p(1−p)/n)/φ(0) with p = ½)")


if __name__ == "__main__":
    main()
