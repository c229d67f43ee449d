"""Inputs of ``geocert sdf``: a triangle mesh file or an occupancy grid (.npy), checked with one-line errors
that name the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocert.errors import InputError
from geocert_rs_sdf.voxelize import open_edges

__all__ = ["MESH_SUFFIXES", "Mesh", "load_mesh", "load_occupancy", "check_mesh", "bundled_mesh"]

MESH_SUFFIXES = (".ply", ".obj", ".stl", ".off")


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh with merged vertices: ``vertices [V, 3]`` float64, ``faces [F, 3]`` int64."""

    vertices: np.ndarray
    faces: np.ndarray
    name: str
    open_edges: int
    """Edges not shared by exactly two faces (0 for a watertight mesh)."""

    @property
    def watertight(self) -> bool:
        return self.open_edges == 0


def check_mesh(vertices, faces, name: str) -> Mesh:
    """Validate ``vertices [V, 3]`` / ``faces [F, 3]``, merge duplicate vertices (STL stores each triangle's
    corners apart) and count the edges that break watertightness."""
    import trimesh

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InputError(f"{name}: mesh has no triangles (point clouds and polylines cannot be voxelized)")
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise InputError(f"{name}: mesh has no vertices (or vertices are not [V, 3])")
    if not np.isfinite(v).all():
        bad = int((~np.isfinite(v).all(1)).sum())
        raise InputError(f"{name}: {bad} vertices have NaN or infinite coordinates")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"{name}: face indices outside [0, {len(v)})")
    if float((v.max(0) - v.min(0)).max()) <= 0.0:
        raise InputError(f"{name}: mesh is degenerate (all vertices coincide)")
    merged = trimesh.Trimesh(v, f.astype(np.int64), process=True, validate=False)
    mf = np.asarray(merged.faces, dtype=np.int64)
    if len(mf) == 0:
        raise InputError(f"{name}: mesh has only degenerate triangles")
    return Mesh(np.asarray(merged.vertices, dtype=np.float64), mf, name, open_edges(mf))


def load_mesh(path: Path) -> Mesh:
    """Read a PLY/OBJ/STL/OFF triangle mesh with trimesh; errors name the file."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise InputError(f"{path}: cannot read mesh ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    faces = getattr(loaded, "faces", None)
    vertices = getattr(loaded, "vertices", None)
    if faces is None or vertices is None:
        raise InputError(f"{path}: no triangle mesh found")
    return check_mesh(vertices, faces, str(path))


def load_occupancy(path: Path) -> np.ndarray:
    """Read an ``[X, Y, Z]`` occupancy grid from .npy (bool, integer 0/1 or float in [0, 1]; 1 = inside) as
    float64; errors name the file."""
    from geocert.io import read_npy

    path = Path(path)
    arr = read_npy(path)  # missing, foreign, pickled or truncated files: one line naming the file
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path}: expected one array in a .npy file")
    if arr.ndim != 3:
        raise InputError(f"{path}: occupancy grid must be 3D [X, Y, Z], got shape {tuple(arr.shape)}")
    if min(arr.shape) < 2:
        raise InputError(f"{path}: occupancy grid needs at least 2 voxels per axis, got shape {tuple(arr.shape)}")
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{path}: occupancy grid must be bool, integer or float, got dtype {arr.dtype}")
    occ = arr.astype(np.float64)
    if not np.isfinite(occ).all():
        raise InputError(f"{path}: occupancy grid has NaN or infinite values")
    if occ.min() < 0.0 or occ.max() > 1.0:
        raise InputError(f"{path}: occupancy values must lie in [0, 1], got [{occ.min():g}, {occ.max():g}]")
    if not (occ > 0.5).any():
        raise InputError(f"{path}: occupancy grid has no occupied voxel (> 0.5): nothing to take the distance to")
    if (occ >= 0.5).all():
        raise InputError(f"{path}: occupancy grid has no empty voxel (< 0.5): nothing to take the distance to")
    return occ


def bundled_mesh(resolution: int) -> Mesh:
    """The ground-truth mesh of the bundled procedural scene (a cup with a handle), marching cubes at
    ``resolution``³, checked like a loaded mesh."""
    from geocert_rs_sdf.scenes import ground_truth_mesh

    v, f = ground_truth_mesh(resolution)
    return check_mesh(v, f, f"bundled scene mesh (scenes.ground_truth_mesh({resolution}))")
