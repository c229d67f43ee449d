"""``geocert sdf``: validate, open the run, voxelize (or read the grid), RS-SDF, compare with the exact
distance, write sdf.npy / mesh.ply / sdf_slice.png, finish with metrics.json."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from geocert.errors import InputError, ParameterError
from geocert_rs_sdf.config import SdfConfig

__all__ = ["run", "validate"]


def validate(cfg: SdfConfig) -> None:
    """Parameter checks (one line each, options named as typed), before anything else."""
    from geocert.validate import check_positive_int, check_sigma
    from geocert_rs_sdf.sdf import blur_sigma
    from geocert_rs_sdf.voxelize import margin_voxels

    check_sigma(cfg.sigma, "--sigma")
    check_sigma(cfg.band, "--band")
    check_sigma(cfg.voxel_size, "--voxel-size")
    res = check_positive_int(cfg.resolution, "--resolution")
    k = check_positive_int(cfg.supersample, "--supersample")
    need = 2 * margin_voxels(cfg.sigma) + 4
    if res < need:
        raise ParameterError(f"--resolution must be >= {need} for --sigma {cfg.sigma:g} (an empty margin of "
                             f"ceil(4σ)+1 = {margin_voxels(cfg.sigma)} voxels on each side), got {res}")
    if k > 4:
        raise ParameterError(f"--supersample must be in 1..4 (k³ voxelizations of the grid), got {k}")
    blur_sigma(cfg.sigma, k)


def input_kind(path: Path | None) -> str:
    """``"default"``, ``"grid"`` (.npy) or ``"mesh"``; a folder, a missing file or another suffix is an
    :class:`InputError` naming the path."""
    from geocert_rs_sdf.mesh_io import MESH_SUFFIXES

    if path is None:
        return "default"
    expected = f"a mesh file ({', '.join(MESH_SUFFIXES)}) or an occupancy grid (.npy)"
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected {expected}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "grid"
    if suffix in MESH_SUFFIXES:
        return "mesh"
    if not path.exists():
        raise InputError(f"{path}: file not found")
    shown = f"{path.suffix!r}" if path.suffix else "(no file extension)"
    raise InputError(f"{path}: unsupported input type {shown}; expected {expected}")


def _warn(msg: str, warnings_out: list[str]) -> None:
    warnings_out.append(msg)
    print(f"geocert sdf: warning: {msg}", file=sys.stderr)


def _fmt_vox(stats: dict) -> str:
    return f"{stats['mean_abs_error_vox']:.3f}" if stats.get("voxels") else "none"


def run(cfg: SdfConfig) -> dict:
    """Run ``geocert sdf``; returns the metrics."""
    import torch

    from geocert.io import atomic_write, write_ply
    from geocert.pipeline.run import open_run
    from geocert_rs_sdf import memory
    from geocert_rs_sdf.figures import SLICE_CONVENTION, sdf_slice_figure
    from geocert_rs_sdf.mesh_io import bundled_mesh, load_mesh, load_occupancy
    from geocert_rs_sdf.sdf import (
        band_errors,
        blur_sigma,
        exact_band_distance,
        grid_reference_distance,
        mesh_agreement,
        mesh_occupancy,
        rs_sdf,
        sdf_saturation,
        zero_level_mesh,
    )
    from geocert_rs_sdf.voxelize import Grid, grid_for_mesh, margin_voxels

    validate(cfg)
    path = Path(cfg.input) if cfg.input is not None else None
    kind = input_kind(path)
    run_ = open_run(cfg, seed=None)
    warnings_out: list[str] = []
    sigma = float(cfg.sigma)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()

    # ---- inputs, and whether their arrays fit (before the work)
    mesh = None
    option = f"--resolution {cfg.resolution}"
    if kind == "grid":
        occupancy = load_occupancy(path)
        memory.check_fits(occupancy.size * memory.SDF_BYTES_PER_VOXEL, f"{path}",
                          f"a {'×'.join(map(str, occupancy.shape))} grid")
        grid = Grid(tuple(occupancy.shape), (0.0, 0.0, 0.0), float(cfg.voxel_size))
        source = str(path)
        edge = np.concatenate([occupancy[[0, -1]].ravel(), occupancy[:, [0, -1]].ravel(),
                               occupancy[:, :, [0, -1]].ravel()])
        if edge.max() > 0.0:
            _warn(f"{path}: occupied voxels touch the grid border; the blur continues the border values outside "
                  "the grid (replicate), as if the object went on past it", warnings_out)
    else:
        if kind == "default":
            mesh_res = max(64, cfg.resolution + 32)  # finer than the grid
            memory.check_fits(cfg.resolution**3 * memory.SDF_BYTES_PER_VOXEL
                              + mesh_res**3 * memory.MESH_BYTES_PER_VOXEL, option,
                              f"a grid of up to {cfg.resolution}³ voxels and the bundled mesh at {mesh_res}³")
            mesh = bundled_mesh(mesh_res)
        else:
            mesh = load_mesh(path)
        source = mesh.name
        grid = grid_for_mesh(mesh.vertices, cfg.resolution, margin_voxels(sigma))
        memory.check_fits(math.prod(grid.shape) * memory.SDF_BYTES_PER_VOXEL, option,
                          f"a {'×'.join(map(str, grid.shape))} grid")
        vote = not mesh.watertight
        if vote:
            _warn(f"{mesh.name}: mesh is not watertight ({mesh.open_edges} edges not shared by exactly two "
                  "faces); occupancy by ray parity can be wrong (taking the majority of rays along x, y and z)",
                  warnings_out)
        inside, occupancy = mesh_occupancy(mesh, grid, cfg.supersample, vote)
        if not inside.any():
            raise InputError(f"{mesh.name}: no voxel centre is inside the mesh at resolution {cfg.resolution} "
                             "(mesh open, flat or thinner than a voxel)")
    timing["load_and_voxelize"] = time.perf_counter() - t0
    k = cfg.supersample if mesh is not None else 1

    # ---- RS-SDF
    t1 = time.perf_counter()
    sdf_vox = rs_sdf(torch.from_numpy(occupancy).to(run_.device), sigma, k).cpu().numpy()
    timing["blur_and_sdf"] = time.perf_counter() - t1

    # ---- reference
    t2 = time.perf_counter()
    if mesh is not None:
        d_vox, backend = exact_band_distance(mesh, grid, inside, (cfg.band + 3.0) * sigma + 2.0, progress=True)
        reference = (f"exact signed distance to the input mesh at the voxel centres near the surface ({backend}; "
                     "sign from ray-parity occupancy)")
    else:
        d_vox = grid_reference_distance(occupancy)
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
        agreement = mesh_agreement(mesh, surface[0], surface[1], grid.h)
    timing["marching_cubes"] = time.perf_counter() - t3

    saturation = sdf_saturation(sigma)
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
        "sdf_slice": {"file": "sdf_slice.png", "colours": SLICE_CONVENTION},
        "reference": reference,
        "band": errors,
        "zero_level_mesh": None if surface is None else {
            "file": "mesh.ply", "vertices": len(surface[0]), "faces": len(surface[1]),
            **({"agreement_with_input": agreement} if agreement else {})},
        "warnings": warnings_out,
        "timing_s": timing,
    }

    # ---- outputs (staged; published by finish, metrics.json last)
    with atomic_write(run_.path("sdf.npy"), "wb") as fh:
        np.save(fh, (sdf_vox * grid.h).astype(np.float32))
    if surface is not None:
        write_ply(run_.path("mesh.ply"), surface[0], faces=surface[1])
    kz = grid.shape[2] // 2
    lo = np.asarray(grid.origin) - 0.5 * grid.h
    hi = lo + np.asarray(grid.shape) * grid.h
    fig = sdf_slice_figure(sdf_vox[:, :, kz] * grid.h, (lo[0], hi[0], lo[1], hi[1]), xlabel="x", ylabel="y",
                           units="mesh units", second_level=(occupancy[:, :, kz], "input occupancy"),
                           title=f"RS-SDF σ = {sigma:g} voxels, grid {'×'.join(map(str, grid.shape))}, "
                                 f"z = {grid.origin[2] + kz * grid.h:.3g} slice")
    run_.save_figure("sdf_slice.png", fig, dpi=110)
    metrics["timing_s"]["total"] = time.perf_counter() - t0
    out = run_.finish(metrics)
    a = errors["all"]
    if a["voxels"]:
        print(f"sdf: {'×'.join(map(str, grid.shape))} grid, σ = {sigma:g} voxels; band |d| < {cfg.band:g}σ: "
              f"mean |err| {a['mean_abs_error_vox']:.3f} voxels, max {a['max_abs_error_vox']:.3f} "
              f"(flat {_fmt_vox(errors['flat'])}, curved {_fmt_vox(errors['curved'])}) → {out}")
    else:
        print(f"sdf: {'×'.join(map(str, grid.shape))} grid, σ = {sigma:g} voxels; no voxel in the band "
              f"|d| < {cfg.band:g}σ to measure errors → {out}")
    return metrics
