"""An out-of-tree geocert plugin in a few dozen lines: certified classification of voxel occupancy grids.

The plugin writes only what is specific to its modality: the items (procedural 16³ grids of spheres, cubes
and rings; or ``.npy`` grids in a folder) and the model adapter (any ``[B, 16, 16, 16] -> logits [B, 3]``
model; the default is a template-matching rule). Resume, ``config.json``, ``metrics.json``, the plots,
``report.html``, ``--device``, ``--threads`` and ``--executor local|ray`` come from geocert's core.
"""

import dataclasses
from pathlib import Path

from geocert.pipeline.options import CertifyOptions
from geocert.plugins import Plugin


@dataclasses.dataclass(frozen=True)
class CertifyVoxConfig(CertifyOptions):
    """Certify the shape class of voxel occupancy grids under Gaussian noise on every voxel."""

    data: Path | None = None
    """A folder of <name>_<class>.npy occupancy grids [16, 16, 16]; default: 12 procedural grids."""
    model: str = "geocert_voxels.task:TemplateClassifier"
    """A TorchScript file or package.module:factory returning a model [B, 16, 16, 16] -> logits [B, 3]."""
    sigma: float = 0.5
    """Noise std σ on each voxel's occupancy (0/1)."""
    n: int = 200
    """Estimation samples."""
    batch_size: int = 100
    """Noisy grids per forward pass."""
    output: Path = Path("outputs/certify-vox")
    """Output folder."""

    def main(self) -> None:
        from geocert_voxels.task import run

        run(self)


PLUGIN = Plugin(name="voxels", description="Example: certified shape classification of voxel grids",
                commands={"certify-vox": CertifyVoxConfig}, version="0.1.0",
                smoke={"certify-vox": ("--output", "{out}", "--n", "60", "--tau", "0.6")})
