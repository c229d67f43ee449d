"""Loader of NeRF-synthetic (Blender) scenes: ``transforms_{split}.json`` + RGBA PNGs, white background.

Every problem is reported as :class:`geocert.errors.InputError` whose message starts with the offending file.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from geocert.errors import InputError

__all__ = ["Split", "load_split", "pixel_rays", "DEFAULT_BOUND", "NEAR", "FAR"]

DEFAULT_BOUND = 1.5  # the Blender scenes fit in [-1.5, 1.5]^3
NEAR, FAR = 2.0, 6.0


@dataclasses.dataclass
class Split:
    """One split of a scene.

    images: ``[V, H, W, 3]`` float32 RGB composited on white; alpha: ``[V, H, W]`` float32 coverage (None
    unless every image has an alpha channel); c2w: ``[V, 4, 4]`` camera-to-world; focal in pixels; bound:
    half-size of the scene box; mesh: path of the ground-truth mesh or None."""

    images: torch.Tensor
    alpha: torch.Tensor | None
    c2w: torch.Tensor
    focal: float
    height: int
    width: int
    bound: float
    mesh: Path | None
    files: list[Path]


def _frame_image_path(root: Path, file_path: str) -> Path:
    p = (root / file_path).resolve() if not Path(file_path).is_absolute() else Path(file_path)
    if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return p
    for ext in (".png", ".PNG", ".jpg", ".jpeg"):
        if p.with_name(p.name + ext).is_file():
            return p.with_name(p.name + ext)
    return p.with_name(p.name + ".png")


def load_split(root: str | Path, split: str, *, max_views: int | None = None, white_bg: bool = True) -> Split:
    """Read ``root/transforms_{split}.json`` and its images (all of one size)."""
    from geocert.io import read_image, read_json

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: is a file; expected a scene folder (transforms_{{train,val,test}}.json and images)")
    if not root.is_dir():
        raise InputError(f"{root}: scene folder not found")
    tf = root / f"transforms_{split}.json"
    if not tf.is_file():
        raise InputError(f"{tf}: file not found (a NeRF-synthetic scene needs transforms_{{train,val,test}}.json)")
    meta = read_json(tf)
    if not isinstance(meta, dict):
        raise InputError(f"{tf}: expected a JSON object with 'camera_angle_x' and 'frames'")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{tf}: 'frames' must be a non-empty list")
    if max_views is not None:
        frames = frames[:max_views]
    images, alphas, poses, files = [], [], [], []
    size = None
    for k, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise InputError(f"{tf}: frame {k} needs 'file_path' and 'transform_matrix'")
        try:
            m = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{tf}: frame {k}: transform_matrix is not numeric") from None
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise InputError(f"{tf}: frame {k}: transform_matrix must be a finite 4x4 matrix, got shape {m.shape}")
        path = _frame_image_path(root, str(fr["file_path"]))
        img = read_image(path)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise InputError(f"{path}: expected an RGB or RGBA image, got shape {img.shape}")
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise InputError(f"{path}: image size {img.shape[1]}x{img.shape[0]} differs from the first image "
                             f"{size[1]}x{size[0]} (all images of a scene must have one size)")
        img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
        if img.shape[2] == 4:
            a = img[..., 3:]
            bg = 1.0 if white_bg else 0.0
            img = img[..., :3] * a + bg * (1.0 - a)
            alphas.append(a[..., 0])
        images.append(img)
        poses.append(m)
        files.append(path)
    if "camera_angle_x" in meta:
        try:
            angle = float(meta["camera_angle_x"])
        except (TypeError, ValueError):
            raise InputError(f"{tf}: camera_angle_x must be a number") from None
        if not 0.0 < angle < math.pi:
            raise InputError(f"{tf}: camera_angle_x must be in (0, pi), got {angle}")
        focal = 0.5 * size[1] / math.tan(0.5 * angle)
    elif "fl_x" in meta:
        focal = float(meta["fl_x"])
    else:
        raise InputError(f"{tf}: missing 'camera_angle_x' (horizontal field of view in radians)")
    bound = float(meta.get("geocert_bound", DEFAULT_BOUND))
    mesh = meta.get("geocert_mesh")
    mesh_path = (root / mesh) if mesh and (root / mesh).is_file() else None
    alpha = torch.from_numpy(np.stack(alphas)) if len(alphas) == len(images) else None
    return Split(images=torch.from_numpy(np.stack(images)), alpha=alpha, c2w=torch.from_numpy(np.stack(poses)).float(),
                 focal=focal, height=int(size[0]), width=int(size[1]), bound=bound, mesh=mesh_path, files=files)


def pixel_rays(c2w: torch.Tensor, height: int, width: int, focal: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions ``[V, H, W, 3]`` through the pixel centres of each camera ``[V, 4, 4]``
    (Blender/OpenGL convention: the camera looks along −z, y up), on the device of ``c2w``."""
    c2w = c2w.reshape(-1, 4, 4).float()
    j, i = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=c2w.device) + 0.5,
                          torch.arange(width, dtype=torch.float32, device=c2w.device) + 0.5, indexing="ij")
    d = torch.stack([(i - 0.5 * width) / focal, -(j - 0.5 * height) / focal, -torch.ones_like(i)], dim=-1)
    dirs = torch.einsum("hwk,vjk->vhwj", d, c2w[:, :3, :3])
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs).contiguous()
    return origins, dirs
