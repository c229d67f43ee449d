"""Sparse-scribble benchmark of ``geocert segment2d`` against classical scribble segmenters.

    python tools/connected2d_scribbles.py                       # 6 real-image tasks, sparse scribbles, seed 0
    python tools/connected2d_scribbles.py --tasks coin-b --json rows.json --figure scribbles.png

Tasks: the real-image tasks of ``geocert_connected2d.scenes`` (``REAL_TASKS``: the scikit-image horse
silhouette filled with real photographs over three real textures, three crops of the coins photograph
around one coin, masks derived and checked by eye), each with the *sparse* scribbles a person draws
(``draw_sparse_scribbles``: 1–3 foreground strokes, 3–5 background strokes). Every method sees only the
image and the scribbles; the ground-truth mask is used for scoring only. Methods, all run here:

- ``geocert``: FICNN ∘ flow (the command's defaults) fitted to the fixed teacher ``--teacher``; the written
  mask (pixel centres + certified joining paths), as ``geocert segment2d`` writes it;
- ``teacher``: that fixed teacher alone (probability ≥ 1/2);
- ``mlp-teacher``: the paper's teacher, the MLP on (RGB, XY) trained on the scribbles as in
  ``geocert segment2d --teacher-model mlp`` (its loss does not depend on the model it teaches, so it is
  trained here beside the cheap FICNN-only model); ``geocert-mlp`` (with ``--geocert-mlp``): FICNN ∘ flow
  trained jointly with it, the paper's setting;
- ``random-walker``: ``skimage.segmentation.random_walker`` with scikit-image's default β = 130 (and one
  extra row per ``--rw-beta``);
- ``grabcut``: ``cv2.grabCut`` initialised from the scribbles (strokes = sure labels, foreground strokes
  dilated by 10 % of the image side = probable foreground, the rest probable background), 8 iterations.

Reported per task and method: foreground IoU and the 8-connected components of the mask; then per method
the mean IoU, how many masks are not one component and how many have a component that does not touch the
true object (a leak onto something else).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np


def _components(mask: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(8-connected components of ``mask``, how many of them do not overlap ``gt``)."""
    from scipy import ndimage

    lab, n = ndimage.label(mask, np.ones((3, 3), dtype=bool))
    if n == 0:
        return 0, 0
    hits = ndimage.maximum(gt, lab, index=np.arange(1, n + 1))
    return int(n), int(np.sum(np.asarray(hits) == 0))


def _figure(path: str, panels: dict) -> None:
    """One row per task: image with scribbles, then every method's mask outline over the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    tasks = list(panels)
    methods = list(next(iter(panels.values()))["masks"])
    fig, axes = plt.subplots(len(tasks), 1 + len(methods), figsize=(2.0 * (1 + len(methods)), 1.9 * len(tasks)))
    axes = np.atleast_2d(axes)
    for i, task in enumerate(tasks):
        img, scr, gt = panels[task]["image"], panels[task]["scribbles"], panels[task]["gt"]
        show = img.copy()
        show[scr == 1] = (1.0, 0.0, 0.0)
        show[scr == 0] = (0.0, 0.2, 1.0)
        axes[i, 0].imshow(show)
        axes[i, 0].set_title(task, fontsize=8)
        for j, m in enumerate(methods):
            mask, score = panels[task]["masks"][m]
            over = img.copy()
            over[gt & ~ndimage.binary_erosion(gt)] = (0.0, 1.0, 0.0)
            over[mask & ~ndimage.binary_erosion(mask)] = (1.0, 0.1, 0.1)
            axes[i, j + 1].imshow(over)
            axes[i, j + 1].set_title(f"{m} {score:.3f}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from geocert_connected2d.scenes import REAL_TASKS
    from geocert_connected2d.teachers import TEACHERS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(REAL_TASKS), choices=REAL_TASKS)
    ap.add_argument("--seed", type=int, default=0, help="scribble and training seed")
    ap.add_argument("--teacher", default="grabcut+rw", choices=TEACHERS, help="geocert's fixed teacher")
    ap.add_argument("--epochs", type=int, default=None, help="override geocert's default epochs")
    ap.add_argument("--geocert-mlp", action="store_true", help="also FICNN ∘ flow with the MLP teacher (slow)")
    ap.add_argument("--rw-beta", nargs="*", type=float, default=[], help="extra random-walker rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write all rows to this JSON file")
    ap.add_argument("--figure", default=None, help="write a PNG with every method's outline per task")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from geocert_connected2d.checks import connectivity_checks, iou
    from geocert_connected2d.config import Segment2dConfig, TrainSettings
    from geocert_connected2d.data import pixel_positions
    from geocert_connected2d.scenes import TASKS, draw_sparse_scribbles, task_image_mask
    from geocert_connected2d.segment2d import settings_from_config
    from geocert_connected2d.teachers import grabcut_probs, random_walker_probs, teacher_probs
    from geocert_connected2d.train import predict_logits, teacher_features, train_segmenter

    train = TrainSettings() if a.epochs is None else TrainSettings(epochs=a.epochs)
    base = Segment2dConfig(seed=a.seed, train=train)
    settings = settings_from_config(base)

    def geocert(img, scr, probs):
        H, W = scr.shape
        r = train_segmenter(img, scr, settings, teacher_probs=probs)
        centres = (predict_logits(r.model, torch.from_numpy(pixel_positions(H, W))) >= 0).numpy().reshape(H, W)
        checks, mask = connectivity_checks(r.model, centres, fine=base.check_grid)
        return mask, checks, r

    rows, panels = [], {}
    for task in a.tasks:
        img, gt = task_image_mask(task, a.seed)
        scr = draw_sparse_scribbles(gt, np.random.default_rng([a.seed, TASKS.index(task)]))
        H, W = gt.shape
        masks: dict[str, tuple[np.ndarray, float, dict]] = {}
        t0 = time.perf_counter()
        probs = teacher_probs(a.teacher, img, scr, seed=a.seed)
        t_teacher = time.perf_counter() - t0
        masks["teacher"] = (probs >= 0.5, t_teacher, {})
        t0 = time.perf_counter()
        mask, checks, _ = geocert(img, scr, probs)
        masks["geocert"] = (mask, t_teacher + time.perf_counter() - t0,
                            {"components_8conn_centres": checks["components_8conn"],
                             "all_joined": checks["joining_paths"].get("all_joined", True)})
        if a.geocert_mlp:
            t0 = time.perf_counter()
            mask, checks, r = geocert(img, scr, None)
            masks["geocert-mlp"] = (mask, time.perf_counter() - t0,
                                    {"components_8conn_centres": checks["components_8conn"],
                                     "all_joined": checks["joining_paths"].get("all_joined", True)})
        else:
            t0 = time.perf_counter()
            r = train_segmenter(img, scr, dataclasses.replace(settings, use_flow=False))
        t_mask = (predict_logits(r.teacher, teacher_features(img, settings.teacher_features)) >= 0).numpy()
        masks["mlp-teacher"] = (t_mask.reshape(H, W), time.perf_counter() - t0, {})
        t0 = time.perf_counter()
        masks["grabcut"] = (grabcut_probs(img, scr, seed=a.seed) >= 0.5, time.perf_counter() - t0, {})
        for beta in [130.0, *a.rw_beta]:
            t0 = time.perf_counter()
            name = "random-walker" if beta == 130.0 else f"random-walker-b{beta:g}"
            masks[name] = (random_walker_probs(img, scr, beta=beta) >= 0.5, time.perf_counter() - t0, {})
        panels[task] = {"image": img, "scribbles": scr, "gt": gt, "masks": {}}
        for method, (mask, secs, extra) in masks.items():
            n, stray = _components(mask, gt)
            row = {"task": task, "method": method, "iou_foreground": iou(mask, gt), "components_8conn": n,
                   "components_off_object": stray, "seconds": secs,
                   "scribbled_fg": int((scr == 1).sum()), "scribbled_bg": int((scr == 0).sum()), **extra}
            rows.append(row)
            panels[task]["masks"][method] = (mask, row["iou_foreground"])
            print(f"{task:13s} {method:22s} IoU {row['iou_foreground']:.4f}  comps {n:3d}  off-object {stray:3d}"
                  f"  {secs:6.1f} s", flush=True)

    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"\n| method | {' | '.join(a.tasks)} | mean IoU | masks with >1 comp | with off-object comps |")
    print("|---|" + "---:|" * (len(a.tasks) + 3))
    for m in methods:
        sel = {r["task"]: r for r in rows if r["method"] == m}
        cells = [f"{sel[t]['iou_foreground']:.3f} ({sel[t]['components_8conn']})" for t in a.tasks]
        mean = np.mean([sel[t]["iou_foreground"] for t in a.tasks])
        multi = sum(sel[t]["components_8conn"] != 1 for t in a.tasks)
        off = sum(sel[t]["components_off_object"] > 0 for t in a.tasks)
        print(f"| {m} | {' | '.join(cells)} | **{mean:.4f}** | {multi}/{len(a.tasks)} | {off}/{len(a.tasks)} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    if a.figure:
        _figure(a.figure, panels)


if __name__ == "__main__":
    main()
