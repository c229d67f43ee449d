"""connected2d: path-connected pixelwise segmentation (FICNN ∘ spline flow), ``geocert segment2d``."""

from geocert.plugins import Plugin

from .config import Segment2dConfig

PLUGIN = Plugin(name="connected2d", description="Path-connected scribble segmentation (FICNN ∘ normalizing flow)",
                commands={"segment2d": Segment2dConfig}, version="0.1.0")
