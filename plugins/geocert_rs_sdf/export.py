"""Geometry and pictures read off a trained field: the zero-level mesh, the SDF slice, the depth image."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["extract_mesh", "field_sdf_slice", "depth_image"]


@torch.no_grad()
def extract_mesh(field, res: int, level: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching cubes of the learned SDF's ``level`` set (default: its zero level) on a ``res³`` grid over the
    box (None when the SDF does not cross it); outward-facing, like ``geocert sdf``'s mesh. Vertices float32,
    faces int32."""
    from geocert_rs_sdf.field import sample_grid
    from geocert_rs_sdf.sdf import zero_level_mesh
    from geocert_rs_sdf.voxelize import Grid

    b = field.bound
    sdf = field.sdf_grid()
    lin = torch.linspace(-b, b, res, device=sdf.device)
    pts = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
    vals = torch.cat([sample_grid(sdf, pts[i:i + 262144], b) for i in range(0, len(pts), 262144)])
    vol = vals.reshape(res, res, res).cpu().numpy() - level
    mesh = zero_level_mesh(vol, Grid((res,) * 3, (-b,) * 3, float(lin[1] - lin[0])))
    if mesh is None:
        return None
    verts, faces = mesh
    return verts.astype(np.float32), faces.astype(np.int32)


@torch.no_grad()
def field_sdf_slice(field) -> tuple[np.ndarray, tuple[float, float, float, float], float, np.ndarray]:
    """The field's SDF (scene units, positive inside) on its voxel centres in the middle y plane, ``[X, Z]``,
    the extent (x0, x1, z0, z1) of the box, the plane's y, and the undecided voxels of that plane ``[X, Z]``
    (rs-sdf: base occupancy p̂ in ``carve.UNDECIDED_BAND``; plain: none)."""
    from geocert_rs_sdf.carve import undecided_mask

    sdf = field.sdf_grid()
    b = float(field.bound)
    j = sdf.shape[1] // 2
    und = (undecided_mask(field)[:, j, :].cpu().numpy() if field.density_mode == "rs-sdf"
           else np.zeros(sdf[:, j, :].shape, dtype=bool))
    return sdf[:, j, :].cpu().numpy().astype(np.float64), (-b, b, -b, b), -b + (j + 0.5) * field.voxel, und


def depth_image(depth: np.ndarray) -> np.ndarray:
    """A grey image of a depth map ``[H, W]``: near is bright, the farthest depth (background) black; the
    range is that of the pixels nearer than the background."""
    d = np.asarray(depth)
    finite = d[d < d.max()] if (d < d.max()).any() else d
    lo, hi = float(finite.min()), float(finite.max())
    return 1.0 - np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)
