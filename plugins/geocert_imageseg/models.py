"""The built-in small U-Net (segmentation base model and σ-conditioned denoiser), its checkpoints, and the
checks of its architecture options against the input size.

Checkpoints written by ``geocert train-seg`` / ``train-denoiser --kind unet`` are ``torch.save`` dicts with
plain metadata (``kind``, ``in_channels``, ``num_classes``, ``width``, ``depth``, ``train_sigma``,
``class_names``) and a ``state_dict``. Users' own models (TorchScript, ``package.module:factory``) are loaded
by :func:`geocert.pipeline.load_model`, with :func:`load_segmenter` as the loader of this plugin's format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geocert.errors import InputError
from geocert.io import read_checkpoint

__all__ = ["UNet", "SegModel", "save_checkpoint", "load_checkpoint", "load_segmenter", "unet_parameters",
           "check_unet_options", "SEG_KIND", "DENOISER_KIND", "MAX_PARAMETERS"]

SEG_KIND = "geocert-imageseg-unet-seg"
DENOISER_KIND = "geocert-imageseg-unet-denoiser"
MAX_PARAMETERS = 100_000_000
"""Largest U-Net a command builds (--width / --depth beyond it are refused before any work)."""
MIN_BOTTLENECK = 2
"""The deepest U-Net level must keep at least this many pixels per side."""


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
    )


class UNet(nn.Module):
    """A small U-Net: ``depth`` 2× down-samplings, channel widths ``width·2^level``.

    Input ``[B, in_channels, H, W]`` (any H, W: padded to a multiple of ``2^depth`` and cropped back),
    output ``[B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 16, depth: int = 2):
        super().__init__()
        self.depth = depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.downs = nn.ModuleList([_block(in_channels, chans[0])])
        self.downs.extend(_block(chans[i], chans[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth)))
        self.up_blocks = nn.ModuleList(_block(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, down in enumerate(self.downs):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.ups, self.up_blocks, strict=False):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)[..., :h, :w]


class SegModel(nn.Module):
    """The segmentation base model: a U-Net producing class logits ``[B, K, H, W]`` from ``[B, C, H, W]``."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, depth: int = 2):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.net = UNet(in_channels, num_classes, width, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Save ``{"meta": ..., "state_dict": ...}`` atomically."""
    from geocert.io import atomic_write

    path = Path(path)
    with atomic_write(path, "wb") as fh:
        torch.save({"meta": dict(meta), "state_dict": model.state_dict()}, fh)
    return path


def load_checkpoint(path: str | Path, expect_kind: str) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by this plugin; ``expect_kind`` is :data:`SEG_KIND` or :data:`DENOISER_KIND`."""
    from geocert_imageseg.denoise import UNetDenoiser

    path = Path(path)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "meta" not in ckpt or "state_dict" not in ckpt:
        raise InputError(f"{path}: not a geocert imageseg checkpoint (no meta/state_dict)")
    meta = ckpt["meta"]
    if meta.get("kind") != expect_kind:
        raise InputError(f"{path}: is a {meta.get('kind')!r} checkpoint, expected {expect_kind!r}")
    if expect_kind == SEG_KIND:
        model: nn.Module = SegModel(meta["in_channels"], meta["num_classes"], meta["width"], meta["depth"])
    else:
        model = UNetDenoiser(meta["in_channels"], meta["width"], meta["depth"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not match the stored architecture ({str(exc)[:120]})") from None
    return model.eval(), meta


def load_segmenter(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a ``train-seg`` checkpoint: (:class:`SegModel` mapping ``[B, C, H, W]`` → logits ``[B, K, H, W]``,
    meta). The ``native`` loader given to :func:`geocert.pipeline.load_model`."""
    return load_checkpoint(path, SEG_KIND)


def _block_parameters(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout + 9 * cout * cout + cout + 4 * cout  # two 3x3 convs + two GroupNorms


def unet_parameters(in_channels: int, out_channels: int, width: int, depth: int) -> int:
    """The parameter count of :class:`UNet` (closed form: nothing is allocated)."""
    chans = [width * 2**i for i in range(depth + 1)]
    total = _block_parameters(in_channels, chans[0]) + chans[0] * out_channels + out_channels
    for i in range(depth):
        total += _block_parameters(chans[i], chans[i + 1])  # down path
        total += 4 * chans[i + 1] * chans[i] + chans[i]  # 2x2 transposed conv
        total += _block_parameters(2 * chans[i], chans[i])  # up path
    return total


def check_unet_options(*, width: int, depth: int, image_size: tuple[int, int], in_channels: int,
                       out_channels: int, what: str = "training images") -> None:
    """Refuse a U-Net that cannot work on ``image_size`` (H, W) or would not fit: one line naming the options.

    Each level halves the image, so ``depth`` must keep at least :data:`MIN_BOTTLENECK` pixels per side at the
    deepest level; the parameter count must stay within :data:`MAX_PARAMETERS`."""
    from geocert.errors import ParameterError
    from geocert.validate import check_positive_int

    check_positive_int(width, "--width")
    check_positive_int(depth, "--depth")
    side = min(image_size)
    max_depth = max(0, (side // MIN_BOTTLENECK).bit_length() - 1)
    if depth > max_depth:
        raise ParameterError(f"--depth {depth}: the U-Net halves the image {depth} times, but the "
                             f"{image_size[0]}x{image_size[1]} {what} allow at most --depth {max_depth} (the deepest "
                             f"level must keep at least {MIN_BOTTLENECK}x{MIN_BOTTLENECK} pixels)")
    params = unet_parameters(in_channels, out_channels, width, depth)
    if params > MAX_PARAMETERS:
        raise ParameterError(f"--width {width} --depth {depth}: the U-Net would have {params / 1e6:.0f} M parameters "
                             f"(limit {MAX_PARAMETERS // 1_000_000} M); lower --width or --depth")
