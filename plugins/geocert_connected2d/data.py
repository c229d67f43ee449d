"""Reading an image, its scribbles and an optional ground-truth mask, with one-line errors.

Scribble convention (``scribbles.png``, same size as the image, RGB or RGBA): a pixel is a **foreground**
stroke when it is red (R ≥ 128, G < 100, B < 100, e.g. pure (255, 0, 0)), a **background** stroke when it
is blue (B ≥ 128, R < 100, G < 100, e.g. (0, 0, 255)); every other colour (black, white, transparent with
alpha < 128, ...) is unlabelled. Ground-truth masks: any pixel whose brightest colour channel is > 127 is
foreground.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geocert.errors import InputError
from geocert.io import read_image

__all__ = ["load_image", "load_scribbles", "load_mask", "pixel_positions", "FOREGROUND", "BACKGROUND",
           "UNLABELLED"]

FOREGROUND, BACKGROUND, UNLABELLED = 1, 0, -1


def _to_unit(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr.astype(np.float64), 0.0, 1.0)
    raise InputError(f"{path}: unsupported pixel type {arr.dtype}")


def load_image(path: str | Path) -> np.ndarray:
    """RGB image as float64 ``[H, W, 3]`` in [0, 1] (grey is replicated, alpha dropped)."""
    path = Path(path)
    arr = read_image(path)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{path}: expected a single 2D grey/RGB/RGBA image, got array of shape {arr.shape}")
    if arr.shape[-1] in (1, 2):
        arr = np.repeat(arr[..., :1], 3, axis=-1)
    if min(arr.shape[:2]) < 4:
        raise InputError(f"{path}: image is too small ({arr.shape[0]}x{arr.shape[1]} pixels)")
    return _to_unit(arr[..., :3], path)


def load_scribbles(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Scribble labels ``[H, W]`` int8: 1 foreground, 0 background, -1 unlabelled (see module docstring)."""
    path = Path(path)
    arr = read_image(path)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise InputError(f"{path}: scribbles must be an RGB/RGBA image (red = foreground, blue = background), "
                         f"got array of shape {arr.shape}")
    if tuple(arr.shape[:2]) != tuple(shape):
        raise InputError(f"{path}: scribbles are {arr.shape[0]}x{arr.shape[1]} (HxW) but the image is "
                         f"{shape[0]}x{shape[1]}")
    u = _to_unit(arr, path) * 255.0
    r, g, b = u[..., 0], u[..., 1], u[..., 2]
    opaque = u[..., 3] >= 128 if arr.shape[-1] == 4 else np.ones(shape, dtype=bool)
    fg = opaque & (r >= 128) & (g < 100) & (b < 100)
    bg = opaque & (b >= 128) & (r < 100) & (g < 100)
    if not fg.any():
        raise InputError(f"{path}: no foreground scribbles (draw foreground strokes in red, e.g. (255, 0, 0))")
    if not bg.any():
        raise InputError(f"{path}: no background scribbles (draw background strokes in blue, e.g. (0, 0, 255))")
    out = np.full(shape, UNLABELLED, dtype=np.int8)
    out[bg] = BACKGROUND
    out[fg] = FOREGROUND
    return out


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Ground-truth foreground mask ``[H, W]`` bool (brightest channel > 127 of 255)."""
    path = Path(path)
    arr = read_image(path)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        if arr.size == 0:
            raise InputError(f"{path}: empty mask")
    elif arr.ndim != 2:
        raise InputError(f"{path}: expected a 2D mask image, got array of shape {arr.shape}")
    if tuple(arr.shape[:2]) != tuple(shape):
        raise InputError(f"{path}: mask is {arr.shape[0]}x{arr.shape[1]} (HxW) but the image is "
                         f"{shape[0]}x{shape[1]}")
    u = _to_unit(arr, path)
    if u.ndim == 3:
        u = u.max(axis=-1)
    return u > 127.0 / 255.0


def pixel_positions(H: int, W: int) -> np.ndarray:
    """Normalised pixel-centre positions ``[H * W, 2]`` (x = (col + ½)/W, y = (row + ½)/H), row-major."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([(xx.ravel() + 0.5) / W, (yy.ravel() + 0.5) / H], axis=1)
