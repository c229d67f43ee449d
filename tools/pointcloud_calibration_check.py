"""Apply the class-prior calibration of ``geocert train-pc`` to an existing checkpoint (experiments).

    python tools/pointcloud_calibration_check.py CKPT OUT.pt --split train --draws 64 --cut 0.82
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    checkpoint: tyro.conf.Positional[Path]
    output: tyro.conf.Positional[Path]
    data: Path | None = None
    split: str = "train"
    draws: int = 64
    cut: float = 0.82
    sample_points: int = 512
    seed: int = 0
    linear: bool = False
    """Affine-in-xyz per-part prior instead of a constant bias."""


def main() -> None:
    import torch
    from geocert_pointcloud.data import load_shapes
    from geocert_pointcloud.model import build_model
    from geocert_pointcloud.scenes import default_dataset
    from geocert_pointcloud.train import (
        calibrate_part_biases,
        load_checkpoint,
        save_checkpoint,
        stack_normals,
        stack_shapes,
    )

    args = tyro.cli(Args)
    torch.set_num_threads(1)
    model, ckpt = load_checkpoint(args.checkpoint)
    if args.linear and model.prior is None:
        spec = {**ckpt["model"], "spatial_prior": True}
        with_prior = build_model(spec)
        with_prior.load_state_dict(model.state_dict(), strict=False)
        model = with_prior.eval()
    shapes = load_shapes(args.data or default_dataset(), split=args.split, num_shapes=0,
                         num_points=ckpt["num_points"], seed=ckpt["train_config"]["seed"])
    pts, lab, cat = stack_shapes(shapes)
    nrm = stack_normals(shapes) if ckpt.get("normals") else None
    biases = calibrate_part_biases(model, pts, lab, cat, sigma=ckpt["sigma"], draws=args.draws, cut=args.cut,
                                   generator=torch.Generator().manual_seed(args.seed),
                                   sample_points=args.sample_points, normals=nrm, linear=args.linear)
    for c, b in biases.items():
        print(f"{c:<10} " + " | ".join(" ".join(f"{v:+.2f}" for v in row) for row in b))
    save_checkpoint(args.output, model, sigma=ckpt["sigma"], num_points=ckpt["num_points"],
                    categories=ckpt["categories"], train_config=ckpt["train_config"], metrics=ckpt["metrics"],
                    rotation_sigma_deg=ckpt.get("rotation_sigma_deg", 0.0))


if __name__ == "__main__":
    main()
