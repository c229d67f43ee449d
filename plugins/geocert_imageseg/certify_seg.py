"""``geocert certify-seg``: per-pixel certification of a segmentation model (SegCertify), optionally behind a
denoiser (denoised smoothing).

The command validates its options and ``--output`` (before any work), resolves the data, the model and the
denoiser, checks every image and mask and the model's output contract, opens the run (only then: ``--overwrite``
empties a dataset folder for a run whose inputs passed their checks) and hands the images to the core: a data-set folder is a resumable :func:`geocert.pipeline.certify_dataset` run of
:class:`~geocert_imageseg.adapter.SegTask` (``labels/NAME.png`` per image, ``results.jsonl``, pooled
metrics and the standard plots); a single image is the same certification of one item
(:func:`geocert.pipeline.dataset.run_item_checked`) with ``labels.png``, ``labels.npy`` and ``comparison.png``,
staged so that a failure leaves nothing in ``--output``. Each image's noise seed is
:func:`geocert.pipeline.item_seed` (run seed, file stem).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from geocert.errors import InputError, ParameterError
from geocert.pipeline.dataset import CertifySettings
from geocert.pipeline.models import model_identity
from geocert_imageseg.config import CertifySegConfig

__all__ = ["run", "settings_from", "RADIUS_UNIT"]

RADIUS_UNIT = "ℓ2 radius (intensities in [0, 1])"


def settings_from(cfg: CertifySegConfig) -> CertifySettings:
    """The core's certification settings from the command's options (validated; errors name the options)."""
    from geocert.validate import check_positive_int, check_sigma

    check_sigma(cfg.sigma, "--sigma")
    check_positive_int(cfg.batch_size, "--batch-size")
    check_positive_int(cfg.denoise_steps, "--denoise-steps")
    for value, name in ((cfg.max_images, "--max-images"), (cfg.num_classes, "--num-classes")):
        if value is not None:
            check_positive_int(value, name)
    return cfg.certify_settings(radius_unit=RADIUS_UNIT)


def _images(source: Path, mask: Path | None, max_images: int | None) -> tuple[list[tuple[str, str, str | None]],
                                                                           list[str] | None]:
    """(name, image, mask) triples and class names of a data-set folder's test split or of one image."""
    from geocert_imageseg.data import find_pairs, read_class_names, split_folder

    if not source.is_dir():
        return [(source.stem, str(source), str(mask) if mask is not None else None)], None
    if mask is not None:
        raise ParameterError("--mask is for a single image; a data-set folder takes its masks from masks/")
    folder = split_folder(source, "test")
    pairs = find_pairs(folder, require_masks=False)[:max_images]
    return [(ip.stem, str(ip), str(mp) if mp is not None else None) for ip, mp in pairs], read_class_names(folder)


def _check_denoiser(den: Any, info: dict, sigma: float) -> dict:
    """σ against the denoiser: beyond a diffusion schedule is an error (else t* is recorded), outside a U-Net
    denoiser's training range a warning."""
    from geocert_imageseg.denoise import DiffusionDenoiser

    info = dict(info)
    if isinstance(den, DiffusionDenoiser):
        den.check_sigma(sigma)
        info["t_star"] = den.timestep(sigma)
        a = float(den.alphas_cumprod[info["t_star"]])
        info["sigma_at_t_star"] = ((1 - a) / a) ** 0.5 / 2  # the σ ([0, 1] units) the grid point t* matches
    elif info.get("sigma_min") is not None and not info["sigma_min"] <= sigma <= info["sigma_max"]:
        print(f"geocert certify-seg: warning: --sigma {sigma} is outside the denoiser's training range "
              f"[{info['sigma_min']}, {info['sigma_max']}]", file=sys.stderr)
    return info


def run(cfg: CertifySegConfig) -> dict:
    """Certify one image or a data-set folder (see the module docstring); returns the metrics."""
    from geocert.certify import check_tau_reachable
    from geocert.pipeline import apply_threads, executor_from, open_run, preflight
    from geocert_imageseg.adapter import SegTask, probe_num_classes
    from geocert_imageseg.data import convert_channels, load_image, load_mask

    settings = settings_from(cfg)
    executor = executor_from(cfg)
    # --output, --threads and --device are checked before any work; the run itself is opened once the inputs
    # are known to be good, so that --overwrite never empties a folder for a run that then fails its checks
    device = preflight(cfg)
    apply_threads(cfg.threads)  # also for training a default model
    if cfg.image is not None and not Path(cfg.image).exists():
        raise InputError(f"{cfg.image}: file or folder not found")
    dataset_mode = cfg.image is None or Path(cfg.image).is_dir()
    plain = cfg.denoiser in ("none", "")
    train_sigma = 0.25 if plain else 0.0  # default model: SegCertify's noisy U-Net, or a clean one behind a denoiser
    identity = {
        "model": cfg.model or f"default U-Net (noise σ={train_sigma:g})", "model_sha256": model_identity(cfg.model),
        "denoiser": None if plain else cfg.denoiser, "denoiser_sha256": None if plain else model_identity(cfg.denoiser),
        "denoise_steps": cfg.denoise_steps, "device": str(device),
    }

    # ---- data, model and denoiser (default ones are made once and cached)
    from geocert_imageseg.scenes import default_dataset
    from geocert_imageseg.train import default_segmenter, default_unet_denoiser

    source = Path(cfg.image) if cfg.image is not None else default_dataset("xray")
    images, class_names = _images(source, cfg.mask, cfg.max_images)
    model_spec = cfg.model or str(default_segmenter(train_sigma, progress=cfg.progress))
    den_spec = None if plain else str(default_unet_denoiser(progress=cfg.progress)) if cfg.denoiser == "unet" \
        else cfg.denoiser
    task = SegTask(images=images, model=model_spec, sigma=settings.sigma, denoiser=den_spec,
                   denoise_steps=cfg.denoise_steps, identity=identity)
    loaded, den, den_info = task.load_parts(device)
    first = load_image(images[0][1])
    task.model_channels = loaded.meta.get("in_channels", int(first.shape[0]))
    probe = convert_channels(first, task.model_channels).to(device)
    task.num_classes = probe_num_classes(loaded.model, probe, num_classes=cfg.num_classes, source=model_spec)
    names = loaded.meta.get("class_names") or class_names
    task.class_names = names if names is not None and len(names) == task.num_classes else None
    den_info = _check_denoiser(den, den_info, settings.sigma)

    # ---- every image and mask is checked before the first certificate
    for _, ip, mp in images:
        x = load_image(ip)
        if x.shape[0] not in (1, 3):
            raise InputError(f"{ip}: unsupported channel count {x.shape[0]}")
        if mp is not None:
            load_mask(mp, task.num_classes, shape=tuple(x.shape[-2:]))
        task.max_pixels = max(task.max_pixels or 0, int(x.shape[-2] * x.shape[-1]))
    check_tau_reachable(settings.tau, settings.n, settings.alpha, task.max_pixels, settings.correction, settings.k)
    run_ = open_run(cfg, resumable=dataset_mode, result_key={**settings.key(), **identity} if dataset_mode else None)
    run_.update_extra(model=model_spec, model_kind=loaded.kind, model_train_sigma=loaded.meta.get("train_sigma"),
                      num_classes=task.num_classes, class_names=task.class_names, denoiser=den_info,
                      pixel_units="[0, 1]", data=str(source))

    if dataset_mode:
        from geocert.pipeline import certify_dataset

        metrics = certify_dataset(run_, task, settings, executor=executor, progress=cfg.progress)
        metrics["denoiser"] = den_info
        run_.finish(metrics)
        _print_summary(metrics.get("pooled", metrics), run_.output,
                       title=f"{metrics['num_items']} images (pooled over pixels)")
    else:
        metrics = _certify_single(run_, task, settings, progress=cfg.progress)
        metrics["denoiser"] = den_info
        run_.finish(metrics)
        _print_summary(metrics, run_.output)
    return metrics


def _certify_single(run_: Any, task: Any, settings: CertifySettings, *, progress: bool) -> dict:
    """One image through the core's item certification; writes the single-image files and the plots."""
    from geocert.io import atomic_write
    from geocert.pipeline.dataset import run_item_checked, summarize_items
    from geocert.pipeline.plots import write_standard_plots
    from geocert_imageseg.adapter import colour_labels
    from geocert_imageseg.data import convert_channels

    name, image, mask = task.images[0]
    res = run_item_checked(task, task.load_model(run_.device), name, settings, run_.device, progress=progress)
    metrics = summarize_items(settings, [res.record], [res.arrays], num_classes=task.num_classes)
    task.summarize(metrics, [res.record], [res.arrays])
    metrics.update(metrics.pop("pooled", {}))
    metrics.pop("per_image_mean", None)  # one image: the pooled scores are its own
    metrics.setdefault("abstain_pct", 100.0 * metrics["abstain_rate"])
    metrics.update(image=image, num_classes=task.num_classes, class_names=task.class_names)
    labels = res.arrays["certified"]
    k = task.num_classes
    run_.save_image("labels.png", colour_labels(labels, k))
    with atomic_write(run_.path("labels.npy"), "wb") as fh:  # never a half-written labels.npy
        np.save(fh, labels.astype(np.int16))
    x = task.load_item(name).x
    rgb = convert_channels(x, 3) if x.shape[0] in (1, 3) else x[:3]
    panels = [(rgb.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)]
    if mask is not None:
        panels.append(colour_labels(res.arrays["target"], k))
    panels.append(colour_labels(labels, k))
    panel = np.concatenate(panels, axis=1)
    scale = max(1, 256 // panel.shape[0])  # small images: nearest-neighbour upscaling for viewing
    run_.save_image("comparison.png", panel.repeat(scale, axis=0).repeat(scale, axis=1))
    write_standard_plots(run_, metrics, unit=RADIUS_UNIT, what="pixel")
    return metrics


def _print_summary(summary: dict, out: Path, title: str | None = None) -> None:
    lines = [title] if title else []
    if summary.get("certified_pixel_accuracy") is not None:
        lines.append(f"certified pixel accuracy {summary['certified_pixel_accuracy']:.4f}   "
                     f"abstain {summary['abstain_pct']:.2f}%   mean Dice {summary['mean_dice']:.4f}   "
                     f"mIoU {summary['mean_iou']:.4f}")
        for nm, m in summary["per_class"].items():
            fmt = lambda v, p="{:.4f}": "  n/a " if v is None else p.format(v)  # noqa: E731
            lines.append(f"  {nm:<14} Dice {fmt(m['dice'])}  IoU {fmt(m['iou'])}  "
                         f"abstain {fmt(m['abstain_pct'], '{:.2f}')}%")
    elif summary.get("abstain_rate") is not None:
        lines.append(f"abstain {100 * summary['abstain_rate']:.2f}% (no ground-truth mask: no accuracy metrics)")
    lines.append(f"outputs in {out}")
    print("\n".join(lines))
