"""Write connected2d scribble tasks: python scenes/make_connected2d.py --out DIR [--task horse|...|all]."""

import argparse

from geocert_connected2d.scenes import TASKS, make_task

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="output folder (one subfolder per task)")
    ap.add_argument("--task", default="all", choices=("all",) + TASKS)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for name in TASKS if a.task == "all" else (a.task,):
        print(make_task(name, f"{a.out}/{name}", seed=a.seed))
