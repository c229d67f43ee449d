"""RS-SDF density vs plain (Instant-NGP-style) density, same field, same steps: test PSNR and the surface each
variant's mesh gives against the scene's ground-truth mesh.

    python tools/rs_sdf_compare.py [--data SCENE] [--steps 4000] [--output outputs/rs_sdf_compare] [--threads 1]
    python tools/rs_sdf_compare.py --rs-sdf A/checkpoint.pt --plain B/checkpoint.pt   # reuse trained runs

Trains both variants with `geocert train-nerf`'s code and defaults (or takes the given checkpoints), then
meshes each by marching cubes at --mesh-res: RS-SDF at its SDF's zero level; plain at **its best density
level**: the level set of density d for d in LEVELS (per unit length), keeping the one with the lowest
Chamfer L1 against the ground truth (an oracle choice, in plain's favour). Each mesh is scored with
`metrics.mesh_quality` (--points area samples per mesh, exact point-to-triangle distances): accuracy,
completeness, Chamfer L1/L2, the share of area beyond 1 % / 2 % of the object size, bodies. Prints a table
and writes table.json / table.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

LEVELS = (0.3, 1.0, 3.0, 10.0, 20.8, 30.0, 100.0, 300.0)  # plain: candidate densities of its surface


def _quality(field, res, gt, center, points, level=0.0):
    import numpy as np
    from geocert_rs_sdf.export import extract_mesh
    from geocert_rs_sdf.metrics import mesh_quality

    mesh = extract_mesh(field, res, level=level)
    if mesh is None:
        return None, None
    return mesh, mesh_quality(*mesh, gt.vertices - np.asarray(center), gt.faces, points, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--output", type=Path, default=Path("outputs/rs_sdf_compare"))
    ap.add_argument("--points", type=int, default=30000)
    ap.add_argument("--mesh-res", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-views", type=int, default=0)
    ap.add_argument("--rs-sdf", type=Path, default=None, help="checkpoint of a trained rs-sdf run (skip training)")
    ap.add_argument("--plain", type=Path, default=None, help="checkpoint of a trained plain run (skip training)")
    args = ap.parse_args()

    import torch
    from geocert_rs_sdf.cmd_train_nerf import train
    from geocert_rs_sdf.config import FieldSettings, FitSettings, TrainNerfConfig
    from geocert_rs_sdf.data import load_split
    from geocert_rs_sdf.mesh_io import load_mesh
    from geocert_rs_sdf.metrics import evaluate_views
    from geocert_rs_sdf.train import load_checkpoint

    from geocert.io import write_json, write_ply

    torch.set_num_threads(max(1, args.threads))
    rows = []
    for density, given in (("rs-sdf", args.rs_sdf), ("plain", args.plain)):
        out = args.output / density
        if given is None:
            cfg = TrainNerfConfig(data=args.data, output=out, field=FieldSettings(density=density),
                                  fit=dataclasses.replace(FitSettings(), steps=args.steps), threads=args.threads,
                                  eval_views=args.eval_views)
            train(cfg)
            given = out / "checkpoint.pt"
        field, fs, st, data = load_checkpoint(given)
        field.eval()
        test = load_split(data["extra"]["scene"], "test", max_views=args.eval_views or None)
        ev = evaluate_views(field, fs, test, progress=False)
        gt = load_mesh(test.mesh)
        center = getattr(test, "center", (0.0, 0.0, 0.0))
        if density == "plain":  # its best level: the lowest Chamfer L1 over LEVELS (sdf_grid's offset)
            base = math.log(30.0 * math.log(2.0))
            best = None
            for d in LEVELS:
                level = (math.log(d) - base) * field.sharpness * field.voxel
                mesh, q = _quality(field, args.mesh_res, gt, center, args.points, level)
                print(f"plain level density {d}: " + ("no surface" if q is None else f"L1 {q['l1']:.5f}"))
                if q is not None and (best is None or q["l1"] < best[2]["l1"]):
                    best = (d, mesh, q)
            level_txt, mesh, q = f"density {best[0]}", best[1], best[2]
        else:
            mesh, q = _quality(field, args.mesh_res, gt, center, args.points)
            level_txt = "SDF = 0"
        out.mkdir(parents=True, exist_ok=True)
        write_ply(out / "mesh.ply", mesh[0], faces=mesh[1])
        rows.append({"density": density, "checkpoint": str(given), "steps": st.steps, "level": level_txt,
                     "test_psnr": round(ev["psnr"], 3), **{k: q[k] for k in (
                         "l1", "l2", "accuracy", "completeness", "beyond_1pct", "beyond_2pct", "bodies")}})
    head = ("| density | steps | mesh level | test PSNR | Chamfer L1 | Chamfer L2 | accuracy | completeness | "
            "area beyond 1 % / 2 % | bodies |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['density']} | {r['steps']} | {r['level']} | {r['test_psnr']:.2f} | {r['l1']:.4f} | "
                     f"{r['l2']:.6f} | {r['accuracy']:.4f} | {r['completeness']:.4f} | "
                     f"{100 * r['beyond_1pct']:.1f} % / {100 * r['beyond_2pct']:.1f} % | {r['bodies']} |")
    table = "\n".join(lines)
    note = (f"{args.points} points sampled by area on each mesh, exact distances to the other mesh's triangles; "
            f"scene units; marching cubes at {args.mesh_res}^3; plain's level is the best of {LEVELS} by L1.")
    print(table)
    print(note)
    write_json(args.output / "table.json", {"rows": rows, "note": note})
    (args.output / "table.md").write_text(table + "\n\n" + note + "\n")


if __name__ == "__main__":
    main()
