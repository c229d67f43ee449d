"""geocert plugin ``rs-sdf``: randomized-smoothing signed distance fields and a NeRF renderer on them.

Commands: ``geocert sdf`` (mesh or occupancy grid → Gaussian-smoothed occupancy → SDF = σ·Φ⁻¹(p)),
``geocert train-nerf`` (RS-SDF density + hash-grid colour field fitted to a NeRF-synthetic scene) and
``geocert render`` (novel views, test-view PSNR/SSIM, mesh and Chamfer exports; trains the bundled default
scene first when given no checkpoint). This module stays light: torch is imported inside each ``main()``.
"""

from geocert.plugins import Plugin
from geocert_rs_sdf.nerf_config import SMOKE as _NERF_SMOKE
from geocert_rs_sdf.nerf_config import RenderConfig, TrainNerfConfig
from geocert_rs_sdf.sdf_config import SMOKE as _SDF_SMOKE
from geocert_rs_sdf.sdf_config import SdfConfig

__all__ = ["PLUGIN", "SdfConfig", "TrainNerfConfig", "RenderConfig"]

PLUGIN = Plugin(
    name="rs-sdf",
    description="RS-SDF: signed distance as certified radius of occupancy, and a NeRF renderer on it",
    commands={"sdf": SdfConfig, "train-nerf": TrainNerfConfig, "render": RenderConfig},
    version="0.1.0",
    report="geocert_rs_sdf.report:sections",
    smoke={**_SDF_SMOKE, **_NERF_SMOKE},
)
