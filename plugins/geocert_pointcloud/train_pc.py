"""``geocert train-pc``: train the base model f_σ (PointNet + voxel neighbourhood stage by default) under
Gaussian xyz noise and save a checkpoint.

Validates every option, then opens a staged run (a failed or interrupted training leaves nothing in
--output), trains with :func:`geocert_pointcloud.train.train_model` (optionally calibrates), evaluates on the
test split and publishes ``model.pt``, ``metrics.json``, ``config.json`` and ``report.html``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from geocert.errors import InputError, ParameterError

__all__ = ["run", "validate"]


def validate(cfg) -> None:
    """Every option checked before any work; errors name options as typed."""
    from geocert.validate import check_positive_int, check_sigma

    check_sigma(cfg.sigma)
    for name in ("epochs", "batch_size", "width", "num_points", "noise_draws", "calibration_draws"):
        check_positive_int(getattr(cfg, name), name)
    if cfg.voxel_resolution < 2:
        raise ParameterError(f"--voxel-resolution must be >= 2, got {cfg.voxel_resolution}")
    check_positive_int(cfg.voxel_depth, "voxel_depth")
    check_positive_int(cfg.dgcnn_layers, "dgcnn_layers")
    if cfg.knn_k < 2:
        raise ParameterError(f"--knn-k must be >= 2 (the point itself and at least one neighbour), got {cfg.knn_k}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ParameterError(f"--lr must be > 0, got {cfg.lr}")
    if not (math.isfinite(cfg.scale_jitter) and 0 <= cfg.scale_jitter < 1):
        raise ParameterError(f"--scale-jitter must lie in [0, 1), got {cfg.scale_jitter}")
    for name in ("max_train_shapes", "eval_shapes", "train_points"):
        if getattr(cfg, name) < 0:
            raise ParameterError(f"--{name.replace('_', '-')} must be >= 0 (0 = all), got {getattr(cfg, name)}")
    if not (math.isfinite(cfg.rotation_sigma_deg) and cfg.rotation_sigma_deg >= 0):
        raise ParameterError(f"--rotation-sigma-deg must be >= 0, got {cfg.rotation_sigma_deg}")
    if not (math.isfinite(cfg.train_sigma) and cfg.train_sigma >= 0):
        raise ParameterError(f"--train-sigma must be >= 0 (0 = --sigma), got {cfg.train_sigma}")
    if not (math.isfinite(cfg.count_warmup) and 0 <= cfg.count_warmup <= 1):
        raise ParameterError(f"--count-warmup must lie in [0, 1], got {cfg.count_warmup}")
    if not (math.isfinite(cfg.count_temperature) and cfg.count_temperature > 0):
        raise ParameterError(f"--count-temperature must be > 0, got {cfg.count_temperature}")
    if not (math.isfinite(cfg.ema) and 0 <= cfg.ema < 1):
        raise ParameterError(f"--ema must lie in [0, 1), got {cfg.ema}")
    for name in ("consistency", "entropy", "count_loss", "macer", "macer_gamma", "boundary_weight",
                 "boundary_distance"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            raise ParameterError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
    if not (math.isfinite(cfg.calibration_cut) and 0 < cfg.calibration_cut < 1):
        raise ParameterError(f"--calibration-cut must lie in (0, 1), got {cfg.calibration_cut}")


def run(cfg) -> dict:
    from geocert.pipeline import open_run, preflight
    from geocert.pipeline.progress import progress
    from geocert_pointcloud.data import ShapeNetPart, evenly_spaced
    from geocert_pointcloud.model import PRIOR_FEATURES, PointNetPartSeg, save_checkpoint
    from geocert_pointcloud.scenes import default_dataset
    from geocert_pointcloud.train import (
        calibrate_part_biases,
        evaluate_model,
        stack_normals,
        stack_shapes,
        train_model,
    )

    device = preflight(cfg)
    validate(cfg)
    root = Path(cfg.data) if cfg.data is not None else default_dataset()
    ds = ShapeNetPart(root)
    train_items, test_items = ds.items("train"), ds.items("test")
    if not train_items:
        raise InputError(f"{ds.split_file('train')}: no training shapes")
    if not test_items:
        raise InputError(f"{ds.split_file('test')}: no test shapes")
    train_items = [train_items[i] for i in evenly_spaced(cfg.max_train_shapes, len(train_items))]
    test_items = [test_items[i] for i in evenly_spaced(cfg.eval_shapes, len(test_items))]
    load = lambda items, desc: [ds.load(it, num_points=cfg.num_points, seed=cfg.seed)  # noqa: E731
                                for it in progress(items, desc, unit="shapes")]
    train_shapes = load(train_items, "loading train")
    test_shapes = load(test_items, "loading test")
    nrm = stack_normals(train_shapes) if cfg.normals else None
    if cfg.normals:
        stack_normals(test_shapes)  # every test cloud needs normals too: fail before training

    run_ = open_run(cfg, device=device, dataset=str(root))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = PointNetPartSeg(width=cfg.width, in_channels=6 if cfg.normals else 3,
                            spatial_prior=cfg.calibrate if cfg.calibrate in PRIOR_FEATURES else False,
                            arch=cfg.arch, global_pool=cfg.global_pool,
                            voxel_resolution=cfg.voxel_resolution, voxel_depth=cfg.voxel_depth,
                            knn_k=cfg.knn_k, dgcnn_layers=cfg.dgcnn_layers)
    pts, lab, cat = stack_shapes(train_shapes)
    t0 = time.perf_counter()
    losses = train_model(model, pts, lab, cat, sigma=cfg.train_sigma or cfg.sigma, epochs=cfg.epochs, batch_size=cfg.batch_size,
                         lr=cfg.lr, generator=gen, rotation_sigma=math.radians(cfg.rotation_sigma_deg),
                         train_points=cfg.train_points, normals=nrm, noise_draws=cfg.noise_draws,
                         consistency=cfg.consistency, entropy=cfg.entropy, count=cfg.count_loss,
                         cut=cfg.calibration_cut, scale_jitter=cfg.scale_jitter, macer=cfg.macer,
                         macer_gamma=cfg.macer_gamma, device=run_.device, ema=cfg.ema,
                         boundary_weight=cfg.boundary_weight, boundary_distance=cfg.boundary_distance,
                         count_warmup=cfg.count_warmup, count_temperature=cfg.count_temperature)
    biases = None
    if cfg.calibrate != "off":
        biases = calibrate_part_biases(model, pts, lab, cat, sigma=cfg.sigma, draws=cfg.calibration_draws,
                                       cut=cfg.calibration_cut, generator=gen, normals=nrm,
                                       linear=cfg.calibrate in ("linear", "quadratic"))
    train_s = time.perf_counter() - t0
    eval_metrics = evaluate_model(model, test_shapes, sigma=cfg.sigma, use_normals=cfg.normals,
                                  generator=torch.Generator().manual_seed(cfg.seed + 1))
    metrics = {
        "dataset": str(root),
        "num_train_shapes": len(train_shapes),
        "num_test_shapes": len(test_shapes),
        "categories": ds.categories,
        "sigma": cfg.sigma,
        "train_seconds": train_s,
        "final_loss": losses[-1] if losses else None,
        "part_biases": biases,
        "loss_per_epoch": losses,
        "test": eval_metrics,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    save_checkpoint(run_.path("model.pt"), model, sigma=cfg.sigma, num_points=cfg.num_points,
                    categories=ds.categories,
                    train_config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
                    metrics=metrics, rotation_sigma_deg=cfg.rotation_sigma_deg)
    out = run_.finish(metrics)
    t, n = eval_metrics["noisy"], eval_metrics["clean"]
    print(f"train-pc: {len(train_shapes)} shapes, {cfg.epochs} epochs in {train_s:.1f}s; test (σ={cfg.sigma}) "
          f"acc {t['accuracy']:.3f} instance mIoU {t['instance_miou']:.3f} class mIoU {t['class_miou']:.3f}; "
          f"clean acc {n['accuracy']:.3f} instance mIoU {n['instance_miou']:.3f} → {out / 'model.pt'}")
    return metrics
