"""How much a certify-pc score on a few shapes per category moves with the choice of shapes.

Reads certify-pc's per-shape ``results.jsonl`` files (for example one run per split of the same model), pools
the shapes by category, and prints the pooled certified accuracy (the mean over categories of their mean,
as certify-pc's own per-category balance gives with evenly spaced shapes) and the distribution of the score
of random subsets with ``--per-category`` shapes of every category, drawn without replacement. ``--mark``
names a results file whose score is placed in that distribution (its percentile).

    python tools/pointcloud_subset_spread.py runs/train/results.jsonl runs/val/results.jsonl \
        runs/test/results.jsonl --per-category 2 --mark runs/test16/results.jsonl
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    results: tyro.conf.Positional[tuple[Path, ...]]
    per_category: int = 2
    draws: int = 20000
    seed: int = 0
    mark: Path | None = None
    """A results file to place in the distribution (e.g. the default 16 test shapes)."""


def read_results(paths) -> dict[str, dict[str, float]]:
    """{category: {shape name: certified accuracy}} from certify-pc results files (a shape in several files
    counts once; the files must agree on it)."""
    from geocert.io import read_jsonl

    by_cat: dict[str, dict[str, float]] = {}
    for path in paths:
        if not Path(path).is_file():
            raise SystemExit(f"{path}: no such results file")
        for r in read_jsonl(path):
            seen = by_cat.setdefault(r["category"], {})
            if r["name"] in seen and abs(seen[r["name"]] - r["certified_accuracy"]) > 1e-12:
                raise SystemExit(f"{path}: {r['name']} has another certified accuracy than in an earlier file")
            seen[r["name"]] = float(r["certified_accuracy"])
    return by_cat


def balanced_score(by_cat: dict[str, dict[str, float]]) -> float:
    return float(np.mean([np.mean(list(v.values())) for v in by_cat.values()]))


def subset_scores(by_cat: dict[str, dict[str, float]], per_category: int, draws: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Scores of ``draws`` random subsets with ``per_category`` shapes of every category."""
    cats = [np.array(list(v.values())) for v in by_cat.values()]
    short = [k for k, v in zip(by_cat, cats, strict=True) if len(v) < per_category]
    if short:
        raise SystemExit(f"fewer than {per_category} shapes of {', '.join(short)}")
    picks = [np.argsort(rng.random((draws, len(v))), 1)[:, :per_category] for v in cats]
    return np.mean([v[p].mean(1) for v, p in zip(cats, picks, strict=True)], 0)


def main() -> None:
    args = tyro.cli(Args)
    by_cat = read_results(args.results)
    n = sum(len(v) for v in by_cat.values())
    scores = subset_scores(by_cat, args.per_category, args.draws, np.random.default_rng(args.seed))
    print(f"{n} shapes in {len(by_cat)} categories: pooled certified accuracy {balanced_score(by_cat):.4f}")
    print("  " + ", ".join(f"{c} {np.mean(list(v.values())):.3f} (sd {np.std(list(v.values())):.3f}, {len(v)})"
                           for c, v in by_cat.items()))
    q = np.percentile(scores, [5, 50, 95])
    print(f"subsets of {args.per_category} shapes per category: mean {scores.mean():.4f}, sd {scores.std():.4f}, "
          f"5/50/95% {q[0]:.4f} / {q[1]:.4f} / {q[2]:.4f}, share >= 0.70 {np.mean(scores >= 0.70):.3f}")
    if args.mark is not None:
        s = balanced_score(read_results([args.mark]))
        print(f"{args.mark}: {s:.4f}, percentile {100 * np.mean(scores < s):.0f}")


if __name__ == "__main__":
    main()
