"""Configs of every ``rs-sdf`` command and the settings they nest (light: no torch/numpy imports here).

- :class:`SdfConfig` — ``geocert sdf``
- :class:`TrainNerfConfig` — ``geocert train-nerf``; nests :class:`FieldSettings` (the model and its renderer,
  stored in checkpoints) and :class:`FitSettings` (the optimisation), whose options appear without a prefix
  (``--grid-res``, ``--steps``).
- :class:`RenderConfig` — ``geocert render`` (its ``--train.*`` options train the default model).

Each config's ``main()`` imports its command module (``cmd_sdf``, ``cmd_train_nerf``, ``cmd_render``), which
never imports the plugin's ``__init__`` back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import tyro

__all__ = ["SdfConfig", "TrainNerfConfig", "RenderConfig", "FieldSettings", "FitSettings", "SMOKE",
           "PLUGIN_NAME", "PLUGIN_VERSION", "SHARPNESS_START"]

PLUGIN_NAME = "rs-sdf"
PLUGIN_VERSION = "0.1.0"
SHARPNESS_START = 8.0
"""Default multiple of the sharpness s that training starts at (annealed to s at half the run)."""



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
    device: str = "cpu"
    """Where the blur runs: cpu, cuda, cuda:N or auto (CUDA when present, else CPU)."""
    threads: int = 1
    """torch CPU threads for the blur; 0 = auto (the usable CPUs minus the 1-minute load average, at least 1)."""

    def main(self) -> None:
        from geocert_rs_sdf.cmd_sdf import run

        run(self)


AUTO_FIELD = {
    # What FieldSettings' None (auto) settings become. The bundled scene is 100×100, Lambertian and rendered
    # through each pixel's centre: its images reward a crisp surface, and more colour capacity overfits them
    # (29.51 dB against 30.09). Scenes given as DATA (Blender, cameras: pixels are areas, glossy textured
    # materials) take a softer edge and a finer, wider colour model (the bunny's object pixels 31.75 → 32.34 dB).
    # docs/rs_sdf.md has the runs.
    "bundled": {"sharpness": 0.025, "hash_levels": 8, "hash_log2": 15, "hash_max_res": 128, "hidden": 64},
    "data": {"sharpness": 0.05, "hash_levels": 12, "hash_log2": 17, "hash_max_res": 384, "hidden": 128},
}


@dataclasses.dataclass(frozen=True)
class FieldSettings:
    """The radiance field and its renderer (stored in checkpoints; the scene box comes from the data)."""

    density: Literal["rs-sdf", "plain"] = "rs-sdf"
    """rs-sdf: occupancy logits → sigmoid → exact Gaussian blur (σ) → SDF σ·Φ⁻¹(p) → G = sigmoid(SDF/s) →
    density −30·ln(1 + ε − G) (the paper). plain: the same grid read as log-density, no smoothing
    (Instant-NGP-style density, the paper's comparison)."""
    sigma: float = 1.0
    """Smoothing σ of the occupancy grid, in voxels (rs-sdf)."""
    sharpness: float | None = None
    """s of the occupancy G = sigmoid(SDF / s), in voxels (rs-sdf): smaller is a sharper surface and emptier
    empty space (the logistic tail of G is the density floor there). None (auto): 0.05 for a scene given as
    DATA, 0.025 for the bundled scene (``AUTO_FIELD``; measured in docs/rs_sdf.md)."""
    grid_res: int = 96
    """Voxels per side of the occupancy grid over the scene box."""
    samples: int = 192
    """Density samples per ray across the scene box (cheap grid lookups, stratified)."""
    color_samples: int = 12
    """Colour (hash grid + MLP) queries per ray: the samples of largest compositing weight."""
    hash_levels: int | None = None
    """Hash-grid levels. None (auto): 12 for a scene given as DATA, 8 for the bundled scene."""
    hash_log2: int | None = None
    """log2 of the hash table size per level. None (auto): 17 for DATA, 15 for the bundled scene."""
    hash_max_res: int | None = None
    """Resolution of the finest hash-grid level over the scene box. None (auto): 384 for DATA, 128 for the bundled
    scene."""
    hidden: int | None = None
    """Hidden width of the colour MLP. None (auto): 128 for DATA, 64 for the bundled scene."""
    antialias: Literal["auto", "on", "off"] = "auto"
    """Render views with each pixel as an area, the mean of a 2×2 grid of rays over it (as cameras and Blender
    form pixels; 4× the rendering time), and train the pixels the object covers only in part (0.01 < alpha <
    0.99) as the same mean; every other training pixel keeps one ray through its centre. auto: on for a scene
    given as DATA, off for the bundled procedural scene (its renderer samples each pixel's centre only).
    Measured in docs/rs_sdf.md."""
    view_dependent: Literal["auto", "on", "off"] = "auto"
    """Feed the view direction (spherical harmonics, degree 2) to the colour MLP (specular highlights). auto:
    on for a scene given as DATA (real materials are glossy), off for the bundled procedural scene (it is
    Lambertian; on costs it 0.16 dB). Measured in docs/rs_sdf.md."""
    background: Literal["auto", "white", "black", "random", "learned"] = "auto"
    """What rays see behind the scene box. white/black: a constant; random: a random colour per training
    ray with the RGBA image composited on it (needs alpha or masks; rendered on white); learned: a small
    volume of the surroundings (ground, walls; contracted space, a density grid and a hash-grid colour) in
    front of a sky MLP, composited behind the object, so that a real background does not become floaters in
    the box. auto: white for RGBA images, learned otherwise."""


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The optimisation (stored in checkpoints; all but ``steps`` must match to resume)."""

    steps: int = 4500
    """Optimisation steps (one batch of random training rays each)."""
    rays: int = 2048
    """Rays per step."""
    lr: float = 1e-2
    """Adam learning rate of the hash grid and MLP (decayed ×0.1 over the run)."""
    grid_lr: float = 0.1
    """Adam learning rate of the occupancy grid (decayed ×0.1 over the run)."""
    foreground_fraction: float = 0.5
    """Share of each step's rays drawn from the object's training pixels (alpha or mask > 0.01); the rest are
    drawn uniformly from all pixels, so the background is still learned. Scenes with neither alpha nor
    masks draw all rays uniformly."""
    mask_weight: float = 1.0
    """Weight of the opacity-vs-alpha loss (the images' alpha, or the frames' masks, as the object's
    silhouette; 0 = colour only). Without it a haze in empty space that learns the background's colour costs
    nothing."""
    sharpness_start: float = SHARPNESS_START
    """Start training at this multiple of the sharpness s, annealed geometrically to s at half the run (1 = no
    annealing)."""
    sparsity: float = 0.0
    """Weight of the mean base occupancy mean(sigmoid(θ)) in the loss (rs-sdf): a prior for empty space. Off by
    default: it tightened the bunny's surface but eroded the bundled cup's plate, which only grazing views see
    (docs/rs_sdf.md)."""
    smoothness: float = 0.0
    """Weight of the total variation of the base occupancy (rs-sdf): mean over the grid of |Δp̂| along the three
    axes, the area of the occupied region's boundary. A minimal-area prior for surfaces the images do not pin
    down (a textureless floor seen by few views)."""
    carve: bool = True
    """Space carving (rs-sdf; runs of 1000 steps or more) at 50, 70 and 90 % of the run: voxels the training
    rays reach only behind a surface are fixed inside, voxels no ray reaches outside, so the SDF is decided
    everywhere (see docs/rs_sdf.md)."""
    least_area: bool = True
    """After the last carving pass (rs-sdf, with --carve): remove the matter that neither silhouettes nor
    texture edges pin where that lowers the surface's area, the least-area completion of what the views leave
    open, such as a hill over a textureless floor (see docs/rs_sdf.md)."""
    seed: int = 0
    """Seed of initialisation and ray sampling (runs are reproducible)."""


_Flat = tyro.conf.arg(name="")  # the nested settings' options appear without a prefix


@dataclasses.dataclass(frozen=True)
class TrainNerfConfig:
    """Fit an RS-SDF NeRF (smoothed occupancy grid → SDF → density; hash-grid colour) to a NeRF-synthetic scene."""

    data: tyro.conf.Positional[Path | None] = None
    """Scene folder: NeRF-synthetic (transforms_{train,val,test}.json, RGBA PNGs) or nerfstudio / Instant-NGP
    (transforms.json, PNG or JPG, PINHOLE or OPENCV cameras, optional masks); see docs/rs_sdf.md. Default:
    the bundled procedural scene, generated into $GEOCERT_CACHE (or ~/.cache/geocert) on first use."""
    downscale: int = 1
    """Shrink the images N times (N×N pixel averages; the intrinsics follow)."""
    output: Path = Path("outputs/train-nerf")
    """Output folder: checkpoint.pt (resumable), metrics.json, train_log.jsonl, config.json."""
    field: Annotated[FieldSettings, _Flat] = FieldSettings()
    fit: Annotated[FitSettings, _Flat] = FitSettings()
    max_views: int = 0
    """Use at most this many training views (0 = all)."""
    eval_views: int = 0
    """Test views for the PSNR/SSIM printed after training (0 = all of transforms_test.json)."""
    checkpoint_every: int = 500
    """Write checkpoint.pt (and the training log up to it) every this many steps, and at the end."""
    overwrite: Annotated[bool, tyro.conf.FlagCreatePairsOff, tyro.conf.arg(aliases=("--no-resume",))] = False
    """Start over: empty OUTPUT (a folder geocert wrote) instead of continuing from OUTPUT/checkpoint.pt (which
    needs the same settings but --steps). --no-resume is the same flag."""
    scene_width: int = 100
    """Image width/height of the bundled default scene (used when no data folder is given)."""
    scene_views: int = 100
    """Training views of the bundled default scene (it also has 10 val and 20 test views)."""
    device: str = "cpu"
    """Where torch runs: cpu, cuda, cuda:N or auto (CUDA when present, else CPU)."""
    threads: int = 0
    """torch CPU threads; 0 = auto: the usable CPUs minus the load already running on them (1-minute load
    average), at least 1 (on a busy machine extra threads stall each other)."""

    @property
    def seed(self) -> int:
        """The run seed (``--seed``, a fit setting)."""
        return self.fit.seed

    def main(self) -> None:
        from geocert_rs_sdf.cmd_train_nerf import run

        run(self)


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Render novel views of a trained RS-SDF NeRF: orbit PNG/GIF(/MP4), test-view PSNR/SSIM, mesh, Chamfer."""

    checkpoint: Path | None = None
    """checkpoint.pt of `geocert train-nerf`. Default: train on the bundled default scene first (with the
    --train.* settings) into OUTPUT/model/, then render."""
    data: Path | None = None
    """Scene folder for the test views and the ground-truth mesh. Default: the scene the checkpoint was
    trained on."""
    output: Path = Path("outputs/render")
    """Output folder: orbit/*.png, orbit.gif (orbit.mp4 when imageio-ffmpeg is installed), test/*.png,
    depth.png, sdf_slice.png, mesh.ply, metrics.json, config.json."""
    orbit_frames: int = 24
    """Frames of the orbit around the scene."""
    orbit_elevation: float = 30.0
    """Elevation of the orbit camera in degrees."""
    width: int = 0
    """Width/height of the orbit frames (0 = the scene's image size)."""
    test_views: int = 0
    """Render this many test views for PSNR/SSIM (0 = all)."""
    mesh_res: int = 128
    """Marching-cubes resolution of the SDF zero-level mesh export."""
    chamfer_points: int = 30000
    """Points sampled uniformly on each mesh (by area) for the Chamfer distance."""
    train: TrainNerfConfig = TrainNerfConfig(output=Path("outputs/render/model"))
    """Training settings, used only when no checkpoint is given (their output is OUTPUT/model; training runs
    with --train.device and --train.threads)."""
    seed: int = 0
    """Seed of the mesh point sampling."""
    device: str = "cpu"
    """Where torch renders: cpu, cuda, cuda:N or auto (CUDA when present, else CPU)."""
    threads: int = 0
    """torch CPU threads; 0 = auto: the usable CPUs minus the load already running on them (1-minute load
    average), at least 1 (on a busy machine extra threads stall each other)."""

    def main(self) -> None:
        from geocert_rs_sdf.cmd_render import run

        run(self)


_TINY = ("--scene-width", "24", "--scene-views", "6", "--grid-res", "16", "--steps", "6", "--rays", "128",
         "--samples", "32", "--color-samples", "4", "--hash-levels", "4", "--hash-log2", "12",
         "--hash-max-res", "32", "--hidden", "16", "--eval-views", "2", "--threads", "1")

SMOKE = {
    "sdf": ("--output", "{out}", "--resolution", "28", "--sigma", "1.0"),
    "train-nerf": ("--output", "{out}", *_TINY),
    "render": ("--output", "{out}", "--orbit-frames", "3", "--test-views", "2", "--mesh-res", "24",
               "--chamfer-points", "500", "--threads", "1",
               *(a.replace("--", "--train.", 1) if a.startswith("--") else a for a in _TINY)),
}
