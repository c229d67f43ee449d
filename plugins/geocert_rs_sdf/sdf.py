"""RS-SDF of an occupancy grid and how far it is from the exact signed distance (the library of ``geocert sdf``;
the command is :mod:`geocert_rs_sdf.cmd_sdf`).

Pipeline: occupancy o on a voxel grid (ray parity at voxel centres, or the fraction of k³ sub-voxel centres
inside) → p = o ∗ N(0, σ²I) with the core's exact-tap blur (σ in voxels) → SDF = σ·Φ⁻¹(p), positive inside.
For a half-space whose face lies on voxel faces this is exactly the signed distance (the core's half-space
test); near a curved surface it is biased by about −σ²·H (H = mean curvature, positive for convex), e.g.
−σ²/R on a sphere of radius R, which the metrics measure by splitting the band |d| < band·σ into flat and
curved voxels with the Laplacian of the exact distance (Δd = −2H on the surface).
"""

from __future__ import annotations

import math

import numpy as np

from geocert.errors import ParameterError
from geocert_rs_sdf.voxelize import Grid

__all__ = ["rs_sdf", "blur_sigma", "mesh_occupancy", "signed_edt", "exact_band_distance", "grid_reference_distance",
           "laplacian", "band_errors", "zero_level_mesh", "mesh_agreement", "sdf_saturation", "FLAT_BIAS_VOXELS",
           "SDF_EPS"]

FLAT_BIAS_VOXELS = 0.02
"""A band voxel counts as flat when the curvature bias predicted there, |σ²·Δd/2|, is below this (voxels)."""
SDF_EPS = 1e-6
"""p is clamped to [ε, 1−ε] before Φ⁻¹, so the SDF saturates at ±σ·Φ⁻¹(1−ε) ≈ ±4.75σ."""


def blur_sigma(sigma: float, supersample: int = 1) -> float:
    """σ of the exact-tap blur that gives a total smoothing of exactly σ (voxels) for an occupancy made with
    ``supersample`` = k (K = k³ sample points per voxel).

    k = 1 (binary centre test): σ itself; the grid is read as a union of cubes and the exact taps blur that
    solid exactly (a face on voxel faces gives p = Φ(d/σ)). k > 1 (partial volume): each value already
    averages the solid over K points spread evenly along each axis of its voxel (variance (K²−1)/12K² per
    axis), and the taps, which read each cell as constant, add the variance 1/12 of one cell; both are taken
    out, σ_b² = σ² − 1/12 − (K²−1)/12K², so that σ·Φ⁻¹(p) matches the smoothing actually applied."""
    if supersample == 1:
        return sigma
    n = supersample**3
    var = sigma**2 - 1.0 / 12.0 - (n**2 - 1) / (12.0 * n**2)
    if var <= 0.0:
        raise ParameterError(f"sigma must be > {math.sqrt(sigma**2 - var):.3f} voxels with supersample="
                             f"{supersample} (the partial-volume averaging alone smooths that much), got {sigma:g}")
    return math.sqrt(var)


def rs_sdf(occupancy, sigma: float, supersample: int = 1):
    """RS-SDF in voxels, ``[X, Y, Z] -> [X, Y, Z]`` torch tensors: σ·Φ⁻¹(occupancy ∗ N(0, σ_b²)), positive
    inside, with σ_b = :func:`blur_sigma` (σ itself for a binary occupancy). The blur uses exact Gaussian
    taps and replicate padding (the grid's border values continue outside it; keep ≥ 4σ empty voxels around
    an object). Differentiable in ``occupancy``."""
    from geocert.smoothing import sdf_from_probability, smooth_occupancy

    return sdf_from_probability(smooth_occupancy(occupancy, blur_sigma(sigma, supersample)), sigma, eps=SDF_EPS)


def signed_edt(inside: np.ndarray) -> np.ndarray:
    """Signed distance in voxels from each voxel centre to the nearest centre of the other class (positive
    inside), scipy's exact Euclidean distance transform."""
    from scipy.ndimage import distance_transform_edt

    return np.where(inside, distance_transform_edt(inside), -distance_transform_edt(~inside))


def exact_band_distance(mesh, grid: Grid, inside: np.ndarray, reach: float, progress: bool = False,
                        ) -> tuple[np.ndarray, str]:
    """Exact signed distance to the mesh, in voxels and positive inside, at every voxel centre whose distance
    transform to the other class is ≤ ``reach`` voxels (NaN elsewhere). Since the segment to the nearest
    centre of the other class crosses the surface, |d| ≤ that distance: every voxel with |d| < reach − √3 is
    covered (parts thinner than a voxel that no centre sees can be missed). The magnitude is the distance to
    the triangles; the sign is the centre's ray-parity occupancy ``inside``."""
    from geocert_rs_sdf.voxelize import mesh_distance

    near = np.abs(signed_edt(inside)) <= reach
    idx = np.argwhere(near)
    dist, backend = mesh_distance(mesh.vertices, mesh.faces, grid.centres(idx), progress=progress and "distance")
    out = np.full(grid.shape, np.nan)
    out[near] = np.where(inside[near], dist, -dist) / grid.h
    return out, backend


def laplacian(d: np.ndarray) -> np.ndarray:
    """7-point Laplacian ``[X, Y, Z]`` of a grid in voxel units; NaN where a neighbour is NaN or outside."""
    out = np.full(d.shape, np.nan)
    c = d[1:-1, 1:-1, 1:-1]
    out[1:-1, 1:-1, 1:-1] = (d[2:, 1:-1, 1:-1] + d[:-2, 1:-1, 1:-1] + d[1:-1, 2:, 1:-1] + d[1:-1, :-2, 1:-1]
                             + d[1:-1, 1:-1, 2:] + d[1:-1, 1:-1, :-2] - 6.0 * c)
    return out


def _stats(err: np.ndarray, h: float) -> dict:
    if err.size == 0:
        return {"voxels": 0}
    a = np.abs(err)
    return {
        "voxels": int(err.size),
        "mean_abs_error_vox": float(a.mean()),
        "max_abs_error_vox": float(a.max()),
        "mean_signed_error_vox": float(err.mean()),
        "rmse_vox": float(np.sqrt((err**2).mean())),
        "p95_abs_error_vox": float(np.percentile(a, 95)),
        "mean_abs_error": float(a.mean() * h),
        "max_abs_error": float(a.max() * h),
        "mean_signed_error": float(err.mean() * h),
    }


def band_errors(sdf_vox: np.ndarray, d_vox: np.ndarray, sigma: float, band: float, h: float) -> dict:
    """Errors of the RS-SDF against the exact signed distance ``d_vox`` (voxels, NaN where unknown) in the band
    |d| < band·σ: all band voxels, the flat ones (predicted curvature bias |σ²·Δd/2| < FLAT_BIAS_VOXELS at
    every voxel within ±ceil(3σ) voxels) and the others ("curved": near curved faces, edges, corners, thin
    parts), whose mean signed error is set beside the mean predicted bias σ²·Δd/2. Errors are RS-SDF − d (``_vox``: voxels; without suffix: mesh units, × ``h``)."""
    from scipy.ndimage import maximum_filter

    lap = laplacian(d_vox)
    in_band = np.isfinite(d_vox) & (np.abs(np.nan_to_num(d_vox, nan=np.inf)) < band * sigma)
    err = sdf_vox - d_vox
    predicted = 0.5 * sigma**2 * lap
    known = in_band & np.isfinite(lap)
    # flat: no curvature anywhere within ±ceil(3σ) voxels (the blur sees that far: edges bias their neighbours)
    size = 2 * math.ceil(3.0 * sigma) + 1
    nearby = maximum_filter(np.abs(np.nan_to_num(predicted)), size=size, mode="nearest")
    flat = known & (nearby < FLAT_BIAS_VOXELS)
    curved = known & ~flat
    out = {
        "definition": f"band |d| < {band:g}σ = {band * sigma:g} voxels; error = RS-SDF − exact signed distance",
        "all": _stats(err[in_band], h),
        "flat": {"definition": f"band voxels where |σ²·Δd/2| < {FLAT_BIAS_VOXELS} voxel at every voxel within "
                               f"±{size // 2} voxels (Δd: 7-point Laplacian of the exact distance)",
                 **_stats(err[flat], h)},
        "curved": {"definition": "the other band voxels (near curved faces, edges, corners, thin parts)", **_stats(err[curved], h)},
    }
    if curved.any():
        out["curved"]["mean_predicted_bias_vox"] = float(predicted[curved].mean())
        out["curved"]["median_predicted_bias_vox"] = float(np.median(predicted[curved]))
        out["curved"]["median_signed_error_vox"] = float(np.median(err[curved]))
    return out


def zero_level_mesh(sdf_vox: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes zero level of a positive-inside SDF grid in grid coordinates (``vertices [V, 3]`` at
    ``origin + index·h``, outward-facing ``faces [F, 3]``), or None when the grid has no zero crossing."""
    from skimage.measure import marching_cubes

    if not (sdf_vox.min() < 0.0 < sdf_vox.max()):
        return None
    verts, faces, _, _ = marching_cubes(sdf_vox.astype(np.float32), level=0.0)
    return grid.centres(verts), faces[:, ::-1].astype(np.int64)  # skimage winds them inward here


def mesh_occupancy(mesh, grid: Grid, supersample: int, vote: bool) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy of ``mesh`` on ``grid``: the inside test at the voxel centres ``[X, Y, Z]`` bool (ray parity
    along z, or the majority of x, y and z when ``vote``) and the occupancy that is blurred ``[X, Y, Z]``
    float64 (that test as 0/1 for ``supersample`` = 1, else the fraction of k³ lattice points inside)."""
    from geocert_rs_sdf.voxelize import supersampled_occupancy, voxelize, voxelize_vote

    inside = (voxelize_vote(mesh.vertices, mesh.faces, grid) if vote else
              voxelize(mesh.vertices, mesh.faces, grid, progress="voxelize"))
    occupancy = (inside.astype(np.float64) if supersample == 1 else
                 supersampled_occupancy(mesh.vertices, mesh.faces, grid, supersample,
                                        progress=f"voxelize ×{supersample}", vote=vote))
    return inside, occupancy


def grid_reference_distance(occupancy: np.ndarray) -> np.ndarray:
    """The reference distance of an occupancy grid without a mesh, in voxels (positive inside): the signed
    distance transform between voxel centres of ``occupancy > 0.5`` minus ½ voxel, i.e. the distance to the
    voxel boundary (exact for axis-aligned faces, an overestimate up to (√3−1)/2 voxel at steps and corners)."""
    inside = occupancy > 0.5
    return signed_edt(inside) - np.where(inside, 0.5, -0.5)


def mesh_agreement(mesh, verts: np.ndarray, faces: np.ndarray, h: float) -> dict:
    """One-sided distances (vertices to the other mesh) between the zero-level mesh and the input mesh."""
    from geocert_rs_sdf.voxelize import mesh_distance

    out_to_in, _ = mesh_distance(mesh.vertices, mesh.faces, verts)
    in_to_out, _ = mesh_distance(verts, faces, mesh.vertices)
    return {
        "definition": "distances from each vertex of one mesh to the other mesh's triangles (_vox: voxels)",
        "output_to_input_mean_vox": float(out_to_in.mean() / h),
        "output_to_input_max_vox": float(out_to_in.max() / h),
        "input_to_output_mean_vox": float(in_to_out.mean() / h),
        "input_to_output_max_vox": float(in_to_out.max() / h),
        "chamfer_mean": float(0.5 * (out_to_in.mean() + in_to_out.mean())),
    }


def sdf_saturation(sigma: float) -> float:
    """|RS-SDF| where it saturates, in voxels: σ·Φ⁻¹(1 − SDF_EPS) (p is clamped there)."""
    import torch

    return sigma * float(torch.special.ndtri(torch.tensor(1.0 - SDF_EPS, dtype=torch.float64)))
