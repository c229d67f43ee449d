"""How many training cameras see the bundled cup's hollow floor: the visibility behind the docs' reading of the
cup's remaining surface error (docs/rs_sdf.md, "RS-SDF vs plain density, with space carving").

    python tools/rs_sdf_floor_visibility.py [SCENE]   # default: the bundled scene in the cache

Samples 500 points uniformly on the floor disc of the cup's hollow (z = −0.33, r < 0.36), casts a ray from each
training camera to each point against the ground-truth mesh (open3d) and prints how many cameras see each point
unoccluded (mean, median, min, and the shares seen by ≥ 3 and by none).
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


if __name__ == "__main__":
    main()
