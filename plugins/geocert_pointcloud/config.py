"""Command configs of the ``pointcloud`` plugin (light: no torch/numpy imports here)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import tyro

from geocert.pipeline.options import CertifyOptions

__all__ = ["TrainPcConfig", "CertifyPcConfig", "PLUGIN_NAME", "PLUGIN_VERSION"]

PLUGIN_NAME = "pointcloud"
PLUGIN_VERSION = "0.1.0"


@dataclasses.dataclass(frozen=True)
class TrainPcConfig:
    """Train a part-segmentation base model f_σ (PointNet with a voxel neighbourhood stage, or plain PointNet)
    with Gaussian noise of σ on xyz (ShapeNet-part)."""

    data: tyro.conf.Positional[Path | None] = None
    """ShapeNet-part folder (shapenetcore_partanno_segmentation_benchmark_v0_normal layout). Default: the
    bundled procedural dataset, generated into $GEOCERT_CACHE (or ~/.cache/geocert) on first use."""
    output: Path = Path("outputs/train-pc")
    """Output folder: model.pt (checkpoint with its config), metrics.json, config.json."""
    sigma: float = 0.25
    """Std of the Gaussian noise added to every xyz coordinate during training (unit-sphere units)."""
    train_sigma: float = 0.0
    """Std of the training noise when it differs from --sigma (0 = --sigma); the checkpoint, its calibration
    and certify-pc use --sigma."""
    epochs: int = 60
    """Training epochs over the train split."""
    batch_size: int = 8
    """Clouds per optimisation step."""
    lr: float = 3e-3
    """Adam learning rate (cosine-decayed to 5% over the run)."""
    arch: Literal["pointnet", "voxel", "dgcnn"] = "voxel"
    """Base network: `pointnet` (each point's own features plus a max-pooled global feature), `voxel`
    (PointNet with a local neighbourhood stage: first-layer features averaged in the cells of a
    --voxel-resolution³ grid with each cell's point density, a 3×3×3 convolution, read back at each point) or
    `dgcnn` (DGCNN-style: an edge convolution over each point's --knn-k nearest neighbours in xyz, then
    --dgcnn-layers − 1 over its nearest in feature space, max over the neighbours, before PointNet's global
    feature and head; the neighbours are drawn from a pseudo-random subset of 256 of the cloud's points, so
    training with --train-points 256 or more transfers to whole clouds; several times the inference time of
    `voxel`)."""
    voxel_resolution: int = 8
    """Grid cells per axis of --arch voxel's neighbourhood stage (over [-1.5, 1.5]³)."""
    voxel_depth: int = 1
    """3×3×3 convolutions of --arch voxel's neighbourhood stage (each widens it by one cell)."""
    knn_k: int = 16
    """Neighbours per point (itself included) of --arch dgcnn's edge convolutions."""
    dgcnn_layers: int = 2
    """Edge convolutions of --arch dgcnn (the first on xyz neighbourhoods, the others in feature space; 3
    scored the same as 2 on the stand-in and trains in ~40 % more time: docs/pointcloud.md)."""
    global_pool: Literal["max", "max+mean"] = "max"
    """Per-cloud feature of the network: PointNet's max over the points, or that and the mean over them
    (`max+mean`; a mean over noisy points averages the noise out, a max picks the noisiest)."""
    width: int = 32
    """PointNet width w: encoder 3→w→w→2w→4w, head →2w→w→parts."""
    num_points: int = 2048
    """Points per cloud (each cloud is resampled to this many)."""
    train_points: int = 512
    """Random subset of each cloud's points used per training step (0 = all num-points); fewer is faster and
    PointNet's per-point head and max-pooled feature transfer to the full cloud."""
    max_train_shapes: int = 0
    """Use at most this many training shapes, evenly spaced over the split (0 = all)."""
    eval_shapes: int = 0
    """Evaluate on this many test shapes, evenly spaced (0 = all)."""
    normals: bool = False
    """Also feed each point's unit normal (columns nx ny nz) to the network. The noise (and so the
    certificate) covers the xyz coordinates only: the normals are taken as given, unperturbed."""
    rotation_sigma_deg: float = 0.0
    """Also rotate each training cloud about the up axis by N(0, this²) degrees (for rotation smoothing)."""
    scale_jitter: float = 0.2
    """Also scale each training cloud by U(1 − s, 1 + s) independently per axis (augmentation)."""
    noise_draws: int = 4
    """Independent noisy copies of each cloud per step (the consistency terms compare them)."""
    consistency: float = 0.0
    """Weight λ of the consistency loss KL(p̄ ‖ p_k) between the noisy copies' predictions and their mean."""
    entropy: float = 0.0
    """Weight η of the entropy H(p̄) of the copies' mean prediction (sharpens it)."""
    count_loss: float = 5.0
    """Weight of a soft count of the points whose mean probability of the true part over the noisy copies
    exceeds --calibration-cut (rewards what certification counts; gives up points far below the cut)."""
    count_warmup: float = 0.0
    """Raise the --count-loss weight linearly from 0 over this fraction of the training steps (0 = full weight
    from the start)."""
    count_temperature: float = 1.0
    """Temperature T of the --count-loss probabilities (softmax of logits / T; T < 1 brings them nearer the
    argmax votes that certification counts)."""
    macer: float = 0.0
    """Weight of MACER's margin loss on the soft smoothed classifier p̄ (mean softmax over the noisy copies):
    max(0, γ − (Φ⁻¹(p̄_true) − Φ⁻¹(p̄_runner-up))) over the points p̄ classifies right."""
    macer_gamma: float = 2.0
    """γ of --macer (in units of Φ⁻¹; Φ⁻¹(0.82) − Φ⁻¹(0.18) ≈ 1.83)."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights (and BatchNorm statistics) over the training
    steps; the model is that average (0 = off: the last step's weights)."""
    boundary_weight: float = 1.0
    """Weight of the cross-entropy of the points closer than --boundary-distance to another part of the clean
    cloud (1 = like every point)."""
    boundary_distance: float = 0.2
    """See --boundary-weight (unit-sphere units)."""
    calibrate: Literal["off", "bias", "linear", "quadratic"] = "linear"
    """After training, tune per part a logit bias (`bias`), or an affine function of the point's own noisy
    xyz (`linear`; `quadratic`: of x, y, z, their squares and pairwise products), on the training shapes so
    that as many points as possible get a vote fraction above --calibration-cut under σ-noise (class-prior calibration of the smoothed decision; docs/pointcloud.md)."""
    calibration_draws: int = 64
    """Noise draws per training shape for --calibrate."""
    calibration_cut: float = 0.82
    """Vote fraction a point needs to count for --calibrate (≈ what certify-pc's defaults need: τ = 0.75,
    n = 1000, α = 0.001, Holm over 2048 points)."""
    seed: int = 0
    """Seed of initialisation, shuffling and noise (runs are reproducible)."""
    threads: int = 1
    """torch CPU threads (0 = auto: free cores; 1 is fastest on a shared machine)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto (CUDA when present): where the network trains (calibration and evaluation
    run on the CPU)."""

    def main(self) -> None:
        from geocert_pointcloud.train_pc import run

        run(self)


@dataclasses.dataclass(frozen=True)
class CertifyPcConfig(CertifyOptions):
    """Certify every point of a cloud or of a dataset split (SegCertify): certified part or abstain.

    The certification options (σ, n0, n, τ, α, correction, k, seed, device, executor...) are the core's
    CertifyOptions; σ is in unit-sphere units (mode xyz)."""

    data: tyro.conf.Positional[Path | None] = None
    """A ShapeNet-part folder, or one cloud file (.txt x y z [nx ny nz] [part], .ply, .npy). Default: the
    bundled procedural dataset."""
    model: Annotated[str, tyro.conf.arg(aliases=("--checkpoint",), metavar="PATH|MODULE:FACTORY|auto")] = (
        "outputs/train-pc/model.pt")
    """The base model: a `geocert train-pc` checkpoint, a TorchScript file, or `package.module:factory` (a
    Python callable returning the model); `auto`: the default model, trained once into the cache. A user's
    model takes points [B, N, 3] (centred, in the unit sphere; [B, N, 6] with --normals) and returns logits
    [B, N, 50] over ShapeNet's global part ids, [B, N, P] over the P parts of --category, or part ids [B, N]."""
    normals: bool = False
    """A user's model (TorchScript / factory) also takes each point's unit normal: input [B, N, 6]; the noise
    covers xyz only (train-pc checkpoints say themselves whether they take normals)."""
    output: Path = Path("outputs/certify-pc")
    """Output folder: metrics.json, results.jsonl, shapes/*.npz, ply/*.ply, plots, config.json."""
    split: Literal["train", "val", "test"] = "test"
    """Dataset split to certify (dataset folders only)."""
    num_shapes: int = 16
    """Certify this many shapes of the split, evenly spaced over it sorted by category and name (0 = all)."""
    category: str | None = None
    """Restrict to one category (e.g. Chair); for a single unlabelled file, the category of the shape."""
    mode: Literal["xyz", "rotation"] = "xyz"
    """xyz: Gaussian noise on every coordinate (ℓ2 radius); rotation: Gaussian noise on the rotation angle
    about the up (y) axis (angle radius)."""
    angle_sigma_deg: float = 10.0
    """Noise std of the rotation angle in degrees (mode rotation)."""
    batch_size: int = 100
    """Noisy clouds per forward pass."""
    num_points: int = 2048
    """Points per cloud (resampled)."""
    save_ply: bool = True
    """Write ply/<shape>.ply coloured by certified part (abstentions white)."""

    def main(self) -> None:
        from geocert_pointcloud.certify_pc import run

        run(self)
