"""Image and geometry quality of a trained field: PSNR/SSIM of rendered test views and the Chamfer distance
between meshes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from geocert.errors import InputError
from geocert_rs_sdf.config import FieldSettings
from geocert_rs_sdf.data import Split

__all__ = ["psnr", "evaluate_views", "chamfer", "sample_surface", "mesh_quality", "mesh_bodies"]


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = torch.mean((pred.clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def evaluate_views(field, fs: FieldSettings, split: Split, *, progress: bool = True) -> dict[str, Any]:
    """Render every view of ``split`` and score it against the images: PSNR and SSIM (skimage, data range 1)
    per view, the PSNR of the mean squared error over all views, the mean SSIM, and the renders (CPU)."""
    from skimage.metrics import structural_similarity

    from geocert_rs_sdf.render import render_views

    outs = render_views(field, fs.samples, fs.color_samples, split.c2w, split.height, split.width, split.focal,
                        progress=progress, desc="test views")
    per_view = []
    for k, (o, gt) in enumerate(zip(outs, split.images, strict=True)):
        pred = o["rgb"]
        p = psnr(pred, gt)
        s = float(structural_similarity(pred.numpy(), gt.numpy(), channel_axis=2, data_range=1.0))
        per_view.append({"view": split.files[k].name, "psnr": round(p, 3), "ssim": round(s, 4)})
    mse = float(np.mean([10 ** (-v["psnr"] / 10) for v in per_view]))
    return {"psnr": -10 * math.log10(mse), "ssim": float(np.mean([v["ssim"] for v in per_view])),
            "per_view": per_view, "renders": outs}


def sample_surface(verts: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly distributed (by area) on a triangle mesh."""
    tri = verts[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not area.sum() > 0:
        raise InputError("mesh has zero area")
    f = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = 1 - s, s * (1 - r2), s * r2
    return a[:, None] * tri[f, 0] + b[:, None] * tri[f, 1] + c[:, None] * tri[f, 2]


def chamfer(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Symmetric Chamfer distances between point sets (scipy cKDTree): L1 = ½(mean‖a→B‖ + mean‖b→A‖),
    L2 = ½(mean‖a→B‖² + mean‖b→A‖²)."""
    from scipy.spatial import cKDTree

    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    return {"l1": float(0.5 * (d_ab.mean() + d_ba.mean())), "l2": float(0.5 * ((d_ab**2).mean() + (d_ba**2).mean())),
            "accuracy": float(d_ab.mean()), "completeness": float(d_ba.mean())}


def mesh_bodies(faces: np.ndarray, verts: np.ndarray | None = None) -> list[float]:
    """The connected pieces of a triangle mesh (faces sharing a vertex), largest first: each one's share of the
    total area (of the face count when ``verts`` is None)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return []
    n = int(f.max()) + 1
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    if verts is None:
        weight = np.ones(len(f))
    else:
        tri = np.asarray(verts, dtype=np.float64)[f]
        weight = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    per = np.bincount(label[f[:, 0]], weights=weight)
    per = per[per > 0]
    return sorted((per / per.sum()).tolist(), reverse=True)


def mesh_quality(verts: np.ndarray, faces: np.ndarray, gt_vertices: np.ndarray, gt_faces: np.ndarray,
                 n_points: int, seed: int) -> dict[str, Any]:
    """How well a predicted surface matches the ground truth, from ``n_points`` area-uniform samples on each
    mesh (predicted first, one ``default_rng(seed)``) and their exact distances to the other mesh's triangles:

    accuracy = mean distance predicted → GT, completeness = mean GT → predicted, Chamfer L1 = their mean,
    L2 = the mean of the two mean squared distances; ``beyond_1pct`` / ``beyond_2pct`` = the share of the
    predicted area farther than 1 % / 2 % of the object's size (the diagonal of the GT mesh's bounding box)
    from the GT surface; ``bodies`` = connected pieces of the predicted mesh, ``body_areas`` their area
    shares (largest first, at most 10 listed)."""
    from geocert_rs_sdf.voxelize import mesh_distance

    rng = np.random.default_rng(seed)
    v = np.asarray(verts, dtype=np.float64)
    gv = np.asarray(gt_vertices, dtype=np.float64)
    a = sample_surface(v, faces, n_points, rng)
    b = sample_surface(gv, gt_faces, n_points, rng)
    d_ab, backend = mesh_distance(gv, gt_faces, a)
    d_ba, _ = mesh_distance(v, faces, b)
    size = float(np.linalg.norm(gv.max(0) - gv.min(0)))
    bodies = mesh_bodies(faces, v)
    acc, comp = float(d_ab.mean()), float(d_ba.mean())
    return {"l1": 0.5 * (acc + comp), "l2": float(0.5 * ((d_ab**2).mean() + (d_ba**2).mean())),
            "accuracy": acc, "completeness": comp, "accuracy_over_completeness": acc / max(comp, 1e-12),
            "object_size": size, "beyond_1pct": float((d_ab > 0.01 * size).mean()),
            "beyond_2pct": float((d_ab > 0.02 * size).mean()), "bodies": len(bodies),
            "body_areas": [round(x, 5) for x in bodies[:10]], "distance": backend,
            "points_per_mesh": n_points}
