"""Write the procedural ShapeNet-part stand-in dataset: ``python scenes/make_pointcloud.py --out DIR``.

The generator lives in :mod:`geocert_pointcloud.scenes`; ``geocert train-pc`` / ``certify-pc`` build the same
dataset into the cache on demand when they are run without a data argument.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    out: Path = Path("data/pointcloud_procedural")
    """Output folder (the shapenetcore_partanno_segmentation_benchmark_v0_normal layout)."""
    shapes_per_category: int = 20
    """Shapes per category (split 70/10/20 into train/val/test)."""
    num_points: int = 2500
    """Surface points written per shape."""
    seed: int = 0
    """Random seed (the dataset is deterministic for a seed)."""


def main() -> None:
    from geocert_pointcloud.scenes import PROCEDURAL_CATEGORIES, make_dataset

    args = tyro.cli(Args)
    out = make_dataset(args.out, shapes_per_category=args.shapes_per_category, num_points=args.num_points,
                       seed=args.seed)
    print(f"wrote {len(PROCEDURAL_CATEGORIES)} categories × {args.shapes_per_category} shapes to {out}")


if __name__ == "__main__":
    main()
