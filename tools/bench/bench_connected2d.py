"""Training-step cost of ``geocert segment2d`` against a reference measured in the same run.

    python tools/bench/bench_connected2d.py                 # batch 500 (the default), 1 thread
    python tools/bench/bench_connected2d.py --batch-size 1500 --threads 2

Timed (each: Adam step incl. forward, backward, projection; float64; the default model sizes):
- reference: the teacher MLP alone (2×130) on RGB+XY features;
- ficnn+teacher: FICNN alone plus the teacher (the paper's baseline);
- flow-ficnn+teacher: the default model (6 B-spline-conditioned RQ-spline couplings, FICNN) plus teacher;
- flow-ficnn+teacher (mlp conditioner): the same with SiLU-MLP conditioners (the previous design).
Printed: ms per step and the ratio to the reference, plus the implied training time of the default horse
task (steps of the default schedule × ms per step).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from geocert_connected2d.model import TeacherMLP
    from geocert_connected2d.train import TrainSettings, build_model

    g = torch.Generator().manual_seed(0)
    B = a.batch_size
    xy = torch.rand(B, 2, generator=g, dtype=torch.float64)
    feats = torch.rand(B, 5, generator=g, dtype=torch.float64) * 2 - 1
    target = (torch.rand(B, generator=g) > 0.5).to(torch.float64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def make(kind: str):
        torch.manual_seed(0)
        teacher = TeacherMLP(5).to(torch.float64)
        if kind == "reference":
            model = None
        else:
            model = build_model(TrainSettings(use_flow=kind != "ficnn+teacher",
                                              flow_conditioner="mlp" if "mlp" in kind else "bspline",
                                              flow_size=64 if "mlp" in kind else 40))
        params = list(teacher.parameters()) + ([] if model is None else list(model.parameters()))
        opt = torch.optim.Adam(params, lr=1e-3)

        def step() -> None:
            t = teacher(feats)
            loss = bce(t, target)
            if model is not None:
                y = model(xy)
                loss = loss + bce(y, target) + torch.nn.functional.mse_loss(torch.sigmoid(y),
                                                                            torch.sigmoid(t).detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if model is not None:
                model.project()

        return step

    kinds = ("reference", "ficnn+teacher", "flow-ficnn+teacher", "flow-ficnn+teacher (mlp conditioner)")
    steps = {k: make(k) for k in kinds}
    for fn in steps.values():  # warm-up
        for _ in range(5):
            fn()
    best = {k: float("inf") for k in kinds}
    for _ in range(a.repeats):  # interleaved, best of repeats (the machine may be shared)
        for k, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(a.steps):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / a.steps)
    s = TrainSettings()
    per_epoch = -(-(1809 + s.random_points) // s.batch_size)  # default horse task: 1809 scribbled pixels
    print(f"segment2d training step, batch {B}, float64, {a.threads} thread(s), best of {a.repeats}x{a.steps} "
          f"steps")
    for k in kinds:
        print(f"  {k:40s} {1e3 * best[k]:8.2f} ms/step   x{best[k] / best['reference']:6.2f} of reference")
    if B == s.batch_size:
        n = s.epochs * per_epoch
        print(f"  implied default horse training ({n} steps): {n * best['flow-ficnn+teacher']:.1f} s")


if __name__ == "__main__":
    main()
