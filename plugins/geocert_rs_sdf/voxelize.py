"""Voxel occupancy of a triangle mesh by ray parity, and the mesh's exact distance at points.

Grid convention: voxel ``(i, j, k)`` has its centre at ``origin + (i, j, k)·h`` (``origin`` is the centre of
voxel 0, ``h`` the voxel edge). Shape letters: X Y Z voxels, N points, V vertices, F faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "grid_for_mesh", "voxelize", "voxelize_vote", "supersampled_occupancy", "sample_offsets",
           "mesh_distance", "open_edges", "margin_voxels"]  # voxelize_reference: the tests' slow twin

# Ray columns are shifted by this many voxels (two irrational fractions of 1e-6) so that no ray passes exactly
# through a mesh edge or vertex lying on the lattice (marching-cubes meshes have vertices on grid lines); an
# exact hit could count one crossing twice or not at all and flip a whole column.
_JITTER = (1.4142135623730951e-6, 0.7320508075688772e-6)


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid: ``shape`` (X, Y, Z), centre of voxel 0 ``origin`` [3], voxel edge ``h``."""

    shape: tuple[int, int, int]
    origin: tuple[float, float, float]
    h: float

    def centres(self, index: np.ndarray) -> np.ndarray:
        """Centres ``[N, 3]`` of voxels with integer indices ``[N, 3]``."""
        return np.asarray(self.origin) + np.asarray(index, dtype=np.float64) * self.h

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "origin": list(self.origin), "voxel_size": self.h,
                "convention": "voxel (i, j, k) has its centre at origin + (i, j, k) * voxel_size"}


def grid_for_mesh(vertices: np.ndarray, resolution: int, margin: int) -> Grid:
    """The grid over the mesh's bounding box with ``margin`` empty voxels on every side, ``resolution`` voxels
    along the longest side (margin included); the other sides get as many voxels as the box needs, and the box
    is centred in the grid. The box's minimum corner lies on a voxel face along the longest axis."""
    lo, hi = vertices.min(0).astype(np.float64), vertices.max(0).astype(np.float64)
    extent = hi - lo
    inner = resolution - 2 * margin
    h = float(extent.max() / inner)
    counts = np.maximum(np.ceil(extent / h - 1e-9).astype(int), 1) + 2 * margin
    counts[int(extent.argmax())] = resolution
    centre = 0.5 * (lo + hi)
    origin = centre - 0.5 * counts * h + 0.5 * h
    return Grid(tuple(int(c) for c in counts), tuple(float(o) for o in origin), h)


def _column_hits(v: np.ndarray, f: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the +z rays through the column centres cross the triangles ``f``: column indices i, j and the
    crossing height z (all ``[H]``)."""
    X, Y, _ = grid.shape
    h = grid.h
    ox, oy = grid.origin[0] + _JITTER[0] * h, grid.origin[1] + _JITTER[1] * h
    tri = v[f]  # [F, 3 corners, 3]
    # columns whose centre can lie in each triangle's xy bounding box
    i0 = np.clip(np.ceil((tri[:, :, 0].min(1) - ox) / h), 0, X).astype(np.int64)
    i1 = np.clip(np.floor((tri[:, :, 0].max(1) - ox) / h), -1, X - 1).astype(np.int64)
    j0 = np.clip(np.ceil((tri[:, :, 1].min(1) - oy) / h), 0, Y).astype(np.int64)
    j1 = np.clip(np.floor((tri[:, :, 1].max(1) - oy) / h), -1, Y - 1).astype(np.int64)
    ni, nj = np.maximum(i1 - i0 + 1, 0), np.maximum(j1 - j0 + 1, 0)
    nc = ni * nj
    t = np.repeat(np.arange(len(f)), nc)
    local = np.arange(int(nc.sum())) - np.repeat(np.cumsum(nc) - nc, nc)
    ci = i0[t] + local // np.maximum(nj[t], 1)
    cj = j0[t] + local % np.maximum(nj[t], 1)
    px, py = ox + ci * h, oy + cj * h
    a, b, c = tri[t, 0], tri[t, 1], tri[t, 2]

    def edge(p, q):  # 2D cross (q − p) × (x − p), per candidate
        return (q[:, 0] - p[:, 0]) * (py - p[:, 1]) - (q[:, 1] - p[:, 1]) * (px - p[:, 0])

    w_a, w_b, w_c = edge(b, c), edge(c, a), edge(a, b)  # barycentric weights × 2·area
    area = w_a + w_b + w_c
    inside = ((w_a > 0) & (w_b > 0) & (w_c > 0)) | ((w_a < 0) & (w_b < 0) & (w_c < 0))
    inside &= area != 0
    w_a, w_b, w_c, area = w_a[inside], w_b[inside], w_c[inside], area[inside]
    z = (w_a * a[inside, 2] + w_b * b[inside, 2] + w_c * c[inside, 2]) / area
    return ci[inside], cj[inside], z


def voxelize(vertices: np.ndarray, faces: np.ndarray, grid: Grid, *, chunk: int = 2_000_000,
             progress: bool | str = False) -> np.ndarray:
    """Inside test at every voxel centre by ray parity: a centre is inside when the ray from it towards −z
    crosses the mesh an odd number of times (exact for a watertight mesh, whatever its winding).

    Each triangle is rasterized onto the columns whose centre its xy projection covers (vectorized over
    triangles, ``chunk`` candidate columns at a time); the crossings are toggled into a difference array along
    z and a cumulative sum mod 2 gives the occupancy. Memory O(X·Y·Z) bytes.

    Args:
        vertices: ``[V, 3]`` float, faces: ``[F, 3]`` int.
        grid: the voxel grid (centres at ``origin + index·h``).

    Returns:
        ``[X, Y, Z]`` bool occupancy.
    """
    X, Y, Z = grid.shape
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    toggles = np.zeros((X * Y * (Z + 1),), dtype=np.uint8)
    # split the faces into runs that each rasterize about `chunk` candidate columns
    tri = v[f]
    ext = (tri.max(1) - tri.min(1))[:, :2] / grid.h + 1.0
    span = ext[:, 0] * ext[:, 1]
    ids = ((np.cumsum(span) - span) // chunk).astype(np.int64)
    cuts = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), len(f)]
    pieces = [(s, e) for s, e in zip(cuts[:-1], cuts[1:], strict=True) if e > s]
    if progress and len(pieces) > 1:
        from geocert.pipeline.progress import progress as track

        pieces = track(pieces, progress if isinstance(progress, str) else "voxelize", unit="chunks")
    oz = grid.origin[2]
    for s, e in pieces:
        ci, cj, z = _column_hits(v, f[s:e], grid)
        # voxel centres strictly above the crossing: k ≥ k0 with k0 = number of centres at or below it
        k0 = np.clip(np.floor((z - oz) / grid.h).astype(np.int64) + 1, 0, Z)
        idx = (ci * Y + cj) * (Z + 1) + k0
        # uint8 overflow keeps the parity (256 is even)
        toggles += np.bincount(idx, minlength=toggles.size).astype(np.uint8)
    parity = np.cumsum(toggles.reshape(X, Y, Z + 1), axis=2, dtype=np.uint8)[..., :Z]
    return (parity & 1).astype(bool)


def voxelize_vote(vertices: np.ndarray, faces: np.ndarray, grid: Grid) -> np.ndarray:
    """Majority vote ``[X, Y, Z]`` bool of :func:`voxelize` with rays along x, along y and along z: for a mesh with
    holes, a ray through a hole flips a whole column, but rarely in two directions at once."""
    v = np.asarray(vertices, dtype=np.float64)
    votes = np.zeros(grid.shape, dtype=np.uint8)
    for perm in ((1, 2, 0), (2, 0, 1), (0, 1, 2)):  # the ray runs along the last axis of the permutation
        g = Grid(tuple(grid.shape[a] for a in perm), tuple(grid.origin[a] for a in perm), grid.h)
        occ = voxelize(v[:, perm], faces, g)
        votes += np.transpose(occ, np.argsort(perm)).astype(np.uint8)
    return votes >= 2


def voxelize_reference(vertices: np.ndarray, faces: np.ndarray, grid: Grid) -> np.ndarray:
    """Slow twin of :func:`voxelize`: for every voxel centre, loop over the triangles and count those that the
    ray towards −z from the (jittered) centre crosses, with a scalar Möller–Trumbore test."""
    X, Y, Z = grid.shape
    v = np.asarray(vertices, dtype=np.float64)
    out = np.zeros(grid.shape, dtype=bool)
    d = np.array([0.0, 0.0, -1.0])
    for i in range(X):
        for j in range(Y):
            for k in range(Z):
                o = np.asarray(grid.centres(np.array([i, j, k])))
                o = o + np.array([_JITTER[0] * grid.h, _JITTER[1] * grid.h, 0.0])
                hits = 0
                for a, b, c in v[np.asarray(faces)]:
                    e1, e2 = b - a, c - a
                    p = np.cross(d, e2)
                    det = float(e1 @ p)
                    if abs(det) < 1e-15:
                        continue
                    s = o - a
                    u = float(s @ p) / det
                    q = np.cross(s, e1)
                    w = float(d @ q) / det
                    t = float(e2 @ q) / det
                    if u > 0 and w > 0 and u + w < 1 and t > 0:
                        hits += 1
                out[i, j, k] = hits % 2 == 1
    return out


def sample_offsets(k: int) -> np.ndarray:
    """K = k³ sub-voxel sample positions ``[K, 3]`` in (−½, ½)³ (voxel units) on a Korobov lattice: along each
    axis they take K distinct, evenly spaced values (a Latin hypercube), so an axis-aligned face anywhere in a
    voxel is resolved to 1/K voxel (a k×k×k sub-grid would resolve it only to 1/k)."""
    n = k**3
    i = np.arange(n)
    gens = [1, 1, 1] if n == 1 else [1, *_korobov_generators(n)]
    return np.stack([((g * i) % n + 0.5) / n - 0.5 for g in gens], axis=1)


def _korobov_generators(n: int) -> tuple[int, int]:
    """Generators (a, b), both coprime to n, for which the lattice points (i, a·i, b·i) mod n lie farthest
    apart (largest smallest distance on the torus; ties to the smallest a, b)."""
    best, best_d = (1, 1), -1.0
    i = np.arange(n)
    units = [a for a in range(2, n) if math.gcd(a, n) == 1]
    for a in units:
        for b in units:
            p = np.stack([i, a * i % n, b * i % n], axis=1) / n
            diff = np.abs(p[:, None] - p[None])
            diff = np.minimum(diff, 1.0 - diff)
            d2 = (diff**2).sum(-1)
            np.fill_diagonal(d2, np.inf)
            if d2.min() > best_d + 1e-12:
                best, best_d = (a, b), float(d2.min())
    return best


def supersampled_occupancy(vertices: np.ndarray, faces: np.ndarray, grid: Grid, k: int,
                           progress: bool | str = False, vote: bool = False) -> np.ndarray:
    """Fraction ``[X, Y, Z]`` (float64 in [0, 1]) of K = k³ sample points per voxel that are inside the mesh
    (partial volume); the points are :func:`sample_offsets`, each one a shifted copy of the grid voxelized by
    :func:`voxelize` (or :func:`voxelize_vote` when ``vote``). k = 1 is the binary centre test as 0/1."""
    offsets = sample_offsets(k)
    occ = np.zeros(grid.shape, dtype=np.float64)
    it = offsets
    if progress and len(offsets) > 1:
        from geocert.pipeline.progress import progress as track

        it = track(offsets, progress if isinstance(progress, str) else "supersample", unit="samples")
    for off in it:
        shifted = Grid(grid.shape, tuple(float(o + u * grid.h) for o, u in zip(grid.origin, off, strict=True)),
                       grid.h)
        occ += (voxelize_vote if vote else voxelize)(vertices, faces, shifted)
    return occ / len(offsets)


def open_edges(faces: np.ndarray) -> int:
    """Number of undirected edges not shared by exactly two faces (0 for a watertight mesh; vertices must
    already be merged)."""
    f = np.asarray(faces, dtype=np.int64)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts != 2).sum())


def mesh_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, *, chunk: int = 500_000,
                  progress: bool | str = False) -> tuple[np.ndarray, str]:
    """Exact unsigned distance ``[N]`` from points ``[N, 3]`` to the triangle mesh, and the backend used:
    open3d's ``RaycastingScene.compute_distance`` (BVH, float32 geometry), or trimesh's closest point when
    open3d cannot be imported."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 0:
        return np.zeros(0), "none"
    chunks = range(0, len(pts), chunk)
    if progress and len(pts) > chunk:
        from geocert.pipeline.progress import progress as track

        chunks = track(chunks, progress if isinstance(progress, str) else "distance", unit="chunks")
    try:
        import open3d as o3d
    except (ImportError, OSError):
        import trimesh

        mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=False)
        out = [trimesh.proximity.closest_point(mesh, pts[s:s + chunk])[1] for s in chunks]
        return np.concatenate(out), "trimesh.proximity.closest_point"
    # distances are translation-invariant: centre the geometry so that float32 keeps its precision
    shift = np.asarray(vertices, dtype=np.float64).mean(0)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor((np.asarray(vertices, dtype=np.float64) - shift).astype(np.float32)),
                        o3d.core.Tensor(np.asarray(faces, dtype=np.uint32)))
    out = [scene.compute_distance(o3d.core.Tensor((pts[s:s + chunk] - shift).astype(np.float32))).numpy()
           for s in chunks]
    return np.concatenate(out).astype(np.float64), "open3d.RaycastingScene.compute_distance"


def margin_voxels(sigma: float) -> int:
    """Empty voxels kept around the mesh: ceil(4σ) + 1, so that the blur's taps (|j| ≤ ceil(4σ)) reaching past
    the grid (replicate padding) only ever see outside."""
    return int(math.ceil(4.0 * sigma)) + 1
