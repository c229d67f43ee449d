"""Scribble segmentation tasks made from known masks.

A task is a folder with ``image.png`` (RGB), ``scribbles.png`` (RGB: pure red = foreground stroke, pure blue
= background stroke, anything else unlabelled), ``mask.png`` (ground truth, 255 = foreground) and
``task.json``. Tasks:

- ``horse``: scikit-image's real ``horse`` silhouette (shipped with scikit-image, no download) filled with a
  crop of the real ``chelsea`` photograph (cat fur) over scikit-image's real ``grass`` texture. Non-convex
  (legs, tail): the default task of ``geocert segment2d``.
- ``crescent``, ``cross``, ``ring-arc``: procedural non-convex, connected shapes over procedural textures.
- ``ellipse``: a convex shape (where the plain FICNN is enough).
- ``horse-brick``, ``horse-gravel``: the same horse silhouette filled with other real photographs over other
  real scikit-image textures (grass over tinted brick, fur over gravel);
- ``coin-a``, ``coin-b``, ``coin-c``: 88×88 crops of scikit-image's real ``coins`` photograph around one
  coin (parts of the neighbouring coins are in the crop and are background); the mask is derived by a
  local threshold, opening, hole filling, keeping the component at the centre and taking its convex hull
  (the coins are discs; checked by eye against the photograph).

Two scribble styles (:data:`STYLES`): ``dense`` (:func:`draw_scribbles`: the skeleton of the whole object
plus a ring around it, generous) and ``sparse`` (:func:`draw_sparse_scribbles`: what a person draws, one
to three strokes through the object along its main axes and a few background strokes).

Everything is deterministic given the task name, seed and style.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from geocert.io import atomic_directory

__all__ = ["TASKS", "REAL_TASKS", "STYLES", "DEFAULT_TASK", "make_task", "default_task_dir", "cache_root",
           "draw_scribbles", "draw_sparse_scribbles", "task_image_mask"]

REAL_TASKS = ("horse", "horse-brick", "horse-gravel", "coin-a", "coin-b", "coin-c")
"""Tasks made only of real photographs/textures with a known or derived mask (the scribble benchmark)."""
TASKS = ("horse", "crescent", "cross", "ring-arc", "ellipse") + REAL_TASKS[1:]
STYLES = ("dense", "sparse")
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


def _horse(name: str = "horse") -> tuple[np.ndarray, np.ndarray]:
    import skimage.data as data

    fg_mask = ~data.horse()  # True where the horse is
    H, W = 112, 136
    mask = _resize_bool(fg_mask, (H, W))
    fur = _resize_rgb(data.chelsea()[0:95, 110:330], (H, W))  # forehead fur, no eyes
    if name == "horse":  # cat fur over green-tinted grass
        grass = _resize_rgb(data.grass()[:300, :360], (H, W))
        fg, bg = fur, np.stack([0.35 * grass, 0.55 + 0.35 * grass, 0.25 * grass], axis=-1)
    elif name == "horse-brick":  # green-tinted grass over a red-brown brick wall
        grass = _resize_rgb(data.grass()[100:400, 50:410], (H, W))
        brick = _resize_rgb(data.brick()[:300, :360], (H, W))
        fg = np.stack([0.25 + 0.3 * grass, 0.45 + 0.35 * grass, 0.2 + 0.2 * grass], axis=-1)
        bg = np.stack([0.3 + 0.5 * brick, 0.15 + 0.4 * brick, 0.1 + 0.3 * brick], axis=-1)
    elif name == "horse-gravel":  # cat fur over grey gravel
        gravel = _resize_rgb(data.gravel()[:300, :360], (H, W))
        fg, bg = fur, np.repeat(0.15 + 0.8 * gravel[..., None], 3, axis=-1)
    else:  # pragma: no cover - guarded by make_task
        raise ValueError(name)
    img = np.where(mask[..., None], fg, bg.clip(0, 1))
    return img, mask


_COINS = {"coin-a": (119, 270), "coin-b": (196, 102), "coin-c": (193, 213)}  # (row, col) centres in data.coins()


def _coin(name: str) -> tuple[np.ndarray, np.ndarray]:
    """An 88×88 crop of the coins photograph around one coin; mask derived from the photograph (local
    threshold, opening, hole filling, the component under the crop's centre, its convex hull: the coins are
    round discs whose dark engravings the threshold can bite into)."""
    import skimage.data as data
    from scipy import ndimage
    from skimage.filters import threshold_local
    from skimage.morphology import convex_hull_image

    grey = data.coins().astype(np.float64) / 255.0
    fg = grey > threshold_local(grey, 101, offset=-0.02)
    fg = ndimage.binary_fill_holes(ndimage.binary_opening(fg, iterations=2))
    r, c = _COINS[name]
    h = 44
    crop = grey[r - h:r + h, c - h:c + h]
    lab, _ = ndimage.label(fg[r - h:r + h, c - h:c + h])
    if lab[h, h] == 0:  # pragma: no cover - fixed data
        raise RuntimeError(f"{name}: no coin at the crop centre")
    mask = convex_hull_image(lab == lab[h, h])
    return np.repeat(crop[..., None], 3, axis=-1), mask


def task_image_mask(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image ``[H, W, 3]`` float in [0, 1] and ground-truth mask ``[H, W]`` bool of task ``name``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    if name.startswith("horse"):
        return _horse(name)
    if name.startswith("coin"):
        return _coin(name)
    return _procedural(name, np.random.default_rng([seed, TASKS.index(name)]))


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


def _segment(mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    """Pixels of the straight segment p0 → p1 (row, col), kept only where ``mask`` is true."""
    n = int(np.ceil(np.hypot(p1[0] - p0[0], p1[1] - p0[1]))) + 1
    rr = np.rint(np.linspace(p0[0], p1[0], n)).astype(int).clip(0, mask.shape[0] - 1)
    cc = np.rint(np.linspace(p0[1], p1[1], n)).astype(int).clip(0, mask.shape[1] - 1)
    out = np.zeros_like(mask)
    out[rr, cc] = True
    return out & mask


def _stroke_in(region: np.ndarray, start: tuple[int, int], direction: np.ndarray, keep: float) -> np.ndarray:
    """A straight stroke through ``start`` along ``direction`` inside ``region``: the run of the line
    through ``start`` that stays in the region, shortened to a random-ish fraction ``keep`` of it."""
    H, W = region.shape
    L = float(np.hypot(H, W))
    t = np.arange(-L, L + 0.5, 0.5)
    rr = np.rint(start[0] + t * direction[0]).astype(int)
    cc = np.rint(start[1] + t * direction[1]).astype(int)
    ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
    ok[ok] = region[rr[ok], cc[ok]]
    mid = len(t) // 2
    if not ok[mid]:
        return np.zeros_like(region)
    lo, hi = mid, mid
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(t) - 1 and ok[hi + 1]:
        hi += 1
    cut = (1.0 - keep) * (hi - lo) / 2.0
    lo, hi = int(lo + cut), int(hi - cut)
    out = np.zeros_like(region)
    out[rr[lo:hi + 1], cc[lo:hi + 1]] = True
    return out


def draw_sparse_scribbles(mask: np.ndarray, rng: np.random.Generator, *, fg_strokes: tuple[int, int] = (1, 3),
                          bg_strokes: tuple[int, int] = (3, 5)) -> np.ndarray:
    """Scribbles as a person draws them, from a ground-truth mask ``[H, W]`` bool: ``[H, W]`` int8 with
    1 = foreground stroke, 0 = background stroke, -1 = unlabelled.

    Foreground: ``fg_strokes`` (inclusive range, drawn at random) straight strokes, 3 px wide, inside the
    object eroded by 3 px: the first along the object's major axis through the core pixel nearest its
    centroid, the second along the minor axis, further ones through a random core pixel at a random angle;
    each covers 55–90 % of its chord and may have one gap. Background: ``bg_strokes`` strokes, the first
    ones along randomly chosen image borders (3–8 px in, 30–70 % of the side), the last one through the
    point of the background farthest from the object at a random angle; all kept ≥ 5 px from the object.
    On our 88–136 px tasks 3–10 % of the pixels are labelled, far fewer in the object than the dense style."""
    from scipy import ndimage

    H, W = mask.shape
    out = np.full((H, W), -1, dtype=np.int8)
    core = ndimage.binary_erosion(mask, iterations=3)
    if core.sum() < 10:
        core = ndimage.binary_erosion(mask, iterations=1) if ndimage.binary_erosion(mask).any() else mask
    rows, cols = np.nonzero(core)
    cy, cx = rows.mean(), cols.mean()
    cov = np.cov(np.stack([rows - cy, cols - cx]))
    _, vecs = np.linalg.eigh(cov)
    axes = [vecs[:, 1], vecs[:, 0]]  # major, minor (row, col)
    nearest = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    fg = np.zeros_like(mask)
    for k in range(int(rng.integers(fg_strokes[0], fg_strokes[1] + 1))):
        if k < 2:
            start, d = (rows[nearest], cols[nearest]), axes[k]
        else:
            i = int(rng.integers(len(rows)))
            a = rng.uniform(0, np.pi)
            start, d = (rows[i], cols[i]), np.array([np.sin(a), np.cos(a)])
        fg |= _stroke_in(core, start, d, rng.uniform(0.55, 0.9)) & _stroke_gap(rng, H, W)
    fg = ndimage.binary_dilation(fg, iterations=1) & ndimage.binary_erosion(mask, iterations=1)
    far = ndimage.distance_transform_edt(~mask) > 5.0
    bg = np.zeros_like(mask)
    n_bg = int(rng.integers(bg_strokes[0], bg_strokes[1] + 1))
    sides = rng.permutation(4)
    for k in range(n_bg - 1):
        inset = int(rng.integers(3, 9))
        frac = rng.uniform(0.3, 0.7)
        side = int(sides[k % 4])
        n = W if side < 2 else H
        a = rng.uniform(0.0, 1.0 - frac) * n
        b = a + frac * n
        if side == 0:
            seg = _segment(far, (inset, a), (inset, b))
        elif side == 1:
            seg = _segment(far, (H - 1 - inset, a), (H - 1 - inset, b))
        elif side == 2:
            seg = _segment(far, (a, inset), (b, inset))
        else:
            seg = _segment(far, (a, W - 1 - inset), (b, W - 1 - inset))
        bg |= seg
    dist = ndimage.distance_transform_edt(~mask)
    r0, c0 = np.unravel_index(int(np.argmax(dist)), dist.shape)
    a = rng.uniform(0, np.pi)
    bg |= _stroke_in(far, (r0, c0), np.array([np.sin(a), np.cos(a)]), rng.uniform(0.3, 0.6))
    bg = ndimage.binary_dilation(bg, iterations=1) & far
    out[bg] = 0
    out[fg] = 1
    if not (out == 1).any():  # tiny objects: one dot in the middle of the core
        out[rows[nearest], cols[nearest]] = 1
    return out


def _stroke_gap(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """Keep-mask with, half of the time, one gap (a 4–8 px disc around a random pixel) in a stroke."""
    keep = np.ones((H, W), dtype=bool)
    if rng.random() < 0.5:
        r, c, rad = rng.integers(H), rng.integers(W), rng.uniform(4, 8)
        yy, xx = np.ogrid[:H, :W]
        keep &= (yy - r) ** 2 + (xx - c) ** 2 > rad ** 2
    return keep


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


def make_task(name: str, outdir: str | os.PathLike, seed: int = 0, style: str = "dense") -> Path:
    """Write task ``name`` (one of :data:`TASKS`) with scribbles of ``style`` (one of :data:`STYLES`) into
    ``outdir`` (created); returns the folder."""
    import imageio.v3 as iio

    if style not in STYLES:
        raise ValueError(f"unknown scribble style {style!r}; choose from {', '.join(STYLES)}")
    img, mask = task_image_mask(name, seed)
    rng = np.random.default_rng([seed, TASKS.index(name)])
    if name in ("crescent", "cross", "ring-arc", "ellipse"):
        rng.standard_normal((2, 96, 120))  # the textures' draws (keeps the dense scribbles of v1)
    scr = draw_scribbles(mask, rng) if style == "dense" else draw_sparse_scribbles(mask, rng)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out / "image.png", (img * 255.0 + 0.5).astype(np.uint8))
    iio.imwrite(out / "scribbles.png", scribbles_to_rgb(scr))
    iio.imwrite(out / "mask.png", mask.astype(np.uint8) * 255)
    info = {"task": name, "seed": seed, "style": style, "version": _VERSION, "height": int(mask.shape[0]),
            "width": int(mask.shape[1]), "foreground_fraction": float(mask.mean()),
            "foreground_scribble_pixels": int((scr == 1).sum()),
            "background_scribble_pixels": int((scr == 0).sum()),
            "convention": "scribbles.png: red (255,0,0) = foreground, blue (0,0,255) = background"}
    (out / "task.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def default_task_dir(name: str = DEFAULT_TASK, seed: int = 0, style: str = "dense") -> Path:
    """The cached task folder, generated on first use (into a temp dir renamed when complete)."""
    target = cache_root() / (f"{name}-s{seed}-v{_VERSION}" + ("" if style == "dense" else f"-{style}"))
    if (target / "task.json").is_file():
        return target
    try:
        with atomic_directory(target, replace=False) as tmp:
            make_task(name, tmp, seed=seed, style=style)
    except OSError:  # another process finished first
        if not (target / "task.json").is_file():
            raise
    return target
