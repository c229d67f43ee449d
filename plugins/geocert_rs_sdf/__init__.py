"""geocert plugin ``rs-sdf``: randomized-smoothing signed distance fields and a NeRF renderer on them.

Commands: ``geocert sdf`` (mesh or occupancy grid → Gaussian-smoothed occupancy → SDF = σ·Φ⁻¹(p)),
``geocert train-nerf`` (RS-SDF density + hash-grid colour field fitted to a NeRF-synthetic scene) and
``geocert render`` (novel views, test-view PSNR/SSIM, mesh and Chamfer exports; trains the bundled default
scene first when given no checkpoint). This module stays light: torch is imported inside each ``main()``.

Layout: ``config`` (every command's config and the nested NeRF settings), one module per command (``cmd_sdf``,
``cmd_train_nerf``, ``cmd_render``), and the library: ``sdf`` (RS-SDF and its errors), ``voxelize``,
``mesh_io``, ``field``/``hashgrid`` (the model), ``render`` (volume rendering, views, orbits), ``train``
(fitting, checkpoints), ``metrics`` (PSNR/SSIM, Chamfer), ``export`` (mesh, slice, depth), ``figures``,
``memory`` (up-front memory estimates), ``data`` and ``scenes``.
"""

from geocert.plugins import Plugin
from geocert_rs_sdf.config import PLUGIN_NAME, PLUGIN_VERSION, SMOKE, RenderConfig, SdfConfig, TrainNerfConfig

__all__ = ["PLUGIN", "SdfConfig", "TrainNerfConfig", "RenderConfig"]

PLUGIN = Plugin(
    name=PLUGIN_NAME,
    description="RS-SDF: signed distance as certified radius of occupancy, and a NeRF renderer on it",
    commands={"sdf": SdfConfig, "train-nerf": TrainNerfConfig, "render": RenderConfig},
    version=PLUGIN_VERSION,
    report="geocert_rs_sdf.report:sections",
    smoke=SMOKE,
)
