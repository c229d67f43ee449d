"""The model adapter of ``certify-pc``: any part segmenter behind one call, labels ``[B, N]`` from points.

Accepted models (``--model``, see :func:`geocert.pipeline.models.load_model`):

- a geocert ``train-pc`` checkpoint (PointNet or PointNet + voxel stage, ``forward(points, category)``; its own
  input channels);
- a TorchScript file or ``package.module:factory``: ``forward(points)`` with ``points [B, N, 3]`` float32,
  normalized as geocert normalizes clouds (centred, inside the unit sphere), or ``[B, N, 6]`` with the
  unperturbed unit normals appended when ``--normals`` is given. It returns logits ``[B, N, 50]`` over
  ShapeNet's global part ids, logits ``[B, N, P]`` over the P parts of ``--category`` (in ShapeNet order),
  or integer global part ids ``[B, N]``.

Predictions are restricted to the cloud's category parts (logits outside them are ignored; integer labels
outside them are a contract error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from geocert.pipeline.models import ModelError
from geocert_pointcloud.data import CATEGORIES, NUM_PARTS
from geocert_pointcloud.model import model_input, part_mask, predict_parts, rotate_about_up

__all__ = ["PartSegmenter", "load_part_segmenter", "make_base_model"]


class PartSegmenter:
    """A loaded part-segmentation model with geocert's calling convention.

    Args:
        model: the network.
        native: True for a geocert checkpoint (``forward(points, category)``), False for a user's model
            (``forward(points)``).
        in_channels: 3 (xyz) or 6 (xyz + unperturbed normals).
        source: what the user gave, for messages.
        categories: the categories a native checkpoint was trained on (None: unknown).
    """

    def __init__(self, model: Any, *, native: bool, in_channels: int, source: str,
                 categories: Sequence[str] | None = None, meta: dict | None = None):
        self.model, self.native, self.in_channels, self.source = model, native, in_channels, source
        self.categories = list(categories) if categories is not None else None
        self.meta = dict(meta or {})

    def labels(self, points: torch.Tensor, category: int, mask: torch.Tensor) -> torch.Tensor:
        """Global part ids ``[B, N]`` for network inputs ``points [B, N, in_channels]``, restricted to
        ``mask [NUM_PARTS]`` (bool); ``category`` indexes :data:`CATEGORIES` (-1 unknown)."""
        b, n = points.shape[:2]
        if self.native:
            cat = torch.full((b,), category, dtype=torch.long, device=points.device)
            return predict_parts(self.model, points, cat, mask.expand(b, -1))
        out = self.model(points)
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"{self.source}: the model must return a tensor, got {type(out).__name__}")
        parts = torch.nonzero(mask).reshape(-1)
        if out.ndim == 2 and tuple(out.shape) == (b, n) and not out.dtype.is_floating_point:
            labels = out.long()
            ok = (labels >= 0) & (labels < NUM_PARTS)
            ok &= mask[labels.clamp(0, NUM_PARTS - 1)]
            if not bool(ok.all()):
                bad = labels[~ok][:3].tolist()
                raise ModelError(f"{self.source}: the model returned part ids outside the cloud's category parts "
                                 f"({', '.join(map(str, bad))}); return global ShapeNet part ids of the category")
            return labels
        if out.ndim == 3 and tuple(out.shape[:2]) == (b, n) and out.dtype.is_floating_point:
            if not bool(torch.isfinite(out).all()):
                raise ModelError(f"{self.source}: the model returned NaN or infinite logits")
            c = out.shape[-1]
            if c == NUM_PARTS:
                return out.masked_fill(~mask, -math.inf).argmax(-1)
            if c == len(parts) and len(parts) < NUM_PARTS:
                return parts[out.argmax(-1)]
        raise ModelError(f"{self.source}: the model must return logits [B, N, {NUM_PARTS}] (global part ids), "
                         f"[B, N, P] (the P parts of --category) or integer labels [B, N] for input "
                         f"[{b}, {n}, {points.shape[-1]}], got [{', '.join(map(str, out.shape))}] ({out.dtype})")


def load_part_segmenter(spec: str | Path, *, device: Any, normals: bool = False) -> PartSegmenter:
    """``--model``: a train-pc checkpoint, a TorchScript file or ``package.module:factory`` (see module doc)."""
    from geocert.pipeline.models import load_model
    from geocert_pointcloud.model import fuse_batchnorm, load_checkpoint

    def native(path: Path):
        model, ckpt = load_checkpoint(path)
        return fuse_batchnorm(model), ckpt  # same outputs, fewer passes over the features

    loaded = load_model(spec, device=device, native=native, option="--model")
    if loaded.kind == "checkpoint":
        ckpt = loaded.meta
        return PartSegmenter(loaded.model, native=True, in_channels=6 if ckpt.get("normals") else 3,
                             source=loaded.source, categories=ckpt.get("categories"), meta=ckpt)
    return PartSegmenter(loaded.model, native=False, in_channels=6 if normals else 3, source=loaded.source)


def make_base_model(segmenter: PartSegmenter, points: torch.Tensor, normals: torch.Tensor | None,
                    category: str | None, mode: str, allowed_parts: Sequence[int] | None = None):
    """The base classifier f for :func:`geocert.smoothing.sample_counts` and the clean input x.

    xyz: ``x = points [N, 3]``, ``f(batch [B, N, 3]) -> [B, N]``. rotation: ``x = angle [1]`` (radians, 0),
    ``f(angles [B, 1]) -> [B, N]`` rotates the cloud (and its normals) about +y by each angle and classifies it.
    ``allowed_parts`` restricts clouds of unknown category (default: every part)."""
    cat_idx = CATEGORIES.index(category) if category is not None else -1
    mask = part_mask(torch.tensor([cat_idx]), allowed_parts)[0].to(points.device)
    if segmenter.in_channels == 6 and normals is None:
        raise ModelError(f"{segmenter.source}: the model takes normals, but the cloud has none")

    def net_input(pts: torch.Tensor, nrm: torch.Tensor | None) -> torch.Tensor:
        return model_input(pts, nrm if segmenter.in_channels == 6 else None)

    if mode == "xyz":
        def f(batch: torch.Tensor) -> torch.Tensor:
            return segmenter.labels(net_input(batch, normals), cat_idx, mask)

        return f, points

    def f_rot(angles: torch.Tensor) -> torch.Tensor:
        nrm = rotate_about_up(normals, angles[:, 0]) if normals is not None else None
        return segmenter.labels(net_input(rotate_about_up(points, angles[:, 0]), nrm), cat_idx, mask)

    return f_rot, torch.zeros(1, device=points.device, dtype=points.dtype)

