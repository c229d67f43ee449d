"""connected2d: path-connected pixelwise segmentation (FICNN ∘ spline flow), ``geocert segment2d``.

This module stays light (no torch import); the implementation is imported inside the command's ``main()``.
"""

from geocert.plugins import Plugin

from .config import PLUGIN_NAME, PLUGIN_VERSION, Segment2dConfig

__all__ = ["PLUGIN", "Segment2dConfig"]

PLUGIN = Plugin(
    name=PLUGIN_NAME,
    description="Path-connected scribble segmentation (FICNN ∘ normalizing flow)",
    commands={"segment2d": Segment2dConfig},
    version=PLUGIN_VERSION,
    report="geocert_connected2d.report:sections",
    smoke={
        "segment2d": ("--task", "ellipse", "--epochs", "3", "--random-points", "500", "--check-grid", "2",
                      "--output", "{out}", "--no-progress"),
    },
)
