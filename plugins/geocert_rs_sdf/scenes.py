"""The bundled default scene: a procedural textured object rendered into the NeRF-synthetic (Blender) format.

The object is a union of analytic signed-distance primitives (z up): a cup with a hollow (a concavity), a
torus handle, a base plate, and a thin antenna with a ball on top (a thin part). Its surface colour is a
procedural texture (stripes on the cup, a checkerboard on the plate, a red handle) under fixed Lambertian
lighting, so the appearance is view-independent. The ground-truth mesh is the marching-cubes zero level of the
analytic SDF; the views are ray cast against that mesh with open3d's ``RaycastingScene``.

Output layout (what Instant-NGP / nerfstudio read)::

    DIR/transforms_{train,val,test}.json   camera_angle_x, frames[{file_path, transform_matrix}]
    DIR/{train,val,test}/r_<i>.png         RGBA, alpha = 0 on the background
    DIR/mesh_gt.ply                        ground-truth mesh (watertight)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

__all__ = [
    "SceneSpec",
    "object_sdf",
    "object_color",
    "ground_truth_mesh",
    "look_at",
    "camera_rays",
    "make_scene",
    "default_scene_dir",
    "ensure_default_scene",
]

CAMERA_RADIUS = 4.0
CAMERA_ANGLE_X = 0.6911112070083618  # the Blender scenes' field of view
LIGHT_DIR = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])
SCENE_VERSION = 2  # 2: mesh_gt.ply wound outward


class SceneSpec:
    """Resolution and view counts of a generated scene (the cache key of the default scene)."""

    def __init__(self, width: int = 100, n_train: int = 100, n_val: int = 10, n_test: int = 20,
                 seed: int = 0, mesh_res: int = 160):
        for name, v in (("width", width), ("n_train", n_train), ("n_test", n_test), ("mesh_res", mesh_res)):
            if int(v) != v or v < 1:
                from geocert.errors import ParameterError

                raise ParameterError(f"{name} must be a positive integer, got {v!r}")
        if not 16 <= width <= 800:
            from geocert.errors import ParameterError

            raise ParameterError(f"width must be in [16, 800], got {width}")
        self.width, self.n_train, self.n_val, self.n_test = int(width), int(n_train), int(n_val), int(n_test)
        self.seed, self.mesh_res = int(seed), int(mesh_res)

    def key(self) -> str:
        return (f"v{SCENE_VERSION}_w{self.width}_tr{self.n_train}_va{self.n_val}_te{self.n_test}"
                f"_s{self.seed}_m{self.mesh_res}")


# --------------------------------------------------------------------------------------------- geometry
def _sd_cylinder_z(p: np.ndarray, cx: float, cy: float, r: float, z0: float, z1: float) -> np.ndarray:
    """Signed distance (negative inside) of a capped cylinder with axis z through (cx, cy), z ∈ [z0, z1]."""
    dr = np.hypot(p[..., 0] - cx, p[..., 1] - cy) - r
    dz = np.maximum(z0 - p[..., 2], p[..., 2] - z1)
    outside = np.hypot(np.maximum(dr, 0.0), np.maximum(dz, 0.0))
    return outside + np.minimum(np.maximum(dr, dz), 0.0)


def _sd_torus_y(p: np.ndarray, c: tuple[float, float, float], big_r: float, small_r: float) -> np.ndarray:
    """Torus whose ring lies in the xz-plane (axis along y), centred at c."""
    q = p - np.asarray(c)
    ring = np.hypot(q[..., 0], q[..., 2]) - big_r
    return np.hypot(ring, q[..., 1]) - small_r


def _sd_sphere(p: np.ndarray, c: tuple[float, float, float], r: float) -> np.ndarray:
    return np.linalg.norm(p - np.asarray(c), axis=-1) - r


def _parts(p: np.ndarray) -> np.ndarray:
    """Signed distances ``[..., 5]`` (negative inside) of the parts: plate, cup outside, cup inside, handle,
    antenna (stick + ball)."""
    cup_outer = _sd_cylinder_z(p, 0.0, 0.0, 0.5, -0.5, 0.45)
    cup_hole = _sd_cylinder_z(p, 0.0, 0.0, 0.38, -0.33, 1.5)
    cup = np.maximum(cup_outer, -cup_hole)
    plate = _sd_cylinder_z(p, 0.0, 0.0, 0.85, -0.62, -0.5)
    handle = _sd_torus_y(p, (0.55, 0.0, 0.0), 0.24, 0.065)
    stick = _sd_cylinder_z(p, -0.55, -0.45, 0.04, -0.55, 0.5)
    ball = _sd_sphere(p, (-0.55, -0.45, 0.58), 0.12)
    antenna = np.minimum(stick, ball)
    # Distinguish the inner wall of the cup (texture) by which side of the wall is nearer.
    inner_side = np.where(np.abs(cup_hole) < np.abs(cup_outer), cup, np.inf)
    outer_side = np.where(np.abs(cup_hole) < np.abs(cup_outer), np.inf, cup)
    return np.stack([plate, outer_side, inner_side, handle, antenna], axis=-1)


def object_sdf(points: np.ndarray) -> np.ndarray:
    """Signed distance of the default object, ``[..., 3] -> [...]``, **negative inside** (the mesh
    convention; the RS-SDF of occupancy is positive inside). Exact for each part; the union is the min."""
    return _parts(np.asarray(points, dtype=np.float64)).min(axis=-1)


def object_normal(points: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Outward unit normals ``[..., 3]`` from central differences of :func:`object_sdf`."""
    p = np.asarray(points, dtype=np.float64)
    grads = []
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        grads.append(object_sdf(p + e) - object_sdf(p - e))
    g = np.stack(grads, axis=-1)
    return g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-12)


def object_color(points: np.ndarray) -> np.ndarray:
    """Albedo ``[..., 3]`` in [0, 1] of the surface point(s): the part nearest to the surface decides."""
    p = np.asarray(points, dtype=np.float64)
    part = np.abs(_parts(p)).argmin(axis=-1)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    col = np.zeros(p.shape[:-1] + (3,))
    # plate: checkerboard
    check = (np.floor(x / 0.25) + np.floor(y / 0.25)) % 2
    plate = np.where(check[..., None] > 0, [0.10, 0.55, 0.55], [0.93, 0.88, 0.70])
    # cup outside: 8 vertical stripes and a dark band
    ang = np.arctan2(y, x)
    stripe = (np.floor(ang / (2 * math.pi) * 8) % 2)[..., None]
    cup = np.where(stripe > 0, [0.95, 0.55, 0.10], [0.20, 0.30, 0.80])
    band = ((z > 0.05) & (z < 0.17))[..., None]
    cup = np.where(band, [0.15, 0.15, 0.18], cup)
    inner = np.broadcast_to(np.array([0.95, 0.90, 0.45]), col.shape)
    handle = np.broadcast_to(np.array([0.85, 0.12, 0.12]), col.shape)
    ant = np.where((z > 0.44)[..., None], [0.25, 0.75, 0.25], [0.45, 0.45, 0.45])
    for k, c in enumerate((plate, cup, inner, handle, ant)):
        col = np.where((part == k)[..., None], c, col)
    return col


def ground_truth_mesh(res: int = 160, bound: float = 1.0):
    """Marching-cubes mesh ``(vertices [V, 3], faces [F, 3])`` of :func:`object_sdf` on a ``res³`` grid,
    outward-facing."""
    from geocert_rs_sdf.sdf import zero_level_mesh
    from geocert_rs_sdf.voxelize import Grid

    lin = np.linspace(-bound, bound, res)
    points = np.stack(np.meshgrid(lin, lin, lin, indexing="ij"), axis=-1)
    inside_positive = -object_sdf(points)  # zero_level_mesh takes the RS-SDF sign convention
    verts, faces = zero_level_mesh(inside_positive, Grid((res,) * 3, (-bound,) * 3, float(lin[1] - lin[0])))
    return verts.astype(np.float32), faces.astype(np.int32)


# --------------------------------------------------------------------------------------------- cameras
def look_at(eye: np.ndarray, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world ``[4, 4]`` in the Blender/OpenGL convention (camera looks along −z, y up)."""
    eye = np.asarray(eye, dtype=np.float64)
    fwd = np.asarray(target, dtype=np.float64) - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-8:
        right = np.cross(fwd, (0.0, 1.0, 0.0))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, fwd)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, true_up, -fwd, eye
    return m


def camera_rays(c2w: np.ndarray, width: int, height: int, camera_angle_x: float) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions ``[H, W, 3]`` through pixel centres (Blender convention)."""
    focal = 0.5 * width / math.tan(0.5 * camera_angle_x)
    i, j = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5, indexing="xy")
    d_cam = np.stack([(i - 0.5 * width) / focal, -(j - 0.5 * height) / focal, -np.ones_like(i)], axis=-1)
    d = d_cam @ np.asarray(c2w)[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(np.asarray(c2w)[:3, 3], d.shape)
    return o.copy(), d


def _random_poses(n: int, rng: np.random.Generator, elev_deg=(-15.0, 70.0)) -> list[np.ndarray]:
    poses = []
    for _ in range(n):
        az = rng.uniform(0.0, 2 * math.pi)
        s = rng.uniform(math.sin(math.radians(elev_deg[0])), math.sin(math.radians(elev_deg[1])))
        el = math.asin(s)
        eye = CAMERA_RADIUS * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(eye))
    return poses


def _shade(points: np.ndarray) -> np.ndarray:
    n = object_normal(points)
    lam = np.clip(n @ LIGHT_DIR, 0.0, 1.0)
    return np.clip(object_color(points) * (0.35 + 0.65 * lam[..., None]), 0.0, 1.0)


def render_view(raycaster, c2w: np.ndarray, width: int) -> np.ndarray:
    """RGBA float image ``[H, W, 4]`` of the object (white, alpha 0 where no hit)."""
    import open3d as o3d

    o, d = camera_rays(c2w, width, width, CAMERA_ANGLE_X)
    rays = np.concatenate([o, d], axis=-1).astype(np.float32)
    hit = raycaster.cast_rays(o3d.core.Tensor(rays))
    t = hit["t_hit"].numpy()
    mask = np.isfinite(t)
    img = np.ones((width, width, 4))
    img[..., 3] = mask
    pts = o[mask] + t[mask, None] * d[mask]
    img[mask, :3] = _shade(pts)
    return img


def make_scene(out: str | os.PathLike, spec: SceneSpec | None = None, progress: bool = False) -> Path:
    """Render the default object into ``out`` (NeRF-synthetic layout, see the module docstring).

    Deterministic for a given ``spec``. Written into a temporary sibling folder and renamed when complete."""
    import open3d as o3d

    from geocert.io import atomic_directory, write_image, write_ply
    from geocert.pipeline.progress import Progress

    spec = spec or SceneSpec()
    out = Path(out)
    with atomic_directory(out) as tmp:
        verts, faces = ground_truth_mesh(spec.mesh_res)
        write_ply(tmp / "mesh_gt.ply", verts, faces=faces)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(verts), o3d.core.Tensor(faces.astype(np.uint32)))
        rng = np.random.default_rng(spec.seed)
        splits = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}
        total = sum(splits.values())
        bar = Progress(total, "render scene", "views", disable=not progress)
        for split, count in splits.items():
            frames = []
            for i, c2w in enumerate(_random_poses(count, rng)):
                img = render_view(scene, c2w, spec.width)
                write_image(tmp / split / f"r_{i}.png", img)
                frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0,
                               "transform_matrix": c2w.tolist()})
                bar.update(1)
            meta = {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames,
                    "geocert_bound": 1.0, "geocert_mesh": "mesh_gt.ply"}
            (tmp / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
        bar.close()
    return out


def default_scene_dir(spec: SceneSpec | None = None) -> Path:
    """Where the scene of ``spec`` is cached: ``$GEOCERT_CACHE/rs-sdf/scene_<key>`` (core cache root)."""
    from geocert.pipeline.environment import cache_root

    spec = spec or SceneSpec()
    return cache_root("rs-sdf", f"scene_{spec.key()}")


def ensure_default_scene(spec: SceneSpec | None = None, progress: bool = True) -> Path:
    """The default scene's folder, generated on first use and reused afterwards."""
    path = default_scene_dir(spec)
    if not (path / "transforms_test.json").is_file():
        make_scene(path, spec, progress=progress)
    return path
