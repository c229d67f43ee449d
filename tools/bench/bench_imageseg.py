"""How much of a certify-seg dataset run is spent outside the model's forward passes (issue-9 bar: < 5%).

    python tools/bench/bench_imageseg.py                        # 3 images 256x256 gray, n0=10, n=100, batch 20
    python tools/bench/bench_imageseg.py --size 128 --denoiser

Runs ``geocert certify-seg`` in dataset mode (the core runner, :func:`geocert.pipeline.certify_dataset`) on
procedural X-rays with the built-in U-Net (width 16, untrained weights: timing does not depend on them) and
prints

* the runner's own accounting (``metrics.json`` → ``timings``): forward time (inside the base model f:
  denoiser + U-Net + output check + argmax), sampling and statistics, and ``outside_forward_fraction`` =
  (sampling + statistics − forward) / (sampling + statistics);
* the wall-clock view of the whole command (loading, validation, per-item files, plots, metrics):
  (wall − forward) / wall;
* a reference measured in the same process: the same number of forward passes of the same model on the same
  batch shapes with pre-drawn noise, nothing else; and the ratio dataset-run wall time / reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--n0", type=int, default=10)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--denoiser", action="store_true", help="also run the σ-conditioned U-Net denoiser")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from geocert_imageseg.certify_seg import run
    from geocert_imageseg.config import CertifySegConfig
    from geocert_imageseg.denoise import UNetDenoiser
    from geocert_imageseg.models import DENOISER_KIND, SEG_KIND, SegModel, save_checkpoint
    from geocert_imageseg.scenes import make_dataset

    from geocert.io import read_json

    tmp = Path(tempfile.mkdtemp(prefix="bench_imageseg_"))
    data = make_dataset(tmp / "data", kind="xray", num_train=0, num_test=a.images, size=a.size, seed=0)
    torch.manual_seed(0)
    model = SegModel(1, 4, a.width).eval()
    meta = {"kind": SEG_KIND, "in_channels": 1, "num_classes": 4, "width": a.width, "depth": 2,
            "class_names": ["background", "lungs", "heart", "clavicles"]}
    save_checkpoint(tmp / "model.pt", model, meta)
    den = None
    extra = {}
    if a.denoiser:
        den = UNetDenoiser(1, a.width).eval()
        save_checkpoint(tmp / "den.pt", den, {"kind": DENOISER_KIND, "in_channels": 1, "width": a.width, "depth": 2,
                                              "sigma_min": 0.1, "sigma_max": 1.0})
        extra["denoiser"] = str(tmp / "den.pt")
    sigma = 0.25

    def reference() -> float:
        """The bare forward passes of one image's n0 + n samples."""
        x = torch.rand(1, a.size, a.size)
        g = torch.Generator().manual_seed(1)
        t = 0.0
        with torch.inference_mode():
            for total in (a.n0, a.n):
                done = 0
                while done < total:
                    b = min(a.batch_size, total - done)
                    batch = x + sigma * torch.randn((b, *x.shape), generator=g)
                    t0 = time.perf_counter()
                    model(den(batch, sigma) if den is not None else batch)
                    t += time.perf_counter() - t0
                    done += b
        return t

    cfg = CertifySegConfig(image=data, model=str(tmp / "model.pt"), sigma=sigma, n0=a.n0, n=a.n,
                           batch_size=a.batch_size, threads=a.threads, output=tmp / "run", progress=False, **extra)
    print(f"certify-seg dataset run: {a.images} gray images {a.size}x{a.size}, n0={a.n0}, n={a.n}, batch "
          f"{a.batch_size}, U-Net width {a.width}{' + denoiser' if den is not None else ''}, {a.threads} threads")
    ref = sum(reference() for _ in range(a.images))
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    t = read_json(tmp / "run" / "metrics.json")["timings"]
    print(f"  runner: sampling {t['sampling_s']:.2f} s (forward {t['forward_s']:.2f} s), statistics "
          f"{1e3 * t['statistics_s']:.1f} ms -> outside_forward_fraction {100 * t['outside_forward_fraction']:.2f}%")
    print(f"  whole command: wall {wall:.2f} s -> (wall - forward) / wall = {100 * (wall - t['forward_s']) / wall:.2f}%")
    print(f"  reference forward-only {ref:.2f} s -> dataset-run wall / reference = {wall / ref:.3f}")


if __name__ == "__main__":
    main()
