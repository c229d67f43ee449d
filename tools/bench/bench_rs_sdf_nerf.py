"""Benchmark of the RS-SDF NeRF renderer: training step time and render rays/s against the naive dense
renderer (density and colour at every sample, no skipping), both measured in this run on the same field.

    python tools/bench/bench_rs_sdf_nerf.py [--threads 2] [--repeats 5]

The field is trained briefly first on the bundled default scene (so its geometry is a real surface and the
empty-space bitfield has something to skip). Prints a table and the ratios (reference time / ours).
"""

from __future__ import annotations

import argparse
import time

import torch


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warm-steps", type=int, default=300, help="training steps before measuring")
    ap.add_argument("--rays", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from geocert_rs_sdf.data import FAR, NEAR, load_split, pixel_rays
    from geocert_rs_sdf.render import render_rays, render_rays_dense
    from geocert_rs_sdf.scenes import ensure_default_scene
    from geocert_rs_sdf.train import FieldSettings, FitSettings, build_field, fill_auto, fit, make_optimizer

    train = load_split(ensure_default_scene(), "train")
    fs = fill_auto(FieldSettings(), bundled=True)  # the bundled scene's field
    field = build_field(fs, train.bound, torch.Generator().manual_seed(0))
    fit(field, fs, FitSettings(steps=args.warm_steps), train, progress=True)
    o, d = (t.reshape(-1, 3) for t in pixel_rays(train.c2w, train.height, train.width, train.focal))
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, len(o), (args.rays,), generator=gen)
    ro, rd, target = o[idx], d[idx], train.images.reshape(-1, 3)[idx]
    opt = make_optimizer(field, 1e-9, 1e-9)  # tiny steps: the field stays (almost) as it is while timing

    def step(renderer):
        def run():
            state = field.geometry_state()
            if renderer is render_rays:
                out = render_rays(field, state, ro, rd, near=NEAR, far=FAR, n_samples=fs.samples,
                                  color_samples=fs.color_samples, skip_grid=field.skip_grid(state), perturb=True)
            else:
                out = render_rays_dense(field, state, ro, rd, near=NEAR, far=FAR, n_samples=fs.samples)
            loss = ((out["rgb"] - target) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
                opt.step()
        return run

    view = torch.arange(0, train.height * train.width)  # one full view for the render timing
    vo, vd = o[view], d[view]

    def render(renderer):
        @torch.no_grad()
        def run():
            state = field.geometry_state()
            for i in range(0, len(vo), 8192):
                if renderer is render_rays:
                    render_rays(field, state, vo[i:i + 8192], vd[i:i + 8192], near=NEAR, far=FAR,
                                n_samples=fs.samples, color_samples=fs.color_samples, skip_grid=field.skip_grid(state))
                else:
                    render_rays_dense(field, state, vo[i:i + 8192], vd[i:i + 8192], near=NEAR, far=FAR,
                                      n_samples=fs.samples)
        return run

    a = torch.randn(512, 512)
    machine = _best(lambda: [a @ a for _ in range(20)], args.repeats)
    t_ours = _best(step(render_rays), args.repeats)
    t_ref = _best(step(render_rays_dense), max(2, args.repeats // 2))
    r_ours = _best(render(render_rays), args.repeats)
    r_ref = _best(render(render_rays_dense), max(2, args.repeats // 2))
    n_view = len(vo)
    print(f"threads {args.threads}; fixed reference workload (20 matmuls 512^2): {machine * 1e3:.1f} ms")
    print(f"{'':32s}{'ours':>12s}{'dense ref':>12s}{'ratio':>8s}")
    print(f"{'train step (' + str(args.rays) + ' rays) [ms]':32s}{t_ours * 1e3:12.1f}{t_ref * 1e3:12.1f}"
          f"{t_ref / t_ours:8.1f}x")
    print(f"{'render [rays/s]':32s}{n_view / r_ours:12.0f}{n_view / r_ref:12.0f}{r_ref / r_ours:8.1f}x")


if __name__ == "__main__":
    main()
