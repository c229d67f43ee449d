"""geocert imageseg plugin: certified image segmentation (SegCertify) and denoised smoothing.

Commands: ``geocert certify-seg``, ``geocert train-seg``, ``geocert train-denoiser``. This module stays light
(no torch import); the implementation is imported inside each command's ``main()``.
"""

from __future__ import annotations

from geocert.plugins import Plugin
from geocert_imageseg.config import (
    PLUGIN_NAME,
    PLUGIN_VERSION,
    CertifySegConfig,
    TrainDenoiserConfig,
    TrainSegConfig,
)

__all__ = ["PLUGIN", "CertifySegConfig", "TrainSegConfig", "TrainDenoiserConfig"]

PLUGIN = Plugin(
    name=PLUGIN_NAME,
    description="Certified image segmentation (SegCertify) with optional diffusion denoised smoothing",
    commands={
        "certify-seg": CertifySegConfig,
        "train-seg": TrainSegConfig,
        "train-denoiser": TrainDenoiserConfig,
    },
    version=PLUGIN_VERSION,
    report="geocert_imageseg.report:sections",
    smoke={
        "train-seg": ("--output", "{out}", "--epochs", "1", "--width", "8", "--no-progress"),
        "train-denoiser": ("--output", "{out}", "--epochs", "1", "--width", "8", "--no-progress"),
        "certify-seg": ("--output", "{out}", "--max-images", "1", "--n0", "2", "--n", "30", "--tau", "0.6",
                        "--alpha", "0.1", "--no-progress"),
    },
)
