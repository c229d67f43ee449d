"""The paper's Table 1 on our generated scribble tasks: FICNN alone vs flow+FICNN, without / with teacher.

    python tools/connected2d_table1.py                                  # all tasks, 4 variants, seed 0
    python tools/connected2d_table1.py --tasks horse --variants flow-ficnn+teacher --seeds 0 1 2 3 4
    python tools/connected2d_table1.py --json table1.json

For every task (scenes/make_connected2d.py; generated into the cache), variant and seed this trains the
model exactly as ``geocert segment2d`` does (same defaults, same code) and reports the foreground IoU
against the task's ground-truth mask, the connected components of the predicted pixel mask (8-connectivity;
"fine" = on a 4× finer grid), whether extra pixel components are joined by certified paths, and the training
time. Then prints the Table 1 layout (mean IoU: model rows × teacher columns) per task.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

VARIANTS = ("ficnn", "ficnn+teacher", "flow-ficnn", "flow-ficnn+teacher")


def main() -> None:
    from geocert_connected2d.scenes import TASKS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS[:5]), choices=TASKS,
                    help="default: the five tasks of the documented table (horse, crescent, cross, ring-arc, ellipse)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from geocert_connected2d.checks import connectivity_checks, iou
    from geocert_connected2d.data import load_image, load_mask, load_scribbles, pixel_positions
    from geocert_connected2d.scenes import default_task_dir
    from geocert_connected2d.train import TrainSettings, predict_logits, train_segmenter

    rows = []
    print(f"{'task':10s} {'variant':20s} {'seed':>4s} {'IoU fg':>7s} {'comp8':>5s} {'comp4':>5s} {'fine4x':>6s} "
          f"{'joined':>6s} {'mask':>4s} {'train s':>7s}", flush=True)
    for task in a.tasks:
        d = default_task_dir(task)
        img = load_image(d / "image.png")
        H, W = img.shape[:2]
        scr = load_scribbles(d / "scribbles.png", (H, W))
        gt = load_mask(d / "mask.png", (H, W))
        xy = torch.from_numpy(pixel_positions(H, W))
        for variant in a.variants:
            for seed in a.seeds:
                kw = {"use_flow": variant.startswith("flow"), "use_teacher": variant.endswith("teacher"),
                      "seed": seed}
                if a.epochs is not None:
                    kw["epochs"] = a.epochs
                t0 = time.perf_counter()
                r = train_segmenter(img, scr, TrainSettings(**kw))
                wall = time.perf_counter() - t0
                centres = (predict_logits(r.model, xy) >= 0).numpy().reshape(H, W)
                c, mask = connectivity_checks(r.model, centres, fine=4)
                joined = c["joining_paths"].get("all_joined", True)
                row = {"task": task, "variant": variant, "seed": seed, "iou_foreground": iou(mask, gt),
                       "iou_foreground_centres": iou(centres, gt),
                       "components_joined_mask_8conn": c["components_8conn_joined_mask"],
                       "components_4conn": c["components_4conn"], "components_8conn": c["components_8conn"],
                       "components_fine4x_8conn": c["components_fine4x_8conn"], "extra_joined": joined,
                       "train_s": r.train_s, "wall_s": wall, "steps": r.steps}
                rows.append(row)
                print(f"{task:10s} {variant:20s} {seed:4d} {row['iou_foreground']:7.4f} "
                      f"{row['components_8conn']:5d} {row['components_4conn']:5d} "
                      f"{row['components_fine4x_8conn']:6d} {str(joined):>6s} "
                      f"{row['components_joined_mask_8conn']:4d} {r.train_s:7.1f}", flush=True)

    print("\nTable 1 layout: mean foreground IoU over seeds (components, 8-conn, min-max over seeds)")
    for task in a.tasks:
        print(f"\n  {task}")
        print(f"  {'model':12s} {'no teacher':>22s} {'with teacher':>22s}")
        for model in ("ficnn", "flow-ficnn"):
            cells = []
            for teach in ("", "+teacher"):
                sel = [r for r in rows if r["task"] == task and r["variant"] == model + teach]
                if not sel:
                    cells.append(f"{'-':>22s}")
                    continue
                m = statistics.mean(r["iou_foreground"] for r in sel)
                cs = [r["components_8conn"] for r in sel]  # of the pixel centres
                cells.append(f"{m:8.4f} (comp {min(cs)}-{max(cs)})".rjust(22))
            print(f"  {model:12s} {cells[0]} {cells[1]}")
    if len(a.seeds) > 1:
        print("\nPer variant over seeds: IoU mean ± sd [min, max], components 8-conn per seed, mean train s")
        for task in a.tasks:
            for variant in a.variants:
                sel = [r for r in rows if r["task"] == task and r["variant"] == variant]
                ious = [r["iou_foreground"] for r in sel]
                sd = statistics.stdev(ious) if len(ious) > 1 else 0.0
                print(f"  {task:10s} {variant:20s} {statistics.mean(ious):.4f} ± {sd:.4f} "
                      f"[{min(ious):.4f}, {max(ious):.4f}] comps {[r['components_8conn'] for r in sel]} "
                      f"fine4x {[r['components_fine4x_8conn'] for r in sel]} "
                      f"{statistics.mean(r['train_s'] for r in sel):.1f} s")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
