"""geocert plugin ``pointcloud``: certified point-cloud part segmentation (SegCertify on ShapeNet-part).

Commands: ``geocert train-pc`` (PointNet base model f_σ, with a voxel neighbourhood stage by default,
trained under Gaussian noise) and ``geocert certify-pc`` (per-point certified part or abstain, ℓ2 or
rotation-angle radius).
This module stays light: the implementation is imported inside each command's ``main()``.
"""

from geocert.plugins import Plugin
from geocert_pointcloud.config import PLUGIN_NAME, PLUGIN_VERSION, CertifyPcConfig, TrainPcConfig

__all__ = ["PLUGIN", "TrainPcConfig", "CertifyPcConfig"]

PLUGIN = Plugin(
    name=PLUGIN_NAME,
    description="Certified point-cloud part segmentation (SegCertify, PointNet, ShapeNet-part format)",
    commands={"train-pc": TrainPcConfig, "certify-pc": CertifyPcConfig},
    version=PLUGIN_VERSION,
    report="geocert_pointcloud.report:sections",
    smoke={
        "train-pc": ("--output", "{out}", "--epochs", "1", "--width", "8", "--num-points", "256",
                     "--train-points", "64", "--max-train-shapes", "16", "--eval-shapes", "8"),
        # an untrained stand-in: `--checkpoint auto` would train the default model (minutes); the auto path is
        # tested with a tiny training in tests/plugins/test_pointcloud.py
        "certify-pc": ("--checkpoint", "geocert_pointcloud.model:smoke_model", "--output", "{out}",
                       "--num-shapes", "2", "--num-points", "256",
                       "--n0", "4", "--n", "40", "--tau", "0.6", "--alpha", "0.1", "--batch-size", "40"),
    },
)
