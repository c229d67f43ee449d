"""``train-seg`` and ``train-denoiser``, and the cached default models used when no model is given."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from geocert.errors import InputError, ParameterError
from geocert.io import atomic_directory
from geocert.validate import check_positive_int
from geocert_imageseg.config import PLUGIN_NAME, PLUGIN_VERSION

__all__ = ["run_train_seg", "run_train_denoiser", "default_segmenter", "default_unet_denoiser", "resolve_data"]

DEFAULT_EPOCHS = 15
DEFAULT_DENOISER_EPOCHS = 40


def _check_nonneg(value: float, name: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ParameterError(f"{name} must be a finite number >= 0, got {value}")
    return v


def resolve_data(path: Path | None) -> Path:
    """The data-set root: the given folder, or the default synthetic X-ray set (generated once, cached)."""
    from geocert_imageseg.scenes import default_dataset

    if path is None:
        return default_dataset("xray")
    if not Path(path).is_dir():
        raise InputError(f"{path}: data-set folder not found")
    return Path(path)


def _check_train_common(cfg) -> None:
    check_positive_int(cfg.epochs, "epochs")
    check_positive_int(cfg.batch_size, "batch_size")
    check_positive_int(cfg.width, "width")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ParameterError(f"lr must be > 0, got {cfg.lr}")


def run_train_seg(cfg) -> None:
    from geocert.io import write_config, write_json
    from geocert_imageseg.models import save_checkpoint
    from geocert_imageseg.train import evaluate_segmenter, load_split, train_segmenter

    torch.set_num_threads(min(torch.get_num_threads(), int(os.environ.get("GEOCERT_THREADS", "2"))))
    from geocert_imageseg.certify_seg import resolve_device

    sigma = _check_nonneg(cfg.noise_sigma, "noise_sigma")
    _check_train_common(cfg)
    device = resolve_device(cfg.device)
    check_positive_int(cfg.depth, "depth")
    root = resolve_data(cfg.data)
    load_split(root, "train")  # validates every training pair before anything is written
    model, meta = train_segmenter(root, noise_sigma=sigma, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                  width=cfg.width, depth=cfg.depth, seed=cfg.seed, progress=cfg.progress,
                                  device=device)
    out = Path(cfg.output)
    metrics = {"train_s": meta["train_s"], "loss_history": meta["loss_history"], "data": str(root)}
    try:
        timgs, tmasks, names, _ = load_split(root, "test")
    except InputError:  # no (usable) test split: skip the test scores
        timgs = None
    if timgs is not None and timgs.shape[1] == meta["in_channels"]:
        metrics["test_clean"] = evaluate_segmenter(model, timgs, tmasks, meta["num_classes"],
                                                     class_names=names)
        if sigma > 0:
            metrics["test_noisy"] = evaluate_segmenter(model, timgs, tmasks, meta["num_classes"], sigma=sigma,
                                                       seed=cfg.seed, class_names=names)
    save_checkpoint(out / "model.pt", model, meta)
    write_config(out, cfg, plugin=PLUGIN_NAME, plugin_version=PLUGIN_VERSION, seed=cfg.seed)
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'model.pt'} (trained {meta['train_s']:.1f} s, final loss {meta['loss_history'][-1]:.4f})")


def run_train_denoiser(cfg) -> None:
    from geocert.io import write_config, write_json
    from geocert.validate import check_sigma
    from geocert_imageseg.models import save_checkpoint
    from geocert_imageseg.train import load_split, train_ddpm, train_unet_denoiser

    torch.set_num_threads(min(torch.get_num_threads(), int(os.environ.get("GEOCERT_THREADS", "2"))))
    smin, smax = check_sigma(cfg.sigma_min, "sigma_min"), check_sigma(cfg.sigma_max, "sigma_max")
    if smin > smax:
        raise ParameterError(f"sigma_min must be <= sigma_max, got {smin} > {smax}")
    _check_train_common(cfg)
    from geocert_imageseg.certify_seg import resolve_device

    device = resolve_device(cfg.device)
    root = resolve_data(cfg.data)
    load_split(root, "train")
    out = Path(cfg.output)
    if cfg.kind == "unet":
        model, meta = train_unet_denoiser(root, sigma_min=smin, sigma_max=smax, epochs=cfg.epochs,
                                          batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.width, seed=cfg.seed,
                                          progress=cfg.progress, device=device)
        save_checkpoint(out / "denoiser.pt", model, meta)
        target = out / "denoiser.pt"
    else:
        with atomic_directory(out / "ddpm") as tmp:
            _, meta = train_ddpm(root, tmp, sigma_min=smin, sigma_max=smax, epochs=cfg.epochs,
                                 batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.width, seed=cfg.seed,
                                 progress=cfg.progress, device=device)
        target = out / "ddpm"
    write_config(out, cfg, plugin=PLUGIN_NAME, plugin_version=PLUGIN_VERSION, seed=cfg.seed)
    write_json(out / "metrics.json", {"train_s": meta["train_s"], "loss_history": meta["loss_history"],
                                      "data": str(root)})
    print(f"wrote {target} (trained {meta['train_s']:.1f} s, final loss {meta['loss_history'][-1]:.5f})")


def _models_dir() -> Path:
    from geocert_imageseg.scenes import cache_dir

    return cache_dir() / "models"


def default_segmenter(noise_sigma: float = 0.25, progress: bool = True) -> Path:
    """The default base model (U-Net on the default X-ray set, trained with noise σ), trained once and cached."""
    from geocert_imageseg.models import save_checkpoint
    from geocert_imageseg.train import train_segmenter

    path = _models_dir() / f"seg_xray64_sigma{noise_sigma:g}_e{DEFAULT_EPOCHS}.pt"
    if not path.is_file():
        print(f"training the default segmentation model once (cached at {path}) ...")
        model, meta = train_segmenter(resolve_data(None), noise_sigma=noise_sigma, epochs=DEFAULT_EPOCHS,
                                      progress=progress)
        save_checkpoint(path, model, meta)
    return path


def default_unet_denoiser(progress: bool = True) -> Path:
    """The default σ-conditioned U-Net denoiser (σ ∈ [0.1, 1]) on the default X-ray set, cached."""
    from geocert_imageseg.models import save_checkpoint
    from geocert_imageseg.train import train_unet_denoiser

    path = _models_dir() / f"denoiser_xray64_e{DEFAULT_DENOISER_EPOCHS}.pt"
    if not path.is_file():
        print(f"training the default denoiser once (cached at {path}) ...")
        model, meta = train_unet_denoiser(resolve_data(None), sigma_min=0.1, sigma_max=1.0,
                                          epochs=DEFAULT_DENOISER_EPOCHS,
                                          progress=progress)
        save_checkpoint(path, model, meta)
    return path
