"""Implementation of ``geocert segment2d``."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from geocert.errors import ParameterError
from geocert.io import write_config, write_image, write_json

from .data import load_image, load_mask, load_scribbles, pixel_positions
from .scenes import default_task_dir
from .train import TrainSettings, predict_logits, train_segmenter


def run_segment2d(cfg) -> dict:
    torch.set_num_threads(2)
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise ParameterError("epochs and batch-size must be >= 1 and lr > 0")
    image_p, scr_p, gt_p = cfg.image, cfg.scribbles, cfg.gt
    if image_p is None:
        d = default_task_dir()
        image_p, scr_p, gt_p = d / "image.png", d / "scribbles.png", gt_p or d / "mask.png"
    elif scr_p is None:
        raise ParameterError("--scribbles is required when IMAGE is given")
    img = load_image(image_p)
    H, W = img.shape[:2]
    scr = load_scribbles(scr_p, (H, W))
    gt = load_mask(gt_p, (H, W)) if gt_p is not None else None
    s = TrainSettings(use_flow=cfg.model == "flow-ficnn", use_teacher=cfg.teacher, epochs=cfg.epochs,
                      batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    r = train_segmenter(img, scr, s, progress=True)
    xy = torch.from_numpy(pixel_positions(H, W))
    mask = (predict_logits(r.model, xy) > 0).numpy().reshape(H, W)
    metrics = {"train_s": r.train_s, "foreground_fraction": float(mask.mean()),
               "components_4conn": int(ndimage.label(mask)[1]),
               "components_8conn": int(ndimage.label(mask, np.ones((3, 3)))[1])}
    if gt is not None:
        metrics["iou_foreground"] = float((mask & gt).sum() / max((mask | gt).sum(), 1))
    with torch.no_grad():
        g = torch.Generator().manual_seed(cfg.seed)
        a, b = torch.rand(20000, 2, generator=g, dtype=torch.float64) * 3 - 1, \
            torch.rand(20000, 2, generator=g, dtype=torch.float64) * 3 - 1
        f = r.model.ficnn
        metrics["convexity_max_violation"] = float((f((a + b) / 2) - (f(a) + f(b)) / 2).clamp_min(0).max())
        if r.model.flow is not None:
            metrics["flow_roundtrip_max_err"] = float((r.model.flow.inverse(r.model.flow(xy)) - xy).abs().max())
    cfg.output.mkdir(parents=True, exist_ok=True)
    write_config(cfg.output, cfg, plugin="connected2d", plugin_version="0.1.0", seed=cfg.seed)
    write_image(cfg.output / "mask.png", (mask * 255).astype(np.uint8))
    over = img.copy()
    over[mask] = 0.5 * over[mask] + 0.5 * np.array([1.0, 0.0, 0.0])
    write_image(cfg.output / "overlay.png", over)
    write_json(cfg.output / "metrics.json", metrics)
    print(metrics)
    return metrics
