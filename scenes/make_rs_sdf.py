"""Write the bundled RS-SDF NeRF scene: ``python scenes/make_rs_sdf.py --out DIR``.

The generator lives in :mod:`geocert_rs_sdf.scenes` (a procedural textured cup with a hollow, a torus handle, a
checkered plate and a thin antenna, ray cast with open3d into the NeRF-synthetic layout, with its GT mesh);
``geocert train-nerf`` / ``geocert render`` build the same scene into the cache on demand when run without data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    out: Path = Path("data/rs_sdf_default")
    """Output folder (transforms_{train,val,test}.json, {train,val,test}/r_<i>.png, mesh_gt.ply)."""
    width: int = 100
    """Image width and height in pixels."""
    n_train: int = 100
    """Training views."""
    n_val: int = 10
    """Validation views."""
    n_test: int = 20
    """Test views."""
    seed: int = 0
    """Seed of the camera poses (the scene is deterministic for a seed)."""


def main() -> None:
    from geocert_rs_sdf.scenes import SceneSpec, make_scene

    args = tyro.cli(Args)
    spec = SceneSpec(width=args.width, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed)
    out = make_scene(args.out, spec, progress=True)
    print(f"wrote {args.n_train}/{args.n_val}/{args.n_test} views of {args.width}x{args.width} and mesh_gt.ply to {out}")


if __name__ == "__main__":
    main()
