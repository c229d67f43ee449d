"""Command configs of the imageseg plugin (light: no torch / numpy imports here).

Pixel convention for every command: images are read into [0, 1] (uint8 / 255), and σ is the standard
deviation of Gaussian noise added to those intensities (σ = 0.25 is a quarter of the full intensity range; any
σ > 0 is allowed). A diffusion denoiser works in [−1, 1], where the same noise is 2σ.

Each config's ``main()`` imports its command module (``certify_seg``, ``train_seg``, ``train_denoiser``); those
modules never import this package's ``__init__`` (the run layer finds the plugin in the registry).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Annotated, Literal

import tyro

from geocert.pipeline.options import CertifyOptions

__all__ = ["CertifySegConfig", "TrainSegConfig", "TrainDenoiserConfig", "TrainOptions", "PLUGIN_NAME",
           "PLUGIN_VERSION"]

PLUGIN_NAME = "imageseg"
PLUGIN_VERSION = "0.2.0"


@dataclasses.dataclass(frozen=True)
class CertifySegConfig(CertifyOptions):
    """Certify a segmentation model pixel by pixel (SegCertify), optionally with denoised smoothing.

    IMAGE is an image file (with --mask for metrics) or a data-set folder (images/ + masks/, or a root with
    test/images/): dataset mode certifies every image, resumably, and plots certified accuracy vs radius.
    With no IMAGE, the default synthetic chest X-ray set is generated into the cache and its test split used.
    The certification options (σ, n0, n, τ, α, correction, k, batch size, seed, device, threads, executor) are
    the core's (geocert.pipeline.options.CertifyOptions); imageseg changes some defaults.
    """

    image: tyro.conf.Positional[Annotated[pathlib.Path | None, tyro.conf.arg(metavar="[IMAGE]")]] = None
    """Image file (PNG/JPEG/TIFF/.npy; values mapped to [0, 1]) or data-set folder. Default: synthetic X-rays."""
    mask: Annotated[pathlib.Path | None, tyro.conf.arg(metavar="PATH")] = None
    """Ground-truth mask (single-channel class indices) for a single image; enables metrics.json scores."""
    model: Annotated[str | None, tyro.conf.arg(metavar="PATH|MODULE:FACTORY")] = None
    """Segmentation base model: a `geocert train-seg` checkpoint (model.pt), a TorchScript file, or
    package.module:factory (a callable returning the model). It maps [B, C, H, W] images in [0, 1] to logits
    [B, K, H, W] or integer labels [B, H, W]. Default: a U-Net trained on the default data (trained once and
    cached) with noise σ=0.25, or without noise when a denoiser is used."""
    num_classes: Annotated[int | None, tyro.conf.arg(metavar="INT")] = None
    """Number of classes K (needed only for a model returning labels instead of logits)."""
    sigma: float = 0.25
    """Noise level σ > 0: the standard deviation of the Gaussian noise added to pixel intensities scaled to
    [0, 1] (0.25 = a quarter of the intensity range; σ > 1 is allowed but drowns the image)."""
    n: int = 100
    """Estimation samples (test each pixel's top class), drawn independently of the n0."""
    tau: float = 0.75
    """Threshold τ ∈ [0.5, 1): a pixel is certified when its top-class probability provably exceeds τ; the
    certified ℓ2 radius is R = σ·Φ⁻¹(τ) (in the same [0, 1] intensity units)."""
    alpha: float = 0.001
    """Family-wise error level α over all pixels of an image."""
    k: int = 1
    """k-FWER control: allow up to k−1 false certificates per image (k = 1 is ordinary FWER)."""
    curve_taus: tuple[float, ...] = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
    """Thresholds of the certified-accuracy-vs-radius and Bonferroni-vs-Holm plots (same samples)."""
    denoiser: str = "none"
    """Denoised smoothing: 'none'; 'unet' (the default small σ-conditioned denoiser, trained once and cached);
    a `train-denoiser --kind unet` checkpoint file; or a local diffusers folder (UNet2DModel + scheduler
    config), loaded offline."""
    denoise_steps: int = 1
    """Diffusion denoising steps from t* to 0 (1 = one-step x̂₀ prediction; >1 = deterministic DDIM)."""
    batch_size: int = 20
    """Noisy images per forward pass."""
    seed: int = 0
    """Run seed; each image's noise seed is derived from it and the image's name (file stem)."""
    device: str = "cpu"
    """Torch device for sampling and the models: cpu, cuda, cuda:N, or auto (cuda when available).
    The noise stream depends on the device, so labels are reproducible per device."""
    threads: int = 0
    """CPU threads for torch; 0 = auto (the CPUs not busy now)."""
    max_images: Annotated[int | None, tyro.conf.arg(metavar="INT")] = None
    """Dataset mode: certify at most this many images (sorted by name)."""
    output: pathlib.Path = pathlib.Path("outputs/certify-seg")
    """Output folder: labels PNG(s), metrics.json, config.json, results.jsonl and the radius plots."""
    overwrite: bool = False
    """Dataset mode: empty an --output holding results of a different configuration instead of refusing."""
    progress: bool = True
    """Show progress on stderr (a bar on a terminal, plain lines in a log)."""

    def main(self) -> None:
        from geocert_imageseg.certify_seg import run

        run(self)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The options both training commands share (each command adds its data, model and output fields)."""

    epochs: int = 15
    """Passes over the training images."""
    batch_size: int = 8
    """Images per optimisation step."""
    lr: float = 3e-3
    """Peak learning rate (AdamW, one-cycle schedule)."""
    width: int = 16
    """Base channel width of the U-Net (level i has width·2^i channels)."""
    seed: int = 0
    """Seed for initialisation, batching and noise."""
    device: str = "cpu"
    """Torch device for training: cpu, cuda, cuda:N, or auto (cuda when available)."""
    threads: int = 0
    """CPU threads for torch; 0 = auto (the CPUs not busy now)."""
    progress: bool = True
    """Show progress on stderr (a bar on a terminal, plain lines in a log)."""

    def check_training(self) -> None:
        """One-line errors naming the options as typed (device and threads are checked by the run layer)."""
        import math

        from geocert.errors import ParameterError
        from geocert.validate import check_positive_int

        check_positive_int(self.epochs, "--epochs")
        check_positive_int(self.batch_size, "--batch-size")
        check_positive_int(self.width, "--width")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ParameterError(f"--lr must be a finite number > 0, got {self.lr}")


@dataclasses.dataclass(frozen=True)
class TrainSegConfig(TrainOptions):
    """Train the built-in small U-Net segmentation model.

    With --noise-sigma σ > 0 every training image gets fresh N(0, σ²I) noise (the SegCertify base model); with
    --noise-sigma 0 it is trained on clean images (the base model for denoised smoothing).
    """

    data: tyro.conf.Positional[Annotated[pathlib.Path | None, tyro.conf.arg(metavar="[DATA]")]] = None
    """Data-set folder (images/ + masks/, or a root with train/ and test/). Default: synthetic X-rays."""
    noise_sigma: float = 0.25
    """Std of the Gaussian noise added to pixel intensities scaled to [0, 1] during training (0 = no noise)."""
    depth: int = 2
    """U-Net down-sampling levels (each halves the image; the deepest level must keep at least 2×2 pixels)."""
    output: pathlib.Path = pathlib.Path("outputs/train-seg")
    """Output folder: model.pt, config.json, metrics.json (loss history; clean and noisy test Dice)."""

    def main(self) -> None:
        from geocert_imageseg.train_seg import run

        run(self)


@dataclasses.dataclass(frozen=True)
class TrainDenoiserConfig(TrainOptions):
    """Train a denoiser for denoised smoothing on a data set's clean training images.

    --kind unet: a σ-conditioned U-Net (denoiser.pt). --kind ddpm: a small diffusers DDPM (ε-prediction,
    linear schedule, timesteps restricted to the σ range) saved as a diffusers folder (ddpm/) — the same
    format as an off-the-shelf checkpoint.
    """

    data: tyro.conf.Positional[Annotated[pathlib.Path | None, tyro.conf.arg(metavar="[DATA]")]] = None
    """Data-set folder (images/, or a root with train/images/). Default: synthetic X-rays."""
    kind: Literal["unet", "ddpm"] = "unet"
    """Denoiser type."""
    sigma_min: float = 0.1
    """Smallest training noise σ (std on pixel intensities scaled to [0, 1])."""
    sigma_max: float = 1.0
    """Largest training noise σ (std on pixel intensities scaled to [0, 1])."""
    epochs: int = 40
    """Passes over the training images."""
    output: pathlib.Path = pathlib.Path("outputs/train-denoiser")
    """Output folder: denoiser.pt (unet) or ddpm/ (diffusers folder), config.json, metrics.json."""

    def main(self) -> None:
        from geocert_imageseg.train_denoiser import run

        run(self)
