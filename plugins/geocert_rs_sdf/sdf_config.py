"""Config of ``geocert sdf`` (light: no torch/numpy imports here)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro

__all__ = ["SdfConfig", "SMOKE"]


@dataclasses.dataclass(frozen=True)
class SdfConfig:
    """Signed distance from occupancy: voxelize a mesh (or read an occupancy grid), Gaussian-smooth it with σ
    voxels and take SDF = σ·Φ⁻¹(p) (RS-SDF, positive inside); write the SDF grid, its zero-level mesh, a slice
    image and metrics against the mesh's exact signed distance."""

    input: tyro.conf.Positional[Path | None] = None
    """A watertight triangle mesh (.ply, .obj, .stl, .off) or an occupancy grid (.npy: 3D, bool or numbers in
    [0, 1], 1 = inside). Default: the ground-truth mesh of the bundled procedural scene (a cup with a handle)."""
    output: Path = Path("outputs/sdf")
    """Output folder: sdf.npy, mesh.ply, sdf_slice.png, metrics.json, config.json."""
    resolution: int = 128
    """Voxels along the longest side of the grid, margin included (mesh input; an .npy grid keeps its shape).
    The grid is the mesh's bounding box plus an empty margin of ceil(4σ)+1 voxels on every side, so that
    the blur sees only outside beyond the grid."""
    sigma: float = 1.5
    """σ of the Gaussian blur, in voxels; the SDF is exact for flat faces and saturates at about ±4.75σ."""
    supersample: int = 3
    """Occupancy samples per voxel, k³ (mesh input, k in 1..4): 1 = inside test at each voxel centre (binary
    occupancy: a face between voxel faces moves to the nearest one, up to ½ voxel); k > 1 = fraction of k³
    lattice points inside (partial volume; an axis-aligned face is resolved to 1/k³ voxel), blurred with
    σ_b² = σ² − 1/12 − (K²−1)/12K², K = k³, so that the total smoothing is exactly σ."""
    band: float = 2.0
    """Errors are measured in the band |d| < band·σ around the surface (d = exact signed distance)."""
    voxel_size: float = 1.0
    """Edge length of one voxel of an .npy occupancy grid in your units (mesh input: derived from the mesh)."""
    mesh: bool = True
    """Write mesh.ply, the marching-cubes zero level of the SDF in mesh coordinates."""
    threads: int = 1
    """torch CPU threads for the blur."""

    def main(self) -> None:
        from geocert_rs_sdf.sdf import run_sdf

        run_sdf(self)


SMOKE = {
    "sdf": ("--output", "{out}", "--resolution", "28", "--sigma", "1.0"),
}
