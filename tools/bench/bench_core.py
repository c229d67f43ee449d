"""Benchmarks of the geocert core, each printed as a ratio against a reference measured in the same run.

    python tools/bench/bench_core.py [--quick]

1. statistics for 2,097,152 components (a 1024×2048 image): binomial p-values + Holm, against a naive
   per-component loop (SciPy's binomtest per component, the reference implementations' design), timed on a
   subset and extrapolated;
2. certification overhead: ``certify`` wall time against the n0 + n batched forward passes of the same
   model alone (noise drawn beforehand), target ≤ 1.1×;
3. ``gaussian_blur`` of a 256³ float32 grid against ``scipy.ndimage.gaussian_filter`` on the same grid.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_stats(m: int) -> None:
    from scipy.stats import binomtest

    from geocert import stats

    rng = np.random.default_rng(0)
    n, tau, alpha = 100, 0.75, 0.001
    k = rng.binomial(n, 0.9, size=m)
    fast = best_of(lambda: stats.fwer_reject(stats.binomial_pvalues(k, n, tau), alpha, "holm"))
    sub = 2000
    t0 = time.perf_counter()
    pv = [binomtest(int(v), n, tau, alternative="greater").pvalue for v in k[:sub]]
    order = sorted(range(sub), key=lambda i: pv[i])
    for rank, i in enumerate(order):  # naive Holm loop on the subset
        if pv[i] > alpha / (sub - rank):
            break
    naive = (time.perf_counter() - t0) * m / sub
    print(f"[stats] {m:,} components, p-values + Holm: {fast:.3f} s (target < 1 s); naive loop ≈ {naive:.0f} s "
          f"(extrapolated from {sub}); speed-up {naive / fast:,.0f}×")


def bench_certify_overhead(n: int, n0: int, size: int) -> None:
    from geocert.certify import certify

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 5, 1),
    ).eval()

    def f(batch):
        return net(batch).argmax(1)

    x = torch.rand(3, size, size)
    bs = 20
    noisy = [x + 0.25 * torch.randn(min(bs, t - i), *x.shape) for t in (n0, n) for i in range(0, t, bs)]

    def forwards():
        with torch.inference_mode():
            for b in noisy:
                f(b)

    forwards()  # warm-up
    t_fwd = best_of(forwards, 2)
    t_cert = best_of(lambda: certify(f, x, num_classes=5, sigma=0.25, n0=n0, n=n, tau=0.75, alpha=0.001,
                                     batch_size=bs, generator=torch.Generator().manual_seed(0)), 2)
    print(f"[certify] {size}×{size} image, n0={n0}, n={n}: forwards alone {t_fwd:.2f} s, certify {t_cert:.2f} s, "
          f"ratio {t_cert / t_fwd:.3f} (target ≤ 1.1)")


def bench_blur(size: int, sigma: float) -> None:
    from scipy.ndimage import gaussian_filter

    from geocert.smoothing import gaussian_blur

    g = torch.rand(size, size, size)
    a = g.numpy()
    t_ours = best_of(lambda: gaussian_blur(g, sigma))
    t_scipy = best_of(lambda: gaussian_filter(a, sigma, mode="nearest", truncate=4.0))
    print(f"[blur] {size}³ float32, σ={sigma}: geocert {t_ours:.3f} s, scipy.ndimage {t_scipy:.3f} s, "
          f"scipy/geocert = {t_scipy / t_ours:.2f} (target ≥ 1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_stats(2**16 if args.quick else 1024 * 2048)
    bench_certify_overhead(n=20 if args.quick else 100, n0=10, size=64 if args.quick else 256)
    for sigma in (1.0, 2.0):
        bench_blur(64 if args.quick else 256, sigma)


if __name__ == "__main__":
    main()
