"""``geocert segment2d``: load the image and scribbles, train the FICNN ∘ flow, check the guarantee, write.

Every input and option is checked before the work; the run is staged (a failed or interrupted run leaves
nothing in --output) and publishes mask.png, mask_centres.png, overlay.png, overlay_scribbles.png,
metrics.json, config.json and report.html.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy import ndimage

from geocert.errors import ParameterError
from geocert.validate import check_positive_int

__all__ = ["run", "settings_from_config"]


def settings_from_config(cfg):
    """The validated training settings of a config, with the architecture choices and the seed filled in."""
    return dataclasses.replace(cfg.train, use_flow=cfg.model == "flow-ficnn", use_teacher=cfg.teacher,
                               seed=cfg.seed).validate()


def _overlays(img: np.ndarray, mask: np.ndarray, scr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from .scenes import scribbles_to_rgb

    over = img.copy()
    over[mask] = 0.45 * over[mask] + 0.55 * np.array([1.0, 0.1, 0.1])
    edge = mask & ~ndimage.binary_erosion(mask)
    over[edge] = (1.0, 1.0, 0.0)
    over_s = img.copy()  # the scribbles as drawn (red / blue) and the mask's outline (yellow)
    over_s[edge] = (1.0, 1.0, 0.0)
    over_s[scr >= 0] = scribbles_to_rgb(scr)[scr >= 0] / 255.0
    to8 = lambda a: (a * 255.0 + 0.5).astype(np.uint8)  # noqa: E731
    return to8(over), to8(over_s)


def run(cfg) -> dict:
    from geocert.pipeline import open_run, preflight

    from .checks import components, connectivity_checks, iou, model_checks
    from .data import load_image, load_mask, load_scribbles, pixel_positions
    from .scenes import default_task_dir
    from .teachers import teacher_probs
    from .train import predict_logits, teacher_features, train_segmenter

    device = preflight(cfg)
    s = settings_from_config(cfg)
    check_positive_int(cfg.check_grid, "check-grid")
    image_p, scr_p, gt_p = cfg.image, cfg.scribbles, cfg.gt
    if image_p is None:
        if scr_p is not None:
            raise ParameterError("--scribbles given without IMAGE (give both, or neither for a generated task)")
        d = default_task_dir(cfg.task, style=cfg.scribble_style)
        image_p, scr_p, gt_p = d / "image.png", d / "scribbles.png", gt_p or d / "mask.png"
    elif scr_p is None:
        raise ParameterError(f"{image_p}: --scribbles is required when IMAGE is given")
    elif cfg.scribble_style != "dense":
        raise ParameterError("--scribble-style applies to generated tasks only (IMAGE comes with its --scribbles)")
    img = load_image(image_p)
    H, W = img.shape[:2]
    scr = load_scribbles(scr_p, (H, W))
    gt = load_mask(gt_p, (H, W)) if gt_p is not None else None

    run_ = open_run(cfg, device=device)
    fixed = None
    if cfg.teacher and cfg.teacher_model != "mlp":
        fixed = teacher_probs(cfg.teacher_model, img, scr, seed=cfg.seed)
    r = train_segmenter(img, scr, s, teacher_probs=fixed, progress=cfg.progress, device=run_.device)
    xy = torch.from_numpy(pixel_positions(H, W))
    centres = (predict_logits(r.model, xy) >= 0).numpy().reshape(H, W)  # logit = -h(g(x)) ≥ 0 ⇔ h(g(x)) ≤ 0
    conn, mask = connectivity_checks(r.model, centres, fine=cfg.check_grid)
    metrics: dict = {
        "image": str(image_p), "scribbles": str(scr_p), "gt": None if gt_p is None else str(gt_p),
        "height": H, "width": W, "model": cfg.model, "teacher": cfg.teacher,
        "teacher_model": cfg.teacher_model if cfg.teacher else None,
        "foreground_definition": "x with h(g(x)) <= 0, i.e. N(g(x)) <= 1/2 with N = sigmoid(h)",
        "mask_definition": "mask.png: pixels whose centre is foreground, plus the pixels crossed by the "
                           "certified joining paths (joining_paths); mask_centres.png: centres only",
        "scribbled_pixels": {"foreground": int((scr == 1).sum()), "background": int((scr == 0).sum())},
        "train_s": r.train_s, "train_steps": r.steps, "final_loss": r.history[-1]["loss"],
        "foreground_fraction": float(mask.mean()),
    }
    if gt is not None:
        metrics["iou_class"] = "foreground (red scribbles; --gt pixels > 127)"
        metrics["iou_foreground"] = iou(mask, gt)
        metrics["iou_foreground_centres"] = iou(centres, gt)
        metrics["iou_background"] = iou(~mask, ~gt)
    if r.teacher is not None or fixed is not None:
        if fixed is not None:
            t_mask = fixed >= 0.5
        else:
            t_mask = (predict_logits(r.teacher, teacher_features(img, s.teacher_features)) >= 0).numpy()
            t_mask = t_mask.reshape(H, W)
        metrics["teacher_components_8conn"] = components(t_mask)
        if gt is not None:
            metrics["teacher_iou_foreground"] = iou(t_mask, gt)
    metrics.update(conn)
    metrics.update(model_checks(r.model, H, W, seed=cfg.seed))

    run_.save_image("mask.png", (mask * 255).astype(np.uint8))
    run_.save_image("mask_centres.png", (centres * 255).astype(np.uint8))
    over, over_s = _overlays(img, mask, scr)
    run_.save_image("overlay.png", over)
    run_.save_image("overlay_scribbles.png", over_s)
    out = run_.finish(metrics)
    iou_txt = f"foreground IoU {metrics['iou_foreground']:.3f}, " if "iou_foreground" in metrics else ""
    paths = metrics["joining_paths"]
    joined = (f", {paths['extra_components']} pixel piece(s) joined by certified paths"
              if paths.get("extra_components") else "")
    print(f"segment2d: {iou_txt}mask = {metrics['components_8conn_joined_mask']} connected component(s)"
          f"{joined}, trained in {metrics['train_s']:.1f} s → {out}")
    return metrics
