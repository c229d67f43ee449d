"""Light config of ``geocert segment2d`` (no torch/numpy at import)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import tyro


@dataclasses.dataclass(frozen=True)
class Segment2dConfig:
    """Path-connected scribble segmentation: FICNN ∘ spline flow on pixel positions (foreground provably
    path-connected). With no IMAGE, the default horse task is generated into the cache and used."""

    image: tyro.conf.Positional[pathlib.Path | None] = None
    """RGB image; omitted: the default task (scikit-image horse over real textures)."""
    scribbles: pathlib.Path | None = None
    """Scribbles PNG, same size as IMAGE: red (255,0,0) = foreground, blue (0,0,255) = background."""
    gt: pathlib.Path | None = None
    """Optional ground-truth mask (brightest channel > 127 = foreground) for the foreground IoU."""
    output: pathlib.Path = pathlib.Path("outputs/segment2d")
    """Output folder."""
    model: Literal["flow-ficnn", "ficnn"] = "flow-ficnn"
    """flow-ficnn (connected foreground) or ficnn alone (convex foreground)."""
    teacher: bool = True
    """Train the teacher MLP jointly (2 hidden layers of 130)."""
    epochs: int = 300
    """Training epochs (paper: 300)."""
    batch_size: int = 1500
    """Batch size (paper: 1500)."""
    lr: float = 1e-3
    """Adam learning rate (paper: 1e-4, which did not converge within 300 epochs on our tasks)."""
    seed: int = 0
    """Random seed."""

    def main(self) -> None:
        from .run import run_segment2d

        run_segment2d(self)
