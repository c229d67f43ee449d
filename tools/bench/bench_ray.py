"""Benchmark: ``geocert certify-pc`` at its default n on the local executor vs Ray with 1 and 2 local workers.

Runs the real command three times on the same shapes (``--threads 1``: one torch thread, as a Ray worker
uses), in this process, with one local Ray instance started beforehand (its start-up is timed separately).
The executors are wrapped to time every item as the driver receives it. Prints

- items/s per executor: steady state ((K − w) items between the w-th and the last result, w = workers) and
  end to end (from the call, with worker start-up and model load), with ratios from this one run;
- the per-item overhead of Ray: the wall time per item spent outside the certification itself (sampling +
  statistics, as each item records it) with 1 Ray worker minus the same with the local executor — so a
  machine that gets slower or faster between runs does not show as overhead — and the bare round trip of
  one item's result through Ray (an actor returning arrays of the same size);
- whether all three runs gave the same per-shape arrays (bit for bit);
- a scaling estimate for ShapeNet-part's 2,874 test shapes at n = 10,000 on N workers, from the measured
  numbers and the assumptions it prints.

    python tools/bench/bench_ray.py [--num-shapes 8] [--n 1000] [--checkpoint auto]
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import tyro

from geocert.pipeline.dataset import DatasetTask, Sample

SHAPENET_TEST_SHAPES = 2874


@dataclasses.dataclass(frozen=True)
class Args:
    num_shapes: int = 8
    """Shapes per run (K); the steady-state rates use the last K − workers of them."""
    n: int = 1000
    """Estimation samples (certify-pc's default)."""
    checkpoint: str = "auto"
    """certify-pc --checkpoint (auto: the default model, trained once into the cache)."""
    output: Path | None = None
    """Where the three runs go (default: a temporary folder, removed)."""
    round_trips: int = 20
    """Round trips of one item's result through Ray to time."""
    wait_s: float = 1.0
    """Seconds each item of the CPU-free executor check waits."""


class Timed:
    """An executor that passes items through and records when the driver receives each of them."""

    def __init__(self, inner):
        self.inner = inner
        self.start = 0.0
        self.arrivals: list[float] = []
        self.handling: list[float] = []
        self.payload = None

    def run(self, task, settings, names, device):
        self.start = time.perf_counter()
        for result in self.inner.run(task, settings, names, device):
            self.arrivals.append(time.perf_counter())
            self.payload = result
            yield result
            self.handling.append(time.perf_counter() - self.arrivals[-1])  # the driver writing the result


def rates(timed: Timed, workers: int) -> tuple[float, float]:
    """(steady-state items/s, end-to-end items/s)."""
    t = timed.arrivals
    steady = (len(t) - workers) / (t[-1] - t[workers - 1]) if len(t) > workers else float("nan")
    return steady, len(t) / (t[-1] - timed.start)


def round_trip_s(payload, repeats: int) -> float:
    """Median seconds for one Ray round trip carrying ``payload`` back (submit, wait, fetch, unpickle)."""
    import ray

    @ray.remote(num_cpus=1)
    class Echo:
        def __init__(self, value):
            self.value = value

        def get(self, name):
            return self.value

    echo = Echo.remote(payload)
    ray.get(echo.get.remote("warm-up"))
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        ray.wait([ref := echo.get.remote(str(i))], num_returns=1)
        ray.get(ref)
        times.append(time.perf_counter() - t0)
    ray.kill(echo)
    return statistics.median(times)


class WaitingTask(DatasetTask):
    """Items that wait ``wait_s`` without using the CPU (as a GPU-bound item looks from the CPU side), with a
    trivial model: what the executor alone allows, whatever CPU the machine has to spare."""

    num_classes = 2

    def __init__(self, wait_s: float):
        self.wait_s = wait_s

    def load_model(self, device):
        return None

    def load_item(self, name):
        import torch

        time.sleep(self.wait_s)
        return Sample(torch.zeros(4, 3))

    def base_model(self, model, sample, device):
        import torch

        return (lambda batch: torch.zeros(batch.shape[:2], dtype=torch.long)), sample.x


def waiting_rate(workers: int, items: int, wait_s: float) -> float:
    """Steady items/s of the Ray executor on :class:`WaitingTask` items."""
    import torch

    from geocert.pipeline.dataset import CertifySettings
    from geocert.pipeline.ray_executor import RayExecutor

    settings = CertifySettings(sigma=0.1, n0=2, n=60, tau=0.6, alpha=0.1, batch_size=60)
    timed = Timed(RayExecutor(workers=workers))
    names = [f"wait-{i:02d}" for i in range(items)]
    for _ in timed.run(WaitingTask(wait_s), settings, names, torch.device("cpu")):
        pass
    return rates(timed, workers)[0]


def same_arrays(a: Path, b: Path) -> bool:
    import numpy as np

    files = sorted(p.name for p in (a / "shapes").glob("*.npz"))
    if files != sorted(p.name for p in (b / "shapes").glob("*.npz")):
        return False
    for name in files:
        with np.load(a / "shapes" / name) as x, np.load(b / "shapes" / name) as y:
            if x.files != y.files or not all(np.array_equal(x[k], y[k], equal_nan=True) for k in x.files):
                return False
    return True


def main() -> None:
    args = tyro.cli(Args)
    root = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        measure(args, root)
    finally:
        if args.output is None:
            shutil.rmtree(root, ignore_errors=True)


def measure(args: Args, root: Path) -> None:
    import ray

    from geocert.cli import main as cli
    from geocert.pipeline import executors

    common = ["certify-pc", "--checkpoint", args.checkpoint, "--num-shapes", str(args.num_shapes), "--n",
              str(args.n), "--threads", "1", "--no-save-ply"]
    # the default model and data set exist before anything is timed
    assert cli([*common[:3], "--num-shapes", "1", "--n", "60", "--n0", "4", "--output", str(root / "warm")]) == 0

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    ray_start = time.perf_counter() - t0

    made: list[Timed] = []
    original = dict(executors.EXECUTORS)
    for key, factory in original.items():
        executors.EXECUTORS[key] = lambda factory=factory, **kw: made.append(Timed(factory(**kw))) or made[-1]
    runs = {"local": ([], 1), "ray, 1 worker": (["--executor", "ray", "--workers", "1"], 1),
            "ray, 2 workers": (["--executor", "ray", "--workers", "2"], 2)}
    results = {}
    try:
        for label, (extra, workers) in runs.items():
            out = root / label.replace(", ", "_").replace(" ", "")
            assert cli([*common, *extra, "--output", str(out)]) == 0, label
            timed = made[-1]
            records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
            results[label] = (timed, workers, out, records)
        trip = round_trip_s(made[0].payload, args.round_trips)
        waiting = {w: waiting_rate(w, args.num_shapes, args.wait_s) for w in (1, 2)}
    finally:
        executors.EXECUTORS.update(original)
        ray.shutdown()

    k = args.num_shapes
    print(f"\ncertify-pc, {k} shapes × 2048 points, n0 = 10, n = {args.n}, one torch thread per worker; "
          f"Ray start-up {ray_start:.1f} s (not counted below)")
    print(f"{'executor':16} {'steady items/s':>15} {'end-to-end items/s':>19} {'s/item':>8}  in-item s (mean)")
    steady, outside = {}, {}
    for label, (timed, workers, _, records) in results.items():
        s, e = rates(timed, workers)
        inside = statistics.mean(r["sampling_s"] + r["statistics_s"] for r in records[workers:])
        steady[label] = s
        outside[label] = (workers / s - inside, inside)  # per item and worker: wall time not spent certifying
        print(f"{label:16} {s:15.4f} {e:19.4f} {1 / s:8.2f}  {inside:.2f}")
    local, one, two = (steady[label] for label in runs)
    print(f"ratios (this run): ray 1 worker / local {one / local:.2f}×, ray 2 workers / ray 1 worker "
          f"{two / one:.2f}×, ray 2 workers / local {two / local:.2f}×")
    out_local, (out_one, in_one) = outside["local"][0], outside["ray, 1 worker"]
    print(f"time per item outside the certification (load, clean pass, dispatch, writes): local {out_local:.3f} s, "
          f"ray 1 worker {out_one:.3f} s")
    print(f"Ray overhead per item: {out_one - out_local:+.3f} s = {(out_one - out_local) / in_one:+.2%} of the "
          f"certification time ({in_one:.2f} s); bare round trip of one item's result through Ray "
          f"{trip * 1e3:.2f} ms ({trip / in_one:.3%})")
    print(f"the executor alone (items that wait {args.wait_s:g} s without CPU, {k} items): 1 worker "
          f"{waiting[1]:.3f} items/s, 2 workers {waiting[2]:.3f} items/s = {waiting[2] / waiting[1]:.2f}×")
    same = all(same_arrays(results["local"][2], results[label][2]) for label in runs)
    print(f"per-shape arrays identical across the three runs (bit for bit): {same}")

    # ---- scaling estimate
    handling = statistics.mean(results["ray, 2 workers"][0].handling) + trip
    fwd = statistics.mean(r["forward_s"] / (10 + args.n) for r in results["local"][3])
    per_shape = {  # seconds per shape at n = 10,000 on one worker
        "CPU": fwd * (10 + 10_000),
        "GPU-day": 86_400 / SHAPENET_TEST_SHAPES,
        "paper×10": 540.0,
    }
    print(f"\nScaling estimate, ShapeNet-part test ({SHAPENET_TEST_SHAPES} shapes × 2048 points, n0 = 10, "
          "n = 10,000), hours on N workers:")
    print(f"  CPU      = {per_shape['CPU']:.0f} s/shape: one CPU worker as measured here ({fwd * 1e3:.2f} ms of this "
          "PointNet per noisy cloud, one thread, × 10,010)")
    print(f"  GPU-day  = {per_shape['GPU-day']:.1f} s/shape: one GPU worker doing the split in a day (the issue's "
          "figure; assumed, not measured)")
    print("  paper×10 = 540 s/shape: SegCertify's 54 s per cloud at n = 1,000, linear in n (assumed)")
    print(f"  assumes: workers independent (one item at a time each), {handling * 1e3:.1f} ms of driver time per "
          "result (measured: writing one result here + its Ray round trip), shapes and model on a shared file "
          "system, one minute of start-up (imports, model load) paid once")
    print(f"  {'N':>5} " + " ".join(f"{k:>10}" for k in per_shape))
    for n_workers in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        cells = []
        for t in per_shape.values():
            rate = min(n_workers / t, 1 / handling)  # items/s: the workers, or the driver when it is slower
            mark = "*" if n_workers / t > 1 / handling else " "
            cells.append(f"{(SHAPENET_TEST_SHAPES / rate + 60) / 3600:9.2f}{mark}")
        print(f"  {n_workers:5d} " + " ".join(cells))
    print(f"  * driver-bound: beyond per-shape time / driver time per result (GPU-day: "
          f"≈ {per_shape['GPU-day'] / handling:.0f} workers) adding workers no longer helps")

if __name__ == "__main__":
    main()
