"""Where a trained NeRF's test-view error sits, and what rendering each pixel as an area changes.

    python tools/rs_sdf_pixel_error.py CHECKPOINT [--data SCENE] [--pixel-samples 1 4 9]

Renders the scene's test views (NeRF-synthetic RGBA scenes: composited on white) with k rays per pixel for each
``--pixel-samples`` k (a √k×√k grid over the pixel, averaged: what ``--antialias on`` renders with k = 4) and
prints the PSNR over all pixels, the object's pixels (alpha > ½, as ``metrics.json``'s ``test_psnr_object``)
and the rest, and splits the object's squared error into the **silhouette band** (alpha > 0.01 but not in the
one-pixel-eroded alpha > 0.99 region) and the **interior**. The measurements behind docs/rs_sdf.md's
"Antialiasing".
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    import torch
    from geocert_rs_sdf.cmd_train_nerf import object_metrics
    from geocert_rs_sdf.data import load_split
    from geocert_rs_sdf.metrics import evaluate_views
    from geocert_rs_sdf.train import load_checkpoint
    from scipy import ndimage

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=None, help="scene folder (default: the checkpoint's)")
    ap.add_argument("--pixel-samples", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    field, fs, _, data = load_checkpoint(args.checkpoint)
    scene = args.data or data.get("extra", {}).get("scene")
    test = load_split(scene, "test", white_bg=fs.background != "black",
                      downscale=int(data.get("extra", {}).get("downscale", 1)))
    if test.alpha is None:
        raise SystemExit(f"{scene}: the test images have no alpha or masks; nothing to split by")
    alpha = test.alpha.numpy()
    band = np.zeros_like(alpha, bool)
    interior = np.zeros_like(alpha, bool)
    for v in range(alpha.shape[0]):
        inner = ndimage.binary_erosion(alpha[v] > 0.99, iterations=1)
        band[v] = (alpha[v] > 0.01) & ~inner
        interior[v] = inner
    target = test.images.numpy()
    for k in args.pixel_samples:
        field.pixel_samples = k
        ev = evaluate_views(field, fs, test, progress=False)
        pred = np.stack([r["rgb"].numpy() for r in ev["renders"]])
        err = ((pred - target) ** 2).mean(-1)
        obj_sse = err[band].sum() + err[interior].sum()
        om = object_metrics(ev["renders"], test)
        print(f"{k} rays/pixel: all {ev['psnr']:.2f} dB, object {om['test_psnr_object']:.2f} dB, background "
              f"{om['test_psnr_background']:.2f} dB; silhouette band {band.mean() / (band | interior).mean():.1%} of "
              f"the object's pixels, {err[band].sum() / obj_sse:.1%} of its squared error, "
              f"{-10 * np.log10(err[band].mean()):.2f} dB; interior {-10 * np.log10(err[interior].mean()):.2f} dB")


if __name__ == "__main__":
    main()
