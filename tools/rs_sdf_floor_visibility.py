"""What the training views of the bundled cup say about its hollow: the facts behind the docs' reading of the
cup's remaining surface error (docs/rs_sdf.md, "RS-SDF vs plain density, with space carving").

    python tools/rs_sdf_floor_visibility.py [SCENE]   # default: the bundled scene in the cache

1. Visibility: samples 500 points uniformly on the floor disc of the cup's hollow (z = −0.33, r < 0.36), casts
   a ray from each training camera to each point against the ground-truth mesh (open3d) and prints how many
   cameras see each point unoccluded (mean, median, min, and the shares seen by ≥ 3 and by none).
2. The ambiguous region: casts every training pixel's ray (the pixel centre, as the scene's renderer does)
   against the ground-truth mesh and marks the voxels (96³ over the box) of the hollow that some ray crosses
   before it ends on anything but the floor. The unmarked part of the hollow is crossed only by rays that end
   on the floor. The floor has one albedo and one normal, so under the scene's Lambertian light it has one
   colour in every view; matter of that colour filling the unmarked region therefore leaves every training
   pixel unchanged: the training images cannot tell the true floor from any surface inside that region.
   Prints the region's height above the floor by distance from the cup's axis.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    import open3d as o3d
    from geocert_rs_sdf.mesh_io import load_mesh
    from geocert_rs_sdf.scenes import ensure_default_scene

    root = sys.argv[1] if len(sys.argv) > 1 else str(ensure_default_scene())
    gt = load_mesh(f"{root}/mesh_gt.ply")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(gt.vertices.astype(np.float32)), o3d.core.Tensor(gt.faces.astype(np.uint32)))
    frames = json.load(open(f"{root}/transforms_train.json"))["frames"]
    cams = np.array([np.array(f["transform_matrix"])[:3, 3] for f in frames])
    rng = np.random.default_rng(0)
    r, a = 0.36 * np.sqrt(rng.random(500)), rng.random(500) * 2 * np.pi
    pts = np.stack([r * np.cos(a), r * np.sin(a), np.full(500, -0.33 + 1e-3)], -1)
    counts = np.zeros(len(pts), int)
    for c in cams:
        d = pts - c
        dist = np.linalg.norm(d, axis=1)
        rays = np.concatenate([np.broadcast_to(c, pts.shape), d / dist[:, None]], 1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        counts += hit > dist - 2e-3
    print(f"{len(cams)} training cameras; each floor point is seen by: mean {counts.mean():.1f}, median "
          f"{int(np.median(counts))}, min {counts.min()}, max {counts.max()}; share seen by >= 3: "
          f"{(counts >= 3).mean():.2f}, by none: {(counts == 0).mean():.2f}")
    ambiguous_region(scene, root)


FLOOR_Z, HOLLOW_R, RIM_Z = -0.33, 0.38, 0.45


def ambiguous_region(scene, root: str, res: int = 96) -> None:
    """Part 2 of the module docstring."""
    import open3d as o3d
    from geocert_rs_sdf.scenes import camera_rays

    meta = json.load(open(f"{root}/transforms_train.json"))
    width = int(meta.get("w", 0)) or _image_width(root, meta)
    voxel = 2.0 / res
    crossed = np.zeros((res,) * 3, bool)
    ts = np.linspace(0.0, 8.0, 1600)
    for frame in meta["frames"]:
        o, d = camera_rays(np.array(frame["transform_matrix"]), width, width, meta["camera_angle_x"])
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        t = scene.cast_rays(o3d.core.Tensor(np.concatenate([o, d], 1).astype(np.float32)))["t_hit"].numpy()
        hit = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
        on_floor = np.isfinite(t) & (np.abs(hit[:, 2] - FLOOR_Z) < 0.01) & (np.hypot(hit[:, 0], hit[:, 1]) < HOLLOW_R)
        for chunk in np.array_split(np.nonzero(~on_floor)[0], max(1, int((~on_floor).sum()) // 2000)):
            p = o[chunk, None] + ts[None, :, None] * d[chunk, None]
            m = (ts[None] < np.minimum(t[chunk], 1e9)[:, None] - 0.005) & _in_hollow(p)
            v = np.clip(((p[m] + 1.0) / voxel).astype(int), 0, res - 1)
            crossed[v[:, 0], v[:, 1], v[:, 2]] = True
    c = -1.0 + (np.arange(res) + 0.5) * voxel
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    hollow = _in_hollow(np.stack([x, y, z], -1), margin=voxel)
    ambiguous = hollow & ~crossed
    print(f"hollow: {hollow.sum()} voxels ({res}³ grid); crossed by a ray that ends off the floor: "
          f"{(hollow & crossed).sum()}; crossed only by rays that end on the floor (or by none): {ambiguous.sum()}")
    top = np.where(ambiguous, z, -np.inf).max(axis=2)
    r = np.hypot(x[..., 0], y[..., 0])
    for r0, r1 in ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, HOLLOW_R)):
        v = top[(r >= r0) & (r < r1) & np.isfinite(top)]
        if len(v):
            print(f"  r in [{r0:.2f}, {r1:.2f}): the region reaches {np.median(v) - FLOOR_Z:.3f} above the floor "
                  f"(median over columns; max {v.max() - FLOOR_Z:.3f})")


def _in_hollow(p: np.ndarray, margin: float = 0.0) -> np.ndarray:
    return ((np.hypot(p[..., 0], p[..., 1]) < HOLLOW_R - margin) & (p[..., 2] > FLOOR_Z + margin)
            & (p[..., 2] < RIM_Z - margin))


def _image_width(root: str, meta: dict) -> int:
    from PIL import Image

    return Image.open(f"{root}/{meta['frames'][0]['file_path']}.png").width


if __name__ == "__main__":
    main()
