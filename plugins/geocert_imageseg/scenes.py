"""Procedural segmentation data sets in the plain ``images/`` + ``masks/`` layout.

Three kinds, all deterministic given the seed:

* ``xray``  — synthetic chest X-rays (grayscale): body, two lungs with rib texture, heart, clavicles and
  spine, with low-frequency texture and pixel noise. Classes: 0 background, 1 lungs, 2 heart, 3 clavicles
  (the JSRT / SCR label set). Label priority where shapes overlap: clavicles > heart > lungs.
* ``skin``  — skin-lesion-like RGB images (ISIC-like): textured skin, an irregular pigmented lesion, a few
  hairs. Classes: 0 skin, 1 lesion.
* ``coins`` — real, offline photographs: crops of ``skimage.data.coins()`` with an Otsu-threshold mask
  (a non-medical check). Classes: 0 background, 1 coin.

Layout written by :func:`make_dataset`::

    ROOT/classes.json                 {"kind": ..., "names": [...], "num_classes": C}
    ROOT/train/images/xray_0000.png   uint8 gray (or RGB), pixel values / 255 are the model's [0, 1] input
    ROOT/train/masks/xray_0000.png    uint8 class indices 0..C-1
    ROOT/test/images/..., ROOT/test/masks/...
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from geocert.io import atomic_directory

__all__ = ["CLASS_NAMES", "make_xray", "make_skin", "make_coins", "make_dataset", "default_dataset", "resolve_data"]

CLASS_NAMES = {
    "xray": ["background", "lungs", "heart", "clavicles"],
    "skin": ["skin", "lesion"],
    "coins": ["background", "coin"],
}


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: white noise blurred with a Gaussian of ``scale`` pixels."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal((size, size)), sigma=scale, mode="wrap")
    return field / (np.abs(field).max() + 1e-8)


def make_xray(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic chest X-ray. Returns (image ``[H, W]`` float in [0, 1], mask ``[H, W]`` uint8)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size  # [0, 1) coordinates, y down
    cx = 0.5 + rng.uniform(-0.03, 0.03)
    tilt = rng.uniform(-0.06, 0.06)
    # rotate the anatomy slightly about the image centre
    u = (xx - 0.5) * np.cos(tilt) - (yy - 0.5) * np.sin(tilt) + 0.5
    v = (xx - 0.5) * np.sin(tilt) + (yy - 0.5) * np.cos(tilt) + 0.5

    body = ((u - cx) / rng.uniform(0.42, 0.47)) ** 2 + ((v - 0.62) / 0.62) ** 4 < 1.0

    lungs = np.zeros_like(body)
    lung_top = rng.uniform(0.14, 0.2)
    lung_bot = rng.uniform(0.74, 0.84)
    for side in (-1.0, 1.0):
        lx = cx + side * rng.uniform(0.17, 0.2)
        half_w = rng.uniform(0.12, 0.15)
        # a tapered superellipse: narrow apex at the top, wide base at the bottom
        t = np.clip((v - lung_top) / (lung_bot - lung_top), 0.0, 1.0)
        width = half_w * (0.35 + 0.65 * np.sqrt(t))
        inside = (np.abs(u - lx) < width) & (v > lung_top) & (v < lung_bot)
        # rounded costophrenic angle: cut the lower lateral corner
        inside &= ((u - lx) * side / half_w + (v - lung_bot) / 0.12) < 0.9
        lungs |= inside

    hx = cx + rng.uniform(0.05, 0.08)
    hy = rng.uniform(0.6, 0.66)
    heart = ((u - hx) / rng.uniform(0.12, 0.15)) ** 2 + ((v - hy) / rng.uniform(0.11, 0.14)) ** 2 < 1.0

    clav = np.zeros_like(body)
    for side in (-1.0, 1.0):
        # a thick curved band from the sternal notch outwards and slightly up
        s = (u - cx) * side
        centre_v = lung_top + 0.02 - 0.12 * s + 0.25 * (s - 0.15) ** 2 + rng.uniform(-0.01, 0.01)
        clav |= (s > 0.04) & (s < rng.uniform(0.3, 0.36)) & (np.abs(v - centre_v) < rng.uniform(0.018, 0.026))

    spine = (np.abs(u - cx) < 0.045) & body

    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (v * rng.uniform(9.0, 11.0) + 2.0 * (u - cx) ** 2))
    img = np.full((size, size), 0.04)
    img[body] = 0.5
    img = np.where(spine, 0.66, img)
    img = np.where(lungs, 0.2 + 0.08 * ribs, img)
    img = np.where(heart & body, 0.64, img)
    img = np.where(clav, 0.86, img)
    img = img + 0.06 * _smooth_noise(rng, size, size / 16) + 0.03 * _smooth_noise(rng, size, size / 64)
    img = img * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
    img = img + rng.normal(0.0, 0.015, img.shape)

    mask = np.zeros((size, size), np.uint8)
    mask[lungs] = 1
    mask[heart & body] = 2
    mask[clav] = 3
    return np.clip(img, 0.0, 1.0), mask


def make_skin(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One skin-lesion-like image. Returns (image ``[H, W, 3]`` float in [0, 1], mask ``[H, W]`` uint8)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    skin = np.array([0.86, 0.66, 0.55]) * rng.uniform(0.85, 1.05)
    img = np.broadcast_to(skin, (size, size, 3)).copy()
    img += 0.05 * _smooth_noise(rng, size, size / 20)[..., None]
    # irregular lesion: a radius with a few random harmonics
    cx, cy = rng.uniform(0.38, 0.62, size=2)
    r0 = rng.uniform(0.16, 0.27)
    ang = np.arctan2(yy - cy, xx - cx)
    rad = np.hypot(xx - cx, yy - cy)
    r = np.full_like(ang, r0)
    for k in range(2, 6):
        r += r0 * rng.uniform(0.0, 0.12) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    lesion = rad < r
    brown = np.array([0.42, 0.25, 0.16]) * rng.uniform(0.7, 1.1)
    pigment = 0.5 + 0.5 * _smooth_noise(rng, size, size / 24)
    shade = brown * (0.75 + 0.45 * pigment[..., None])
    edge = np.clip((r - rad) / (0.03 + 1e-8), 0.0, 1.0)[..., None]  # soft border
    img = np.where(lesion[..., None], edge * shade + (1 - edge) * img, img)
    # a few hairs: thin dark curves (not part of the lesion)
    for _ in range(rng.integers(0, 4)):
        a, b = rng.uniform(0, 1, 2)
        th = rng.uniform(0, np.pi)
        d = np.abs((xx - a) * np.sin(th) - (yy - b) * np.cos(th) + 0.3 * ((xx - a) * np.cos(th)) ** 2)
        img = np.where((d < 0.004)[..., None], img * 0.35, img)
    img += rng.normal(0.0, 0.015, img.shape)
    return np.clip(img, 0.0, 1.0), lesion.astype(np.uint8)


def make_coins(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random crop of ``skimage.data.coins()`` resized to ``size``, with an Otsu mask."""
    from scipy import ndimage
    from skimage import data, filters, transform

    full = data.coins().astype(np.float64) / 255.0
    thr = filters.threshold_otsu(full)
    fmask = ndimage.binary_fill_holes(ndimage.binary_opening(full > thr, iterations=2))
    crop = int(min(full.shape) * rng.uniform(0.45, 0.7))
    y0 = rng.integers(0, full.shape[0] - crop + 1)
    x0 = rng.integers(0, full.shape[1] - crop + 1)
    img = transform.resize(full[y0:y0 + crop, x0:x0 + crop], (size, size), order=1, anti_aliasing=True)
    m = transform.resize(fmask[y0:y0 + crop, x0:x0 + crop].astype(np.float64), (size, size), order=0) > 0.5
    return np.clip(img, 0.0, 1.0), m.astype(np.uint8)


_MAKERS = {"xray": make_xray, "skin": make_skin, "coins": make_coins}


def make_dataset(out: str | os.PathLike, *, kind: str = "xray", num_train: int = 64, num_test: int = 8,
                 size: int = 64, seed: int = 0) -> Path:
    """Write a data set (``classes.json``, ``train/`` and ``test/`` with ``images/`` + ``masks/``) to ``out``.

    The folder is assembled in a temporary sibling and renamed into place when complete."""
    import imageio.v3 as iio

    if kind not in _MAKERS:
        raise ValueError(f"kind must be one of {', '.join(_MAKERS)}, got {kind!r}")
    out = Path(out)
    with atomic_directory(out) as tmp:
        rng = np.random.default_rng(seed)
        for split, count in (("train", num_train), ("test", num_test)):
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "masks").mkdir(parents=True)
            for i in range(count):
                img, mask = _MAKERS[kind](size, rng)
                name = f"{kind}_{split}_{i:04d}.png"
                iio.imwrite(tmp / split / "images" / name, (img * 255.0 + 0.5).astype(np.uint8))
                iio.imwrite(tmp / split / "masks" / name, mask)
        names = CLASS_NAMES[kind]
        (tmp / "classes.json").write_text(json.dumps({"kind": kind, "names": names, "num_classes": len(names),
                                                      "size": size, "seed": seed}, indent=2) + "\n")
    return out


def default_dataset(kind: str = "xray", size: int = 64, num_train: int = 64, num_test: int = 8,
                    seed: int = 0) -> Path:
    """The default data set for ``kind``, generated once into ``$GEOCERT_CACHE/imageseg/`` and reused."""
    from geocert.pipeline import cache_root

    root = cache_root("imageseg", f"{kind}_{size}px_{num_train}+{num_test}_seed{seed}")
    if not (root / "classes.json").is_file():
        make_dataset(root, kind=kind, num_train=num_train, num_test=num_test, size=size, seed=seed)
    return root


def resolve_data(path: str | os.PathLike | None) -> Path:
    """The data-set root: the given folder, or the default synthetic X-ray set (generated once, cached)."""
    from geocert.errors import InputError

    if path is None:
        return default_dataset("xray")
    if not Path(path).is_dir():
        raise InputError(f"{path}: data-set folder not found")
    return Path(path)
