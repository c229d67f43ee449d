"""``geocert train-seg``: train the built-in U-Net segmentation model (optionally with Gaussian noise, the
SegCertify base model) into a staged run: ``model.pt``, ``config.json``, ``metrics.json`` (loss history,
clean and noisy plain test Dice). Nothing appears in ``--output`` unless training finishes."""

from __future__ import annotations

import math

from geocert.errors import InputError, ParameterError
from geocert_imageseg.config import TrainSegConfig

__all__ = ["run"]


def run(cfg: TrainSegConfig) -> dict:
    """Validate, open the run, train, evaluate on the test split (if any), publish."""
    from geocert.pipeline import open_run
    from geocert_imageseg.models import check_unet_options, save_checkpoint
    from geocert_imageseg.scenes import resolve_data
    from geocert_imageseg.train import evaluate_segmenter, load_split, train_segmenter

    sigma = float(cfg.noise_sigma)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ParameterError(f"--noise-sigma must be a finite number >= 0, got {cfg.noise_sigma}")
    cfg.check_training()
    run_ = open_run(cfg)
    root = resolve_data(cfg.data)
    imgs, masks, names, _ = load_split(root, "train")  # validates every training pair before training
    num_classes = len(names) if names else int(masks.max()) + 1
    check_unet_options(width=cfg.width, depth=cfg.depth, image_size=tuple(imgs.shape[-2:]),
                       in_channels=int(imgs.shape[1]), out_channels=num_classes)
    model, meta = train_segmenter(root, noise_sigma=sigma, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                  width=cfg.width, depth=cfg.depth, seed=cfg.seed, progress=cfg.progress,
                                  device=run_.device)
    save_checkpoint(run_.path("model.pt"), model, meta)
    metrics = {"train_s": meta["train_s"], "loss_history": meta["loss_history"], "data": str(root)}
    try:
        timgs, tmasks, tnames, _ = load_split(root, "test")
    except InputError:  # no (usable) test split: skip the test scores
        timgs = None
    if timgs is not None and timgs.shape[1] == meta["in_channels"]:
        model = model.to(run_.device)
        metrics["test_clean"] = evaluate_segmenter(model, timgs, tmasks, meta["num_classes"], class_names=tnames)
        if sigma > 0:
            metrics["test_noisy"] = evaluate_segmenter(model, timgs, tmasks, meta["num_classes"], sigma=sigma,
                                                       seed=cfg.seed, class_names=tnames)
    out = run_.finish(metrics)
    print(f"wrote {out / 'model.pt'} (trained {meta['train_s']:.1f} s, final loss {meta['loss_history'][-1]:.4f})")
    return metrics
