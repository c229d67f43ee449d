"""Light config of ``geocert segment2d`` (no torch/numpy at import)."""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Annotated, Literal

import tyro

PLUGIN_NAME = "connected2d"
PLUGIN_VERSION = "0.2.0"
TASK_NAMES = ("horse", "crescent", "cross", "ring-arc", "ellipse", "horse-brick", "horse-gravel", "coin-a", "coin-b",
              "coin-c")  # == scenes.TASKS (kept light here)


_Hidden = tyro.conf.Suppress


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How the FICNN ∘ flow (and a jointly trained teacher) are trained; nested in ``segment2d``'s config
    with its options at the top level (``--epochs``, ``--lr``, ...). Paper values in brackets."""

    epochs: int = 300
    """Training epochs [300]. Soft targets start at --round-after (rounded) and --soft-after (soft teacher)."""
    batch_size: int = 500
    """Batch size [1500; smaller gives more Adam steps on ~1800 scribbled pixels]."""
    random_points: int = 3000
    """Random pixels added to every epoch [1200]; they only enter through the teacher terms."""
    lr: float = 2e-3
    """Initial Adam learning rate [1e-4 constant, which under-trains on our tasks]."""
    lr_end: float | None = 1e-4
    """Learning rate reached at the end (exponential decay); unset: constant --lr as in the paper."""
    temperature: float = 10.0
    """Scale of the FICNN score before the sigmoid [1]."""
    ficnn_quadratic: Annotated[float, tyro.conf.arg(name="quadratic")] = 1.0
    """Initial weight α of a learned strongly convex term α|u|² added to the FICNN (keeps it convex; the
    initial foreground is a centred disc instead of a random half-plane). 0: plain FICNN as in the paper."""
    jitter: bool = True
    """Train on a uniform random point of each pixel's cell instead of its centre [centres]."""
    round_after: int = 30
    """Epoch from which the model follows the rounded teacher [30]."""
    soft_after: int = 200
    """Epoch from which the model follows the soft teacher [200]."""
    flow_layers: int = 6
    """Coupling layers of the square flow g."""
    flow_bins: int = 8
    """Spline bins per coupling layer."""
    flow_size: int = 40
    """Size of each coupling layer's conditioner."""
    flow_min_bin: float = 0.02
    """Smallest spline bin width (fraction of the square)."""
    flow_min_derivative: float = 0.02
    """Smallest spline slope."""
    ficnn_hidden: int = 64
    """Width of the FICNN's hidden layers."""
    ficnn_layers: int = 2
    """Hidden layers of the FICNN (2 hidden + output = the paper's 3-layer FICNN)."""
    teacher_hidden: int = 130
    """Hidden width of the MLP teacher [130] (--teacher-model mlp)."""
    hard_fraction: float = 0.5
    """With a fixed teacher: share of each epoch's random pixels drawn among those the model currently gets
    wrong against the teacher (re-found every --hard-every epochs)."""
    hard_every: int = 4
    """Epochs between searches for the wrongly predicted pixels."""
    flow_conditioner: _Hidden[str] = "bspline"
    activation: _Hidden[str] = "relu"
    teacher_features: _Hidden[str] = "rgbxy"
    fixed_teacher_loss: _Hidden[str] = "bce"
    use_flow: _Hidden[bool] = True
    """Set from --model."""
    use_teacher: _Hidden[bool] = True
    """Set from --teacher."""
    seed: _Hidden[int] = 0
    """Set from --seed."""

    def validate(self) -> TrainSettings:
        """Every numeric setting checked; errors name options as typed."""
        from geocert.errors import ParameterError

        def opt(name: str) -> str:
            return "--quadratic" if name == "ficnn_quadratic" else "--" + name.replace("_", "-")

        for name in ("epochs", "batch_size", "flow_layers", "flow_bins", "flow_size", "ficnn_hidden",
                     "ficnn_layers", "teacher_hidden", "hard_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"{opt(name)} must be a positive integer, got {v!r}")
        for name in ("random_points", "round_after", "soft_after"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ParameterError(f"{opt(name)} must be >= 0, got {v!r}")
        for name in ("lr", "temperature", "flow_min_derivative"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ParameterError(f"{opt(name)} must be a positive number, got {v!r}")
        if self.lr_end is not None and not (math.isfinite(self.lr_end) and self.lr_end > 0):
            raise ParameterError(f"--lr-end must be a positive number (or unset), got {self.lr_end!r}")
        if not (math.isfinite(self.ficnn_quadratic) and self.ficnn_quadratic >= 0):
            raise ParameterError(f"--quadratic must be >= 0, got {self.ficnn_quadratic!r}")
        if not (math.isfinite(self.flow_min_bin) and 0 < self.flow_min_bin * self.flow_bins < 1):
            raise ParameterError(f"--flow-min-bin must be > 0 with --flow-min-bin × --flow-bins < 1, got "
                                 f"{self.flow_min_bin!r}")
        if not (math.isfinite(self.hard_fraction) and 0 <= self.hard_fraction <= 1):
            raise ParameterError(f"--hard-fraction must lie in [0, 1], got {self.hard_fraction!r}")
        return self


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
    train: Annotated[TrainSettings, tyro.conf.OmitArgPrefixes] = TrainSettings()
    """Training settings (options at the top level)."""
    check_grid: int = 4
    """Supersampling factor of the extra connectivity check on a finer grid (sub-pixel filaments)."""
    seed: int = 0
    """Random seed (initialisation, batches, jitter)."""
    threads: int = 1
    """Torch CPU threads (0 = auto: free cores; the batches are small: on our shared 2-core machine 1 thread
    trained ~7x faster than 2)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto (CUDA when present): where the model trains (the checks run on the CPU)."""
    progress: bool = True
    """Show a progress bar on stderr."""

    def main(self) -> None:
        from .segment2d import run

        run(self)
