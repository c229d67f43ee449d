"""Quick proxy of certify-pc for comparing base models: per point, the fraction of M noise draws in which
the model predicts the true part; prints the share of points whose fraction exceeds the cut (≈ 0.82 is what
certify-pc's defaults need: τ = 0.75, n = 1000, α = 0.001, Holm over 2048 points) overall and per category.

With ``--calibrate bias|linear`` each checkpoint is first calibrated on the training shapes with the same
``calibrate_part_biases`` that ``train-pc --calibrate`` runs (``--save`` writes the calibrated checkpoint).
``--ensemble`` scores one model instead: the mean log-softmax of all the checkpoints (their calibrated
priors removed), calibrated jointly with ``--calibrate linear``.

    python tools/pointcloud_vote_fractions.py CKPT [CKPT ...] --split val --draws 200 [--calibrate linear]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

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
    calibrate: Literal["off", "bias", "linear", "quadratic"] = "off"
    """Calibrate each checkpoint on the training shapes first (as train-pc --calibrate)."""
    reset_prior: bool = False
    """With --calibrate: drop the checkpoint's calibrated prior first (always done for a prior of another kind)."""
    calibration_cut: float = 0.82
    save: Path | None = None
    """With --calibrate and one checkpoint: write the calibrated checkpoint here."""
    per_part: bool = False
    """Also print per part: its share of the points, the share of its points above the cut (certified right)
    and of its points whose top part is another one above the cut (stably wrong)."""
    histogram: bool = False
    """Also print the share of the points in bands of their vote fraction for the true part."""
    ensemble: bool = False
    """Score the ensemble of the checkpoints (mean log-softmax over their category parts, their own priors
    removed, one linear prior calibrated on top) instead of each checkpoint."""


class Ensemble:
    """Mean log-softmax of several part segmenters over each cloud's category parts, plus a spatial prior."""

    def __init__(self, members):
        import torch

        self.members = members
        self.prior = torch.nn.Linear(3, members[0].num_parts).requires_grad_(False)
        torch.nn.init.zeros_(self.prior.weight)
        torch.nn.init.zeros_(self.prior.bias)

    def eval(self):
        return self

    def __call__(self, points, category):
        import torch
        from geocert_pointcloud.model import part_mask

        mask = part_mask(category.cpu())[:, None, :]
        logp = [torch.log_softmax(m(points, category).masked_fill(~mask, -1e9), -1) for m in self.members]
        return sum(logp) / len(logp) + self.prior(points[..., :3])


def ensemble(paths, args: Args, data: Path):
    """The jointly calibrated ensemble of ``paths`` and the first checkpoint's dict."""
    import geocert_pointcloud.train as train_lib
    import torch
    from geocert_pointcloud.data import load_shapes
    from geocert_pointcloud.model import fuse_batchnorm, load_checkpoint

    members, ckpt = [], None
    for path in paths:
        model, c = load_checkpoint(path)
        ckpt = ckpt or c
        if model.prior is not None:
            torch.nn.init.zeros_(model.prior.weight)
            torch.nn.init.zeros_(model.prior.bias)
        members.append(fuse_batchnorm(model))
    ens = Ensemble(members)
    shapes = load_shapes(data, split="train", num_shapes=0, num_points=ckpt["num_points"], seed=0)
    pts, lab, cat = train_lib.stack_shapes(shapes)
    fuse = train_lib.fuse_batchnorm
    train_lib.fuse_batchnorm = lambda m: m  # the members are folded already
    try:
        train_lib.calibrate_part_biases(ens, pts, lab, cat, sigma=ckpt["sigma"], draws=64, cut=args.calibration_cut,
                                        generator=torch.Generator().manual_seed(args.seed), linear=True)
    finally:
        train_lib.fuse_batchnorm = fuse
    return ens, ckpt


def calibrated(model, ckpt: dict, args: Args, data: Path):
    """``model`` calibrated on the training split (a copy with a spatial prior layer for ``linear``)."""
    import torch
    from geocert_pointcloud.data import load_shapes
    from geocert_pointcloud.model import build_model
    from geocert_pointcloud.train import calibrate_part_biases, stack_normals, stack_shapes

    kind = args.calibrate if args.calibrate in ("linear", "quadratic") else None
    if kind and (model.prior_kind != kind or args.reset_prior):
        with_prior = build_model({**ckpt["model"], "spatial_prior": kind})
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("prior.")}
        with_prior.load_state_dict(state, strict=False)
        model = with_prior.eval()
    shapes = load_shapes(data, split="train", num_shapes=0, num_points=ckpt["num_points"], seed=0)
    pts, lab, cat = stack_shapes(shapes)
    nrm = stack_normals(shapes) if ckpt.get("normals") else None
    coef = calibrate_part_biases(model, pts, lab, cat, sigma=ckpt["sigma"], draws=64, cut=args.calibration_cut,
                                 generator=torch.Generator().manual_seed(args.seed), normals=nrm,
                                 linear=kind is not None)
    for c, rows in coef.items():
        print(f"  {c:<10} " + " | ".join(" ".join(f"{v:+.2f}" for v in row) for row in rows))
    return model


def main() -> None:
    import numpy as np
    import torch
    from geocert_pointcloud.data import CATEGORIES, NUM_PARTS, load_shapes
    from geocert_pointcloud.model import fuse_batchnorm, load_checkpoint, part_mask, save_checkpoint
    from geocert_pointcloud.scenes import default_dataset
    from geocert_pointcloud.train import noisy_part_logits, stack_normals, stack_shapes

    args = tyro.cli(Args)
    torch.set_num_threads(1)
    data = args.data or default_dataset()
    if args.ensemble:
        ens, ckpt = ensemble(args.checkpoints, args, data)
    for path in ((" + ".join(map(str, args.checkpoints)),) if args.ensemble else args.checkpoints):
        if args.ensemble:
            model = ens
        else:
            model, ckpt = load_checkpoint(path)
        if args.calibrate != "off" and not args.ensemble:
            model = calibrated(model, ckpt, args, data)
            if args.save is not None:
                save_checkpoint(args.save, model, sigma=ckpt["sigma"], num_points=ckpt["num_points"],
                                categories=ckpt["categories"], train_config=ckpt["train_config"],
                                metrics=ckpt["metrics"], rotation_sigma_deg=ckpt.get("rotation_sigma_deg", 0.0))
        if not args.ensemble:
            model = fuse_batchnorm(model)
        shapes = load_shapes(data, split=args.split, num_shapes=args.num_shapes, num_points=ckpt["num_points"],
                             seed=0)
        gen = torch.Generator().manual_seed(args.seed)
        per_cat: dict[str, list[np.ndarray]] = {}
        per_part: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        with torch.inference_mode():
            for sh in shapes:
                pts, lab, cat = stack_shapes([sh])
                nrm = stack_normals([sh]) if ckpt.get("normals") else None
                votes = torch.zeros(pts.shape[1], NUM_PARTS)
                for start in range(0, args.draws, args.batch_size):
                    k = min(args.batch_size, args.draws - start)
                    z = noisy_part_logits(model, pts, cat, part_mask(cat), sigma=ckpt["sigma"], draws=k,
                                          generator=gen, normals=nrm)[0]
                    votes += torch.nn.functional.one_hot(z.argmax(-1), NUM_PARTS).sum(0).float()
                frac = (votes.gather(1, lab[0][:, None])[:, 0] / args.draws).numpy()
                wrong = ((votes.amax(1) / args.draws > args.cut) & (votes.argmax(1) != lab[0])).numpy()
                per_cat.setdefault(sh.category, []).append(frac)
                for part in np.unique(sh.labels):
                    m = sh.labels == part
                    per_part.setdefault((sh.category, int(part)), []).append(
                        (int(m.sum()), int((frac[m] > args.cut).sum()), int(wrong[m].sum())))
        allp = np.concatenate([np.concatenate(v) for v in per_cat.values()])
        cats = " ".join(f"{c[:5]} {np.mean(np.concatenate(per_cat[c]) > args.cut):.2f}"
                        for c in CATEGORIES if c in per_cat)
        print(f"{path}: p>{args.cut} {np.mean(allp > args.cut):.3f}  mean p {allp.mean():.3f} | {cats}", flush=True)
        if args.histogram:
            edges = (0, 0.1, 0.3, 0.5, 0.7, args.cut, 0.85, 0.95, 1.0)
            shares = np.histogram(allp, bins=edges)[0] / allp.size
            print("  " + "  ".join(f"[{a:g}, {b:g}{']' if b == 1.0 else ')'}: {v:.3f}"
                                   for a, b, v in zip(edges[:-1], edges[1:], shares, strict=True)))
        if args.per_part:
            for (c, part), rows in sorted(per_part.items()):
                n, right, wrong = np.sum(rows, axis=0)
                print(f"  {c:<9} part {part:2d}: share {n / allp.size:.3f}  certified right {right / n:.2f}  "
                      f"stably wrong {wrong / n:.2f}")


if __name__ == "__main__":
    main()
