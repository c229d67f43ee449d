"""Time ``geocert.report.write_report`` on existing run folders and print page sizes and build/run ratios.

    python tools/bench/bench_report.py OUTPUT_DIR [OUTPUT_DIR ...] [--run-seconds S ...]

"cold": a fresh Python process (imports of numpy, imageio and the plugins included); "warm": a second build
in that process (closer to the run layer's in-process call after a command). The run's time is taken from
``--run-seconds`` (one per folder, e.g. measured with ``time``) or else from metrics.json's total timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = """
import sys, time
t = time.perf_counter()
from geocert.report import write_report
p = write_report(sys.argv[1]); cold = time.perf_counter() - t
t = time.perf_counter(); write_report(sys.argv[1]); warm = time.perf_counter() - t
print(cold, warm, p.stat().st_size)
"""


def _run_seconds(run: Path) -> float | None:
    try:
        m = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    for getter in (lambda: m["timings"]["total_s"], lambda: m["total_seconds"], lambda: m["timing_s"]["total"],
                   lambda: m["train_s"]):
        try:
            return float(getter())
        except (KeyError, TypeError, ValueError):
            continue
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--run-seconds", nargs="*", type=float, default=[])
    args = ap.parse_args()
    print(f"{'run':<40} {'cold s':>7} {'warm s':>7} {'MB':>6} {'run s':>8} {'cold/run':>9} {'warm/run':>9}")
    for i, run in enumerate(args.runs):
        out = subprocess.run([sys.executable, "-c", _CHILD, str(run)], capture_output=True, text=True, check=True)
        cold, warm, size = (float(v) for v in out.stdout.split())
        secs = args.run_seconds[i] if i < len(args.run_seconds) else _run_seconds(run)
        ratios = [f"{100 * t / secs:8.1f}%" if secs else f"{'-':>9}" for t in (cold, warm)]
        print(f"{str(run)[-40:]:<40} {cold:7.2f} {warm:7.2f} {size / 1e6:6.2f} {secs or float('nan'):8.1f} "
              f"{ratios[0]} {ratios[1]}")


if __name__ == "__main__":
    main()
