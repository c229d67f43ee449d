"""Benchmark: the core dataset runner's time outside the model's forward passes (issue bar: < 5%).

Runs ``certify_dataset`` (local executor) on ``--shapes`` clouds of the default point-cloud dataset with the
default certify-pc settings (n0 = 10, n = 1000, batch 100, 2048 points) and, as the reference measured in the
same run (before and after, averaged), the bare forward passes of the same model on the same number of noisy batches (noise pre-drawn,
no counting, no statistics, no I/O). Prints both and their ratio, and the runner's own accounting
(``outside_forward_fraction``: everything but the time inside the base classifier, over the certification time).

    python tools/bench/bench_runner.py [--shapes 4] [--n 1000] [--threads 1] [--model auto]
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    shapes: int = 4
    """Clouds to certify."""
    n: int = 1000
    """Estimation samples."""
    n0: int = 10
    """Selection samples."""
    batch_size: int = 100
    """Noisy clouds per forward pass."""
    threads: int = 1
    """torch CPU threads."""
    model: str = "auto"
    """certify-pc --model (auto: the default model)."""


def main() -> None:
    import torch
    from geocert_pointcloud.certify_pc import run as _unused  # noqa: F401  (imports the plugin)
    from geocert_pointcloud.config import CertifyPcConfig

    from geocert.pipeline import certify_dataset, open_run

    args = tyro.cli(Args)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CertifyPcConfig(model=args.model, num_shapes=args.shapes, n=args.n, n0=args.n0,
                              batch_size=args.batch_size, threads=args.threads, output=Path(tmp) / "out",
                              save_ply=False)
        task, settings = _task(cfg)
        model = task.load_model(torch.device("cpu"))
        bare_before = _bare_forward(task, model, args)
        run = open_run(cfg, resumable=True)
        t0 = time.perf_counter()
        metrics = certify_dataset(run, task, settings, progress=False)
        runner_s = time.perf_counter() - t0
        bare = 0.5 * (bare_before + _bare_forward(task, model, args))  # before and after: load drifts
    t = metrics["timings"]
    print(f"dataset run: {args.shapes} clouds x 2048 points, n0={args.n0}, n={args.n}, batch {args.batch_size}, "
          f"{args.threads} thread(s)")
    print(f"  runner (certify_dataset, incl. I/O, metrics, plots): {runner_s:8.2f} s")
    print(f"  reference: bare forward passes, same batches:        {bare:8.2f} s")
    print(f"  ratio runner / bare forward: {runner_s / bare:.3f}  (time outside forward: "
          f"{100 * (runner_s - bare) / runner_s:.1f}% of the run)")
    print(f"  runner's own accounting: outside_forward_fraction {100 * t['outside_forward_fraction']:.2f}% of the "
          f"certification time (sampling {t['sampling_s']:.2f} s, statistics {t['statistics_s']:.3f} s)")


def _bare_forward(task, model, args) -> float:
    """Seconds of the bare forward passes on (n0 + n) pre-drawn noisy copies of every cloud."""
    import torch

    total = 0.0
    for name in task.item_names():
        sample = task.load_item(name)
        f, x = task.base_model(model, sample, torch.device("cpu"))
        batches, left = [], args.n0 + args.n
        while left > 0:
            b = min(args.batch_size, left)
            batches.append(x.unsqueeze(0) + 0.25 * torch.randn(b, *x.shape))
            left -= b
        t1 = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                f(batch)
        total += time.perf_counter() - t1
    return total


def _task(cfg):
    """The PointCloudTask and settings certify-pc would build (same code path, no output folder)."""
    from geocert_pointcloud.certify_pc import PointCloudTask, _settings
    from geocert_pointcloud.data import load_shapes
    from geocert_pointcloud.default_model import default_checkpoint
    from geocert_pointcloud.scenes import default_dataset

    from geocert.pipeline.models import model_identity

    data = default_dataset()
    shapes = load_shapes(data, split="test", num_shapes=cfg.num_shapes, num_points=2048, seed=0)
    model = str(default_checkpoint()) if cfg.model == "auto" else cfg.model
    spec = {s.name: ("dataset", (str(data), str(s.source)), s.category, s.name) for s in shapes}
    task = PointCloudTask(model_spec=model, shapes_spec=spec, num_points=2048, seed=0, mode="xyz", normals=False,
                          allowed_unknown=None, model_sha256=model_identity(model), data=str(data),
                          save_ply=False, _shapes={s.name: s for s in shapes})
    return task, _settings(cfg)


if __name__ == "__main__":
    main()
