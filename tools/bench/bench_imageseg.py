"""How much of a certify-seg run is spent outside the model's forward passes (bar: < 5% at 256x256, n=100).

    python tools/bench/bench_imageseg.py                  # 256x256 gray X-ray, n0=10, n=100, batch 20
    python tools/bench/bench_imageseg.py --size 128 --denoiser

Reference, measured in the same run: the same number of forward passes of the same model on the same batch
shapes with pre-drawn noise (nothing else). Reported: certification wall time, time inside the model calls,
overhead fraction (total − forward) / total, and the ratio certification / reference forward time.
The model is the built-in U-Net (width 16, untrained weights: timing does not depend on them).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n0", type=int, default=10)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--denoiser", action="store_true", help="also run the σ-conditioned U-Net denoiser")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import numpy as np
    from geocert_imageseg.certify_seg import build_pipeline, certify_image
    from geocert_imageseg.denoise import UNetDenoiser
    from geocert_imageseg.models import SegModel
    from geocert_imageseg.scenes import make_xray

    torch.manual_seed(0)
    img, _ = make_xray(a.size, np.random.default_rng(0))
    x = torch.from_numpy(img).float()[None]
    model = SegModel(1, 4, a.width).eval()
    den = UNetDenoiser(1, a.width).eval() if a.denoiser else None
    meta = {"in_channels": 1, "num_classes": 4}
    sigma = 0.25

    def reference() -> float:
        g = torch.Generator().manual_seed(1)
        t = 0.0
        with torch.inference_mode():
            for total in (a.n0, a.n):
                done = 0
                while done < total:
                    b = min(a.batch_size, total - done)
                    batch = x + sigma * torch.randn((b, *x.shape), generator=g)
                    t0 = time.perf_counter()
                    z = den(batch, sigma) if den is not None else batch
                    model(z)
                    t += time.perf_counter() - t0
                    done += b
        return t

    print(f"certify-seg overhead: {a.size}x{a.size} gray image, n0={a.n0}, n={a.n}, batch {a.batch_size}, "
          f"U-Net width {a.width}{' + denoiser' if den is not None else ''}, {a.threads} threads")
    for r in range(a.repeats):
        ref = reference()
        f = build_pipeline(model, meta, sigma=sigma, denoiser=den)
        g = torch.Generator().manual_seed(r)
        _, _, tm = certify_image(f, x, sigma=sigma, n0=a.n0, n=a.n, tau=0.75, alpha=0.001, correction="holm", k=1,
                                 batch_size=a.batch_size, generator=g)
        print(f"  run {r}: certify {tm['total_s']:.2f} s (model calls {tm['forward_s']:.2f} s, statistics "
              f"{tm['statistics_s'] * 1e3:.1f} ms) | reference forward-only {ref:.2f} s | overhead "
              f"{100 * tm['overhead_frac']:.2f}% of certify time | certify / reference = {tm['total_s'] / ref:.3f}")


if __name__ == "__main__":
    main()
