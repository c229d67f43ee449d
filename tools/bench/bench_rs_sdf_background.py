"""Benchmark of ``--background learned``: the cost of the volumetric background against the sky MLP alone
(what ``learned`` was before the volume) and a constant white, per training step and per rendered view, all
measured in this run from the same partly trained field on the committed capture scene.

    python tools/bench/bench_rs_sdf_background.py [--threads 1] [--warm-steps 300] [--steps 60]

The field is first trained ``--warm-steps`` steps with the defaults (so the object's geometry has formed and
the empty-space skipping and the background's skipping of opaque rays act as in a real run); then each
variant continues from a copy of it for ``--steps`` steps of ``fit`` (CPU time per step, Adam included) and
renders one test view. Prints a table and the ratios against the sky MLP alone.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warm-steps", type=int, default=300, help="training steps before measuring")
    ap.add_argument("--steps", type=int, default=60, help="training steps timed per variant")
    ap.add_argument("--scene", default=str(ROOT / "scenes" / "capture_nerfstudio"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from geocert_rs_sdf.background import Background
    from geocert_rs_sdf.data import load_split
    from geocert_rs_sdf.render import render_image
    from geocert_rs_sdf.train import (
        FieldSettings,
        FitSettings,
        background_radius,
        build_field,
        fit,
        resolve_field,
    )

    train = load_split(args.scene, "train")
    test = load_split(args.scene, "test", max_views=1)
    fs = resolve_field(FieldSettings(), train)
    total = args.warm_steps + args.steps
    st = FitSettings(steps=total)
    field0 = build_field(fs, train.bound, torch.Generator().manual_seed(0), near=train.near, far=train.far,
                         background_radius=background_radius(train))
    res0 = fit(field0, fs, dataclasses.replace(st, steps=args.warm_steps), train, progress=True)
    bg = field0.background_model
    sky_state = {k: v for k, v in bg.state_dict().items() if k == "radius" or k.startswith("mlp.")}

    rows = []
    for name in ("volume (learned)", "sky MLP alone", "white"):
        f = copy.deepcopy(field0)
        if name == "sky MLP alone":
            f.background_model = Background("learned")
            f.background_model.load_state_dict(sky_state)  # the sky-only model, as an old checkpoint loads
        elif name == "white":
            f.background_model = Background("white")
        res = fit(f, fs, st, train, progress=False, start_step=args.warm_steps, loop_state=res0["loop_state"])
        c0 = time.process_time()
        render_image(f, fs.samples, fs.color_samples, test.c2w[0], test.height, test.width, test.cameras[0])
        rows.append((name, 1000 * res["train_cpu_s"] / res["steps_run"], time.process_time() - c0))
    base = rows[1]
    print(f"\n{args.steps} training steps from step {args.warm_steps} ({args.threads} thread(s)), one "
          f"{test.width}x{test.height} test view:")
    print(f"{'background':<18} {'CPU ms/step':>12} {'x sky':>7} {'render CPU s':>13} {'x sky':>7}")
    for name, ms, rs in rows:
        print(f"{name:<18} {ms:12.1f} {ms / base[1]:7.2f} {rs:13.2f} {rs / base[2]:7.2f}")


if __name__ == "__main__":
    main()
