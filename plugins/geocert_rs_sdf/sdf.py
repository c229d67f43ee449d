"""``geocert sdf``: RS-SDF of a mesh or an occupancy grid, and how far it is from the exact signed distance.

Pipeline: occupancy o on a voxel grid (ray parity at voxel centres, or the fraction of k³ sub-voxel centres
inside) → p = o ∗ N(0, σ²I) with the core's exact-tap blur (σ in voxels) → SDF = σ·Φ⁻¹(p), positive inside.
For a half-space whose face lies on voxel faces this is exactly the signed distance (the core's half-space
test); near a curved surface it is biased by about −σ²·H (H = mean curvature, positive for convex), e.g.
−σ²/R on a sphere of radius R, which the metrics measure by splitting the band |d| < band·σ into flat and
curved voxels with the Laplacian of the exact distance (Δd = −2H on the surface).
"""

from __future__ import annotations

import io
import math
import sys
import time
from pathlib import Path

import numpy as np

from geocert.errors import ParameterError
from geocert_rs_sdf.voxelize import Grid

__all__ = ["run_sdf", "rs_sdf", "blur_sigma", "exact_band_distance", "laplacian", "band_errors", "zero_level_mesh",
           "FLAT_BIAS_VOXELS", "SDF_EPS"]

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


def _signed_edt(inside: np.ndarray) -> np.ndarray:
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

    near = np.abs(_signed_edt(inside)) <= reach
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


def _write_slice(path: Path, sdf: np.ndarray, occupancy: np.ndarray, grid: Grid, title: str) -> None:
    """Middle z slice of the SDF (mesh units): diverging colours, the RS-SDF zero level (black) and the 0.5
    level of the input occupancy (green, dashed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from geocert.io import atomic_write

    k = grid.shape[2] // 2
    z = grid.origin[2] + k * grid.h
    lo = np.asarray(grid.origin) - 0.5 * grid.h
    hi = lo + np.asarray(grid.shape) * grid.h
    lim = float(np.abs(sdf).max()) or 1.0
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(sdf[:, :, k].T, origin="lower", cmap="RdBu", vmin=-lim, vmax=lim,
                   extent=(lo[0], hi[0], lo[1], hi[1]), interpolation="nearest")
    xs = grid.origin[0] + np.arange(grid.shape[0]) * grid.h
    ys = grid.origin[1] + np.arange(grid.shape[1]) * grid.h
    if occupancy[:, :, k].min() < 0.5 < occupancy[:, :, k].max():
        ax.contour(xs, ys, occupancy[:, :, k].T, levels=[0.5], colors="green", linestyles="dashed",
                   linewidths=1.0)
    if sdf[:, :, k].min() < 0.0 < sdf[:, :, k].max():
        ax.contour(xs, ys, sdf[:, :, k].T, levels=[0.0], colors="black", linewidths=1.2)
    fig.colorbar(im, ax=ax, label="RS-SDF (positive inside, mesh units)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{title}\nz = {z:.3g} slice; black: SDF = 0, green dashed: occupancy = 0.5", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _validate(cfg) -> None:
    from geocert.validate import check_positive_int, check_sigma
    from geocert_rs_sdf.voxelize import margin_voxels

    check_sigma(cfg.sigma)
    check_sigma(cfg.band, "band")
    check_sigma(cfg.voxel_size, "voxel_size")
    res = check_positive_int(cfg.resolution, "resolution")
    k = check_positive_int(cfg.supersample, "supersample")
    check_positive_int(cfg.threads, "threads")
    if Path(cfg.output).exists() and not Path(cfg.output).is_dir():
        raise ParameterError(f"{cfg.output}: --output exists and is not a folder")
    need = 2 * margin_voxels(cfg.sigma) + 4
    if res < need:
        raise ParameterError(f"resolution must be >= {need} for sigma={cfg.sigma:g} (an empty margin of "
                             f"ceil(4σ)+1 = {margin_voxels(cfg.sigma)} voxels on each side), got {res}")
    if k > 4:
        raise ParameterError(f"supersample must be in 1..4 (k³ voxelizations of the grid), got {k}")
    blur_sigma(cfg.sigma, k)


def _warn(msg: str, warnings_out: list[str]) -> None:
    warnings_out.append(msg)
    print(f"geocert sdf: warning: {msg}", file=sys.stderr)


def _default_mesh(resolution: int):
    from geocert_rs_sdf.mesh_io import check_mesh
    from geocert_rs_sdf.scenes import ground_truth_mesh

    mesh_res = max(64, resolution + 32)  # finer than the grid
    v, f = ground_truth_mesh(mesh_res)
    return check_mesh(v, f, f"bundled scene mesh (scenes.ground_truth_mesh({mesh_res}))")


def _mesh_agreement(mesh, verts: np.ndarray, faces: np.ndarray, h: float) -> dict:
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


def run_sdf(cfg) -> dict:
    """Run ``geocert sdf`` for an :class:`~geocert_rs_sdf.sdf_config.SdfConfig`; returns the metrics."""
    import torch

    from geocert.io import atomic_write, write_config, write_json, write_ply
    from geocert_rs_sdf.mesh_io import MESH_SUFFIXES, load_mesh, load_occupancy
    from geocert_rs_sdf.voxelize import (
        grid_for_mesh,
        margin_voxels,
        supersampled_occupancy,
        voxelize,
        voxelize_vote,
    )

    _validate(cfg)
    torch.set_num_threads(cfg.threads)
    warnings_out: list[str] = []
    sigma = float(cfg.sigma)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()

    # ---- inputs (all checks before anything is written)
    mesh = None
    path = cfg.input
    if path is not None and Path(path).suffix.lower() == ".npy":
        occupancy = load_occupancy(Path(path))
        grid = Grid(tuple(occupancy.shape), (0.0, 0.0, 0.0), float(cfg.voxel_size))
        source = str(path)
        edge = np.concatenate([occupancy[[0, -1]].ravel(), occupancy[:, [0, -1]].ravel(),
                               occupancy[:, :, [0, -1]].ravel()])
        if edge.max() > 0.0:
            _warn(f"{path}: occupied voxels touch the grid border; the blur continues the border values outside "
                  "the grid (replicate), as if the object went on past it", warnings_out)
    else:
        if path is None:
            mesh = _default_mesh(cfg.resolution)
        elif Path(path).suffix.lower() in MESH_SUFFIXES:
            mesh = load_mesh(Path(path))
        else:
            from geocert.errors import InputError

            raise InputError(f"{path}: unsupported input type {Path(path).suffix!r}; expected a mesh "
                             f"({', '.join(MESH_SUFFIXES)}) or an occupancy grid (.npy)")
        source = mesh.name
        vote = not mesh.watertight
        if vote:
            _warn(f"{mesh.name}: mesh is not watertight ({mesh.open_edges} edges not shared by exactly two "
                  "faces); occupancy by ray parity can be wrong (taking the majority of rays along x, y and z)",
                  warnings_out)
        grid = grid_for_mesh(mesh.vertices, cfg.resolution, margin_voxels(sigma))
        inside = (voxelize_vote(mesh.vertices, mesh.faces, grid) if vote else
                  voxelize(mesh.vertices, mesh.faces, grid, progress="voxelize"))
        occupancy = (inside.astype(np.float64) if cfg.supersample == 1 else
                     supersampled_occupancy(mesh.vertices, mesh.faces, grid, cfg.supersample,
                                            progress=f"voxelize ×{cfg.supersample}", vote=vote))
        if not inside.any():
            from geocert.errors import InputError

            raise InputError(f"{mesh.name}: no voxel centre is inside the mesh at resolution {cfg.resolution} "
                             "(mesh open, flat or thinner than a voxel)")
    timing["load_and_voxelize"] = time.perf_counter() - t0
    k = cfg.supersample if mesh is not None else 1

    # ---- RS-SDF
    t1 = time.perf_counter()
    sdf_vox = rs_sdf(torch.from_numpy(occupancy), sigma, k).numpy()
    timing["blur_and_sdf"] = time.perf_counter() - t1

    # ---- reference
    t2 = time.perf_counter()
    if mesh is not None:
        d_vox, backend = exact_band_distance(mesh, grid, inside, (cfg.band + 3.0) * sigma + 2.0, progress=True)
        reference = (f"exact signed distance to the input mesh at the voxel centres near the surface ({backend}; "
                     "sign from ray-parity occupancy)")
    else:
        inside = occupancy > 0.5
        d_vox = _signed_edt(inside) - np.where(inside, 0.5, -0.5)
        reference = ("no mesh: signed Euclidean distance transform between voxel centres of the occupancy "
                     "(> 0.5) minus ½ voxel, i.e. the distance to the voxel boundary (exact for axis-aligned "
                     "faces, an overestimate up to (√3−1)/2 voxel at steps and corners)")
    errors = band_errors(sdf_vox, d_vox, sigma, cfg.band, grid.h)
    timing["reference"] = time.perf_counter() - t2

    # ---- zero level
    t3 = time.perf_counter()
    surface = zero_level_mesh(sdf_vox, grid) if cfg.mesh else None
    agreement = None
    if surface is not None and mesh is not None:
        agreement = _mesh_agreement(mesh, surface[0], surface[1], grid.h)
    timing["marching_cubes"] = time.perf_counter() - t3

    saturation = sigma * float(torch.special.ndtri(torch.tensor(1.0 - SDF_EPS, dtype=torch.float64)))
    metrics = {
        "input": source,
        "input_kind": "mesh" if mesh is not None else "occupancy grid",
        "watertight": None if mesh is None else mesh.watertight,
        "occupancy": None if mesh is None else (
            "majority of ray parity along x, y, z (mesh not watertight)" if not mesh.watertight else
            "ray parity along z") + (f", {cfg.supersample}³ samples per voxel" if cfg.supersample > 1 else
                                     ", at voxel centres"),
        "sigma_vox": sigma,
        "sigma": sigma * grid.h,
        "voxel_size": grid.h,
        "grid": grid.as_dict(),
        "supersample": cfg.supersample if mesh is not None else None,
        "blur_sigma_vox": blur_sigma(sigma, k),
        "occupied_fraction": float(occupancy.mean()),
        "sdf": {"file": "sdf.npy", "units": "mesh units (divide by voxel_size for voxels)",
                "sign": "positive inside", "saturates_at": saturation * grid.h,
                "saturates_at_vox": saturation, "min": float(sdf_vox.min() * grid.h),
                "max": float(sdf_vox.max() * grid.h)},
        "reference": reference,
        "band": errors,
        "zero_level_mesh": None if surface is None else {
            "file": "mesh.ply", "vertices": len(surface[0]), "faces": len(surface[1]),
            **({"agreement_with_input": agreement} if agreement else {})},
        "warnings": warnings_out,
        "timing_s": timing,
    }

    # ---- outputs (each written atomically; metrics.json last)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, cfg, plugin="rs-sdf", plugin_version="0.1.0", seed=None)
    with atomic_write(out / "sdf.npy", "wb") as fh:
        np.save(fh, (sdf_vox * grid.h).astype(np.float32))
    if surface is not None:
        write_ply(out / "mesh.ply", surface[0], faces=surface[1])
    _write_slice(out / "sdf_slice.png", sdf_vox * grid.h, occupancy, grid,
                 f"RS-SDF σ = {sigma:g} voxels, grid {'×'.join(map(str, grid.shape))}")
    metrics["timing_s"]["total"] = time.perf_counter() - t0
    write_json(out / "metrics.json", metrics)
    a = errors["all"]
    if a["voxels"]:
        print(f"sdf: {'×'.join(map(str, grid.shape))} grid, σ = {sigma:g} voxels; band |d| < {cfg.band:g}σ: "
              f"mean |err| {a['mean_abs_error_vox']:.3f} voxels, max {a['max_abs_error_vox']:.3f} "
              f"(flat {errors['flat'].get('mean_abs_error_vox', math.nan):.3f}, curved "
              f"{errors['curved'].get('mean_abs_error_vox', math.nan):.3f}) → {out}")
    return metrics
