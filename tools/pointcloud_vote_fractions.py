"""Quick proxy of certify-pc for comparing base models: per point, the fraction of M noise draws in which
the model predicts the true part; prints the share of points whose fraction exceeds the cut (≈ 0.82 is what
certify-pc's defaults need: τ = 0.75, n = 1000, α = 0.001, Holm over 2048 points) overall and per category.

With ``--calibrate bias|linear`` each checkpoint is first calibrated on the training shapes with the same
``calibrate_part_biases`` that ``train-pc --calibrate`` runs (``--save`` writes the calibrated checkpoint).
``--ensemble`` scores one model instead: the mean log-softmax of all the checkpoints (their calibrated
priors removed), calibrated jointly with ``--calibrate linear``.

    python tools/pointcloud_vote_fractions.py CKPT [CKPT ...] --split val --draws 200 [--calibrate linear]

``--oracle`` compares, shape by shape, the model with what it would certify given knowledge no model has
(same noise draws for both):

* ``context``: every noisy copy's points are classified with the cloud-level features (global feature,
  voxel grid) of one fixed noisy copy, so the rest of the cloud stops varying with the noise — how much the
  context's jitter costs;
* ``calibrate``: the linear calibration of ``train-pc --calibrate`` run on the test shape itself (its own
  labels, other noise draws) instead of on the training shapes;
* ``finetune``: every weight fine-tuned on the shape itself for ``--oracle-steps`` Adam steps on a sharp soft
  count of its points above the cut (softmax at temperature 0.1 over 32 noisy copies, sigmoid 0.01 wide).

    python tools/pointcloud_vote_fractions.py CKPT --split test --oracle finetune
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
    oracle: Literal["off", "context", "calibrate", "finetune"] = "off"
    """Per shape, the model against an oracle variant of it (see above)."""
    oracle_steps: int = 100
    oracle_lr: float = 3e-4
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


def shape_votes(model, pts, cat, sigma: float, draws: int, batch: int, gen, nrm=None, context=None):
    """``[N, NUM_PARTS]`` votes of ``model`` over ``draws`` noisy copies of one cloud ``pts [1, N, 3]``
    (the draws of ``noisy_part_logits``); ``context [1, N, C]``: the cloud-level features come from it."""
    import torch
    from geocert_pointcloud.data import NUM_PARTS
    from geocert_pointcloud.model import part_mask
    from geocert_pointcloud.train import noisy_part_logits

    votes = torch.zeros(pts.shape[1], NUM_PARTS)
    with torch.inference_mode():
        for start in range(0, draws, batch):
            k = min(batch, draws - start)
            z = noisy_part_logits(model, pts, cat, part_mask(cat), sigma=sigma, draws=k, generator=gen, normals=nrm,
                                  context=context)[0]
            votes += torch.nn.functional.one_hot(z.argmax(-1), NUM_PARTS).sum(0).float()
    return votes


def oracle_table(model, ckpt: dict, shapes, args: Args) -> None:
    """Per shape: the share of points above the cut for ``model`` and for its ``args.oracle`` variant."""
    import copy

    import numpy as np
    import torch
    from geocert_pointcloud.model import fuse_batchnorm, model_input
    from geocert_pointcloud.train import calibrate_part_biases, stack_normals, stack_shapes

    sigma, rows = ckpt["sigma"], []
    for i, sh in enumerate(shapes):
        pts, lab, cat = stack_shapes([sh])
        nrm = stack_normals([sh]) if ckpt.get("normals") else None
        def share(m, ctx=None, pts=pts, lab=lab, cat=cat, nrm=nrm, seed=args.seed + i):  # the same draws for both
            votes = shape_votes(m, pts, cat, sigma, args.draws, args.batch_size, torch.Generator().manual_seed(seed),
                                nrm, ctx)
            return float((votes.gather(1, lab[0][:, None])[:, 0] / args.draws > args.cut).float().mean())

        base = share(fused := fuse_batchnorm(model))
        other = torch.Generator().manual_seed(10_000 + args.seed + i)  # the oracle's own draws
        if args.oracle == "context":
            got = share(fused, model_input(pts + torch.randn(pts.shape, generator=other) * sigma, nrm))
        else:
            tuned = copy.deepcopy(model)
            if args.oracle == "calibrate":
                calibrate_part_biases(tuned, pts, lab, cat, sigma=sigma, draws=64, cut=args.cut, generator=other,
                                      linear=tuned.prior is not None, sample_points=pts.shape[1], normals=nrm)
            else:
                finetune_on_shape(tuned, pts, lab, cat, sigma, args, other, nrm)
            got = share(fuse_batchnorm(tuned))
        rows.append((base, got))
        print(f"  {i:2d} {sh.category:<9} model {base:.3f}  {args.oracle} oracle {got:.3f}", flush=True)
    base, got = np.mean(rows, axis=0)
    print(f"mean over {len(rows)} shapes: model {base:.3f}  {args.oracle} oracle {got:.3f}")


def finetune_on_shape(model, pts, lab, cat, sigma: float, args: Args, gen, nrm=None) -> None:
    """``--oracle finetune``: Adam on every weight but the prior, BatchNorm statistics frozen, maximising a
    sharp soft count of the shape's points whose vote fraction of the true part clears the cut."""
    import torch
    from geocert_pointcloud.model import part_mask
    from geocert_pointcloud.train import noisy_part_logits

    model.eval()
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("prior.")], lr=args.oracle_lr)
    for _ in range(args.oracle_steps):
        z = noisy_part_logits(model, pts, cat, part_mask(cat), sigma=sigma, draws=32, generator=gen, normals=nrm)
        vote = torch.softmax(z / 0.1, dim=-1)[0].gather(-1, lab[0][None, :, None].expand(32, -1, 1))[..., 0].mean(0)
        loss = -torch.sigmoid((vote - args.cut) / 0.01).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    import numpy as np
    import torch
    from geocert_pointcloud.data import CATEGORIES, load_shapes
    from geocert_pointcloud.model import fuse_batchnorm, load_checkpoint, save_checkpoint
    from geocert_pointcloud.scenes import default_dataset
    from geocert_pointcloud.train import stack_normals, stack_shapes

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
        shapes = load_shapes(data, split=args.split, num_shapes=args.num_shapes, num_points=ckpt["num_points"],
                             seed=0)
        if args.oracle != "off":
            if args.ensemble:
                raise SystemExit("--oracle takes one model, not --ensemble")
            oracle_table(model, ckpt, shapes, args)
            continue
        if not args.ensemble:
            model = fuse_batchnorm(model)
        gen = torch.Generator().manual_seed(args.seed)
        per_cat: dict[str, list[np.ndarray]] = {}
        per_part: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        with torch.inference_mode():
            for sh in shapes:
                pts, lab, cat = stack_shapes([sh])
                nrm = stack_normals([sh]) if ckpt.get("normals") else None
                votes = shape_votes(model, pts, cat, ckpt["sigma"], args.draws, args.batch_size, gen, nrm)
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
