"""Floaters on the committed capture scene: the rendered opacity of its test pixels by what they show.

Usage::

    python tools/rs_sdf_capture_floaters.py OUTPUT/model/checkpoint.pt [scenes/capture_nerfstudio]

Each test pixel of ``scenes/capture_nerfstudio`` (a bunny on a ground disc of radius 2.6 at z = 0 under a
sky, see scenes/README.md) is classed as ``object`` (its mask > ½), ``ground_in_box`` / ``ground_outside_box``
(its ray meets the ground disc first, inside or outside the scene box's x/y extent) or ``sky``; the script
prints, per class, its share of the pixels, the mean rendered opacity and the share of pixels with opacity
> 0.1, as JSON. With the default (the box holds the object, a learned background) every class but the
object should be near 0: opacity there is a floater.
"""

from __future__ import annotations

import json
import sys

import torch

GROUND_RADIUS = 2.6  # the capture's ground disc (scenes/README.md)


def main(argv: list[str]) -> int:
    from geocert_rs_sdf.data import load_split, pixel_rays
    from geocert_rs_sdf.metrics import evaluate_views
    from geocert_rs_sdf.train import load_checkpoint

    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    field, fs, _, _ = load_checkpoint(argv[0])
    field.eval()
    test = load_split(argv[1] if len(argv) > 1 else "scenes/capture_nerfstudio", "test")
    ev = evaluate_views(field, fs, test, progress=False)
    opacity = torch.stack([o["opacity"] for o in ev["renders"]])
    o, d = pixel_rays(test.c2w, test.height, test.width, test.cameras)
    o = o + torch.tensor(test.center, dtype=o.dtype)  # back to the scene's coordinates (ground at z = 0)
    t = -o[..., 2] / d[..., 2]
    p = o + t[..., None] * d
    ground = (t > 0) & (p[..., :2].norm(dim=-1) <= GROUND_RADIUS)
    c = torch.tensor(test.center, dtype=p.dtype)
    inbox = ((p[..., 0] - c[0]).abs() <= test.bound) & ((p[..., 1] - c[1]).abs() <= test.bound)
    obj = test.alpha > 0.5
    classes = {"object": obj, "ground_in_box": ground & inbox & ~obj, "ground_outside_box": ground & ~inbox & ~obj,
               "sky": ~ground & ~obj}
    print(json.dumps({name: {"share": round(float(m.float().mean()), 4),
                             "opacity_mean": round(float(opacity[m].mean()), 5),
                             "opacity_share_above_0.1": round(float((opacity[m] > 0.1).float().mean()), 5)}
                      for name, m in classes.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
