"""Light config of ``geocert segment2d`` (no torch/numpy at import)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import tyro

PLUGIN_NAME = "connected2d"
PLUGIN_VERSION = "0.2.0"
TASK_NAMES = ("horse", "crescent", "cross", "ring-arc", "ellipse", "horse-brick", "horse-gravel", "coin-a", "coin-b",
              "coin-c")  # == scenes.TASKS (kept light here)


@dataclasses.dataclass(frozen=True)
class Segment2dConfig:
    """Path-connected scribble segmentation: FICNN ∘ spline flow on pixel positions (foreground provably
    path-connected inside the image). With no IMAGE, a generated task (--task, default: the scikit-image
    horse over real textures) is made in the cache and used, with its ground-truth mask.

    Scribble colours: red (255,0,0) = foreground, blue (0,0,255) = background, anything else unlabelled.
    Defaults deviate from the paper where marked (the paper's values under-train on our small scribble
    sets; see docs/connected2d.md)."""

    image: tyro.conf.Positional[pathlib.Path | None] = None
    """RGB image; omitted: the generated task named by --task."""
    scribbles: pathlib.Path | None = None
    """Scribbles PNG, same size as IMAGE: red (R≥128, G,B<100) = foreground, blue (B≥128, R,G<100) =
    background, anything else (black, white, transparent) unlabelled. Required with IMAGE."""
    gt: pathlib.Path | None = None
    """Optional ground-truth mask, same size (brightest channel > 127 = foreground) for the foreground IoU."""
    task: Literal["horse", "crescent", "cross", "ring-arc", "ellipse", "horse-brick", "horse-gravel", "coin-a",
                  "coin-b", "coin-c"] = "horse"
    """Generated task used when IMAGE is omitted."""
    scribble_style: Literal["dense", "sparse"] = "dense"
    """Scribbles of the generated task: dense (object skeleton + a ring around it) or sparse (1-3 strokes
    through the object, 3-5 background strokes, as a person draws them)."""
    output: pathlib.Path = pathlib.Path("outputs/segment2d")
    """Output folder (mask.png, overlay.png, overlay_scribbles.png, metrics.json, config.json)."""
    model: Literal["flow-ficnn", "ficnn"] = "flow-ficnn"
    """flow-ficnn (path-connected foreground) or ficnn alone (convex foreground), the two rows of Table 1."""
    teacher: bool = True
    """Use a teacher to label the unscribbled pixels (--no-teacher: scribbles only)."""
    teacher_model: Literal["grabcut+rw", "grabcut", "random-walker", "mlp"] = "grabcut+rw"
    """grabcut+rw / grabcut / random-walker: a fixed classical segmenter run once on the image and scribbles
    (default: random walker and GrabCut combined; see docs/connected2d.md); mlp: the paper's MLP (2 hidden
    layers of 130, on RGB + XY) trained jointly."""
    epochs: int = 300
    """Training epochs (paper: 300). Soft targets start at epoch 30 (rounded) and 200 (soft teacher)."""
    batch_size: int = 500
    """Batch size (paper: 1500; smaller gives more Adam steps on our ~1800 scribbled pixels)."""
    random_points: int = 3000
    """Random pixels added to every epoch (paper: 1200); they only enter through the teacher terms."""
    lr: float = 2e-3
    """Initial Adam learning rate (paper: 1e-4 constant, which under-trains on our tasks)."""
    lr_end: float | None = 1e-4
    """Learning rate reached at the end (exponential decay); None: constant --lr as in the paper."""
    temperature: float = 10.0
    """Scale of the FICNN score before the sigmoid (paper: 1)."""
    quadratic: float = 1.0
    """Initial weight α of a learned strongly convex term α|u|² added to the FICNN (keeps it convex; the
    initial foreground is a centred disc instead of a random half-plane). 0: plain FICNN as in the paper."""
    jitter: bool = True
    """Train on a uniform random point of each pixel's cell instead of its centre (paper: centres)."""
    check_grid: int = 4
    """Supersampling factor of the extra connectivity check on a finer grid (sub-pixel filaments)."""
    seed: int = 0
    """Random seed (initialisation, batches, jitter)."""
    threads: int = 1
    """Torch CPU threads (the batches are small; on our shared 2-core machine 1 thread trained ~7x faster
    than 2)."""
    progress: bool = True
    """Show a progress bar on stderr."""

    def main(self) -> None:
        from .run import run_segment2d

        run_segment2d(self)
