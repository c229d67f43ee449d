"""Loading images, masks and data-set folders, with one-line errors that name the offending file.

Conventions (stated once, used everywhere in this plugin):

* An image is a float tensor ``[C, H, W]`` with intensities in **[0, 1]** (uint8 files are divided by 255,
  uint16 by 65535; float ``.npy``/``.tif`` files must already be in [0, 1]). σ is in these units.
* A mask is a long tensor ``[H, W]`` of class indices ``0..num_classes-1`` (a single-channel PNG).
* A data-set folder holds ``images/`` and ``masks/`` with matching file stems (or a ``test/`` / ``train/``
  split holding them, and optionally ``classes.json`` with ``{"names": [...]}`` at the root).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from geocert.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "load_image", "load_mask", "convert_channels", "find_pairs", "split_folder",
           "read_class_names", "load_pairs"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")


def _read_array(path: Path) -> np.ndarray:
    """The file's pixels; an unreadable file is one line naming it and what was expected (library hints such
    as imageio's plugin suggestions or NumPy's allow_pickle advice are not passed on: they mislead here)."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception:
            raise InputError(f"{path}: not a readable NumPy .npy array (corrupt, truncated, or not an array "
                             "of numbers)") from None
    from geocert.io import read_image

    try:
        return np.asarray(read_image(path))
    except InputError:
        raise InputError(f"{path}: cannot read image (corrupt, truncated, or not a "
                         f"{path.suffix.lstrip('.').upper() or 'known'} image)") from None


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file into a float32 tensor ``[C, H, W]`` in [0, 1] (C = 1 gray, 3 RGB; alpha dropped)."""
    path = Path(path)
    arr = _read_array(path)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channel-first .npy
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4) or min(arr.shape[:2]) < 1:
        raise InputError(f"{path}: expected a gray or RGB image, got an array of shape {tuple(arr.shape)}")
    if arr.shape[-1] in (2, 4):  # gray+alpha / RGBA: drop alpha
        arr = arr[..., :-1]
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            y, xx = np.argwhere(bad.any(-1))[0]
            raise InputError(f"{path}: {int(bad.any(-1).sum())} non-finite pixel(s) (first at row {y}, column {xx})")
        if x.min() < 0.0 or x.max() > 1.0:
            raise InputError(f"{path}: float pixel values must lie in [0, 1], found [{x.min():.4g}, {x.max():.4g}]")
    elif arr.dtype == bool:
        x = arr.astype(np.float32)
    else:
        raise InputError(f"{path}: unsupported pixel type {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0)))


def load_mask(path: str | Path, num_classes: int | None = None, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a label mask into a long tensor ``[H, W]``; checks the size against ``shape`` (H, W) and that
    every label lies in ``0..num_classes-1``."""
    path = Path(path)
    arr = _read_array(path)
    if arr.ndim == 3:
        if arr.shape[-1] == 1 or np.all(arr == arr[..., :1]):
            arr = arr[..., 0]
        else:
            raise InputError(f"{path}: a mask must hold one class index per pixel (single channel), "
                             f"got a {arr.shape[-1]}-channel colour image")
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2D mask, got an array of shape {tuple(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(f"{path}: mask values must be integer class indices")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise InputError(f"{path}: mask size {arr.shape[0]}x{arr.shape[1]} does not match the image size "
                         f"{shape[0]}x{shape[1]} (HxW)")
    mask = torch.from_numpy(arr.astype(np.int64))
    if num_classes is not None:
        labels = torch.unique(mask)
        unknown = labels[(labels < 0) | (labels >= num_classes)]
        if unknown.numel():
            shown = ", ".join(str(int(v)) for v in unknown[:8])
            raise InputError(f"{path}: unknown class label(s) {shown} in the mask (the model has {num_classes} "
                             f"classes: 0..{num_classes - 1})")
    return mask


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert ``[..., C, H, W]`` between gray (1) and RGB (3): gray is repeated, RGB becomes luminance."""
    c = x.shape[-3]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * w).sum(-3, keepdim=True)
    raise InputError(f"cannot convert a {c}-channel image to the model's {channels} channels")


def split_folder(root: str | Path, split: str) -> Path:
    """The folder holding ``images/`` (+ ``masks/``): ``root`` itself or ``root/split``."""
    root = Path(root)
    if (root / "images").is_dir():
        return root
    if (root / split / "images").is_dir():
        return root / split
    raise InputError(f"{root}: not a data-set folder (expected images/ and masks/, or {split}/images/)")


def read_class_names(root: str | Path) -> list[str] | None:
    """Class names from ``classes.json`` in ``root`` or its parent, if present."""
    root = Path(root)
    for cand in (root / "classes.json", root.parent / "classes.json"):
        if cand.is_file():
            try:
                names = json.loads(cand.read_text())["names"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{cand}: malformed classes.json ({type(exc).__name__}: {exc})") from None
            return [str(n) for n in names]
    return None


def find_pairs(folder: str | Path, require_masks: bool = True) -> list[tuple[Path, Path | None]]:
    """(image, mask) paths of a split folder, matched by file stem, sorted by name."""
    folder = Path(folder)
    images = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"{folder / 'images'}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    masks = {}
    if (folder / "masks").is_dir():
        masks = {p.stem: p for p in (folder / "masks").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = []
    for img in images:
        m = masks.get(img.stem)
        if m is None and require_masks:
            raise InputError(f"{img}: no mask with the same name in {folder / 'masks'}")
        pairs.append((img, m))
    return pairs


def load_pairs(folder: str | Path, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load every (image, mask) pair of a split folder: images ``[N, C, H, W]``, masks ``[N, H, W]``.

    All images must share one size and channel count (gray and RGB are not mixed)."""
    imgs, masks = [], []
    for ip, mp in find_pairs(folder, require_masks=True):
        x = load_image(ip)
        if imgs and x.shape != imgs[0].shape:
            raise InputError(f"{ip}: size {tuple(x.shape)} (CxHxW) differs from the first image's "
                             f"{tuple(imgs[0].shape)}; training needs one size")
        imgs.append(x)
        masks.append(load_mask(mp, num_classes, shape=tuple(x.shape[-2:])))
    return torch.stack(imgs), torch.stack(masks)
