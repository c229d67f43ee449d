"""Scribble segmentation tasks made from known masks.

A task is a folder with ``image.png`` (RGB), ``scribbles.png`` (RGB: pure red = foreground stroke, pure blue
= background stroke, anything else unlabelled), ``mask.png`` (ground truth, 255 = foreground) and
``task.json``. Tasks:

- ``horse``: scikit-image's real ``horse`` silhouette (shipped with scikit-image, no download) filled with a
  crop of the real ``chelsea`` photograph (cat fur) over scikit-image's real ``grass`` texture. Non-convex
  (legs, tail): the default task of ``geocert segment2d``.
- ``crescent``, ``cross``, ``ring-arc``: procedural non-convex, connected shapes over procedural textures.
- ``ellipse``: a convex shape (where the plain FICNN is enough).

Everything is deterministic given the task name and seed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from geocert.io import atomic_directory

__all__ = ["TASKS", "DEFAULT_TASK", "make_task", "default_task_dir", "cache_root", "draw_scribbles"]

TASKS = ("horse", "crescent", "cross", "ring-arc", "ellipse")
DEFAULT_TASK = "horse"
_VERSION = 1  # bump when the generator changes (invalidates the cache)


def cache_root() -> Path:
    """``$GEOCERT_CACHE/connected2d`` or ``~/.cache/geocert/connected2d``."""
    base = os.environ.get("GEOCERT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "geocert"
    return root / "connected2d"


def _resize_bool(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(mask.astype(np.float64), shape, order=1, anti_aliasing=True) >= 0.5


def _resize_rgb(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(img.astype(np.float64) / 255.0, shape, order=1, anti_aliasing=True)


def _horse(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    import skimage.data as data

    fg_mask = ~data.horse()  # True where the horse is
    H, W = 112, 136
    mask = _resize_bool(fg_mask, (H, W))
    fur = _resize_rgb(data.chelsea()[0:95, 110:330], (H, W))  # forehead fur, no eyes
    grass = data.grass().astype(np.float64) / 255.0
    grass = _resize_rgb((grass[:300, :360] * 255).astype(np.uint8), (H, W))
    bg = np.stack([0.35 * grass, 0.55 + 0.35 * grass, 0.25 * grass], axis=-1).clip(0, 1)
    img = np.where(mask[..., None], fur, bg)
    return img, mask


def _texture(rng: np.random.Generator, H: int, W: int, base: tuple[float, float, float]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal((H, W)), 2.0)
    noise = noise / (np.abs(noise).max() + 1e-12)
    return (np.asarray(base)[None, None, :] + 0.18 * noise[..., None]).clip(0, 1)


def _procedural(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    H, W = 96, 120
    yy, xx = np.mgrid[0:H, 0:W]
    u, v = (xx + 0.5) / W, (yy + 0.5) / H
    if name == "crescent":
        mask = ((u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.32**2) & ((u - 0.64) ** 2 + (v - 0.42) ** 2 > 0.26**2)
    elif name == "cross":
        mask = ((np.abs(u - 0.5) < 0.1) & (np.abs(v - 0.5) < 0.38)) | (
            (np.abs(v - 0.45) < 0.1) & (np.abs(u - 0.5) < 0.36))
    elif name == "ring-arc":
        r = np.hypot(u - 0.5, v - 0.55)
        ang = np.arctan2(v - 0.55, u - 0.5)
        mask = (r > 0.22) & (r < 0.36) & (np.abs(ang) < 2.4)
    elif name == "ellipse":
        mask = ((u - 0.48) / 0.3) ** 2 + ((v - 0.52) / 0.36) ** 2 < 1.0
    else:  # pragma: no cover - guarded by make_task
        raise ValueError(name)
    fg = _texture(rng, H, W, (0.85, 0.55, 0.15))
    bg = _texture(rng, H, W, (0.25, 0.35, 0.6))
    img = np.where(mask[..., None], fg, bg)
    return img, mask


def draw_scribbles(mask: np.ndarray, rng: np.random.Generator, *, fg_keep: float = 0.8,
                   bg_keep: float = 0.55) -> np.ndarray:
    """Scribbles from a ground-truth mask ``[H, W]`` bool: ``[H, W]`` int8 with 1 = foreground stroke,
    0 = background stroke, -1 = unlabelled.

    Foreground: the skeleton of the slightly eroded mask (a stroke through the body and every limb), with a
    few random gaps. Background: arcs of the contour at a margin around the object plus strokes along the
    image border, with random gaps. Strokes are about 2 px wide."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    H, W = mask.shape
    out = np.full((H, W), -1, dtype=np.int8)
    eroded = ndimage.binary_erosion(mask, iterations=1)
    skel = skeletonize(eroded if eroded.sum() > 20 else mask)
    core = ndimage.binary_erosion(mask, iterations=3)
    if core.any():  # plus a horizontal and a vertical stroke through the centre of the object's core
        cy, cx = (int(round(c)) for c in ndimage.center_of_mass(core))
        cross = np.zeros_like(mask)
        cross[cy, :] = cross[:, cx] = True
        skel = skel | (cross & core)
    fg = ndimage.binary_dilation(skel, iterations=1) & mask
    fg &= _gaps(rng, H, W, fg_keep)
    dist_out = ndimage.distance_transform_edt(~mask)
    margin = max(4.0, 0.07 * min(H, W))
    ring = (dist_out > margin) & (dist_out <= margin + 2.0)
    border = np.zeros_like(mask)
    border[2:4, :] = border[-4:-2, :] = True
    border[:, 2:4] = border[:, -4:-2] = True
    bg = (ring | (border & (dist_out > margin))) & _gaps(rng, H, W, bg_keep)
    out[bg] = 0
    out[fg] = 1
    return out


def _gaps(rng: np.random.Generator, H: int, W: int, keep: float) -> np.ndarray:
    """A smooth random keep-mask (large blobs) so strokes are interrupted like hand-drawn ones."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal((H, W)), max(H, W) / 18.0)
    return field >= np.quantile(field, 1.0 - keep)


def scribbles_to_rgb(scr: np.ndarray) -> np.ndarray:
    """int8 scribbles → RGB uint8 (red foreground, blue background, black unlabelled)."""
    rgb = np.zeros(scr.shape + (3,), dtype=np.uint8)
    rgb[scr == 1] = (255, 0, 0)
    rgb[scr == 0] = (0, 0, 255)
    return rgb


def make_task(name: str, outdir: str | os.PathLike, seed: int = 0) -> Path:
    """Write task ``name`` (one of :data:`TASKS`) into ``outdir`` (created); returns the folder."""
    import imageio.v3 as iio

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    rng = np.random.default_rng([seed, TASKS.index(name)])
    img, mask = _horse(rng) if name == "horse" else _procedural(name, rng)
    scr = draw_scribbles(mask, rng)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out / "image.png", (img * 255.0 + 0.5).astype(np.uint8))
    iio.imwrite(out / "scribbles.png", scribbles_to_rgb(scr))
    iio.imwrite(out / "mask.png", mask.astype(np.uint8) * 255)
    info = {"task": name, "seed": seed, "version": _VERSION, "height": int(mask.shape[0]),
            "width": int(mask.shape[1]), "foreground_fraction": float(mask.mean()),
            "foreground_scribble_pixels": int((scr == 1).sum()),
            "background_scribble_pixels": int((scr == 0).sum()),
            "convention": "scribbles.png: red (255,0,0) = foreground, blue (0,0,255) = background"}
    (out / "task.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def default_task_dir(name: str = DEFAULT_TASK, seed: int = 0) -> Path:
    """The cached task folder, generated on first use (into a temp dir renamed when complete)."""
    target = cache_root() / f"{name}-s{seed}-v{_VERSION}"
    if (target / "task.json").is_file():
        return target
    try:
        with atomic_directory(target, replace=False) as tmp:
            make_task(name, tmp, seed=seed)
    except OSError:  # another process finished first
        if not (target / "task.json").is_file():
            raise
    return target
