"""Quick proxy of certify-pc for comparing base models: per point, the fraction of M noise draws in which
the model predicts the true part; prints the share of points whose fraction exceeds the cut (≈ 0.82 is what
certify-pc's defaults need: τ = 0.75, n = 1000, α = 0.001, Holm over 2048 points) overall and per category.

    python tools/pointcloud_vote_fractions.py CKPT [CKPT ...] --split val --draws 200
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro


@dataclasses.dataclass(frozen=True)
class Args:
    checkpoints: tyro.conf.Positional[tuple[Path, ...]]
    data: Path | None = None
    split: str = "val"
    num_shapes: int = 16
    """Evenly spaced shapes of the split (0 = all), as certify-pc selects them."""
    draws: int = 200
    cut: float = 0.82
    batch_size: int = 50
    seed: int = 0


def main() -> None:
    import numpy as np
    import torch
    from geocert_pointcloud.data import CATEGORIES, load_shapes
    from geocert_pointcloud.model import fuse_batchnorm, part_mask
    from geocert_pointcloud.scenes import default_dataset
    from geocert_pointcloud.train import load_checkpoint, noisy_part_logits, stack_normals, stack_shapes

    args = tyro.cli(Args)
    torch.set_num_threads(1)
    for path in args.checkpoints:
        model, ckpt = load_checkpoint(path)
        model = fuse_batchnorm(model)
        shapes = load_shapes(args.data or default_dataset(), split=args.split, num_shapes=args.num_shapes,
                             num_points=ckpt["num_points"], seed=0)
        gen = torch.Generator().manual_seed(args.seed)
        per_cat: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for sh in shapes:
                pts, lab, cat = stack_shapes([sh])
                nrm = stack_normals([sh]) if ckpt.get("normals") else None
                hits = torch.zeros(pts.shape[1])
                for start in range(0, args.draws, args.batch_size):
                    k = min(args.batch_size, args.draws - start)
                    z = noisy_part_logits(model, pts, cat, part_mask(cat), sigma=ckpt["sigma"], draws=k,
                                          generator=gen, normals=nrm)[0]
                    hits += (z.argmax(-1) == lab).float().sum(0)
                per_cat.setdefault(sh.category, []).append((hits / args.draws).numpy())
        allp = np.concatenate([np.concatenate(v) for v in per_cat.values()])
        cats = " ".join(f"{c[:5]} {np.mean(np.concatenate(per_cat[c]) > args.cut):.2f}"
                        for c in CATEGORIES if c in per_cat)
        print(f"{path}: p>{args.cut} {np.mean(allp > args.cut):.3f}  mean p {allp.mean():.3f} | {cats}", flush=True)


if __name__ == "__main__":
    main()
