"""``geocert train-pc``: train the PointNet base model f_σ under Gaussian xyz noise and save a checkpoint."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from geocert.errors import InputError, ParameterError
from geocert.io import read_checkpoint
from geocert_pointcloud.data import (
    CATEGORIES,
    CATEGORY_PARTS,
    NUM_CATEGORIES,
    NUM_PARTS,
    Shape,
    ShapeNetPart,
    evenly_spaced,
)
from geocert_pointcloud.evaluate import miou_summary, shape_iou
from geocert_pointcloud.model import PointNetPartSeg, build_model, part_mask, predict_parts, rotate_about_up

__all__ = ["run_train", "train_model", "evaluate_model", "load_checkpoint", "save_checkpoint", "stack_shapes"]

CHECKPOINT_FORMAT = "geocert-pointcloud-pointnet/1"
# version of the model `geocert train-pc` trains with its defaults; the `--checkpoint auto` cache file name
# carries it, so a change of the defaults retrains the cached default model (2: certification-aware training)
DEFAULT_MODEL_VERSION = 2


def stack_shapes(shapes: list[Shape]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``points [S, N, 3]`` float32, ``labels [S, N]`` int64, ``categories [S]`` int64 (index or -1)."""
    pts = torch.from_numpy(np.stack([s.points for s in shapes])).float()
    lab = torch.from_numpy(np.stack([s.labels for s in shapes])).long()
    cat = torch.tensor([CATEGORIES.index(s.category) if s.category else -1 for s in shapes], dtype=torch.long)
    return pts, lab, cat


def stack_normals(shapes: list[Shape]) -> torch.Tensor:
    """``[S, N, 3]`` float32 normals; :class:`InputError` naming the first file without normals."""
    for s in shapes:
        if s.normals is None:
            raise InputError(f"{s.source}: no normals (x y z nx ny nz columns), needed by a --normals model")
    return torch.from_numpy(np.stack([s.normals for s in shapes])).float()


def model_input(points: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
    """The network input: noisy ``points [B, N, 3]``, with the (unperturbed) ``normals`` appended if given."""
    return points if normals is None else torch.cat([points, normals.expand_as(points)], dim=-1)


def noisy_part_logits(model: PointNetPartSeg, x: torch.Tensor, categories: torch.Tensor, masks: torch.Tensor, *,
                      sigma: float, draws: int, generator: torch.Generator,
                      normals: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``[B, K, N, P]`` of ``draws`` = K independent noisy copies x + N(0, σ²I) of each cloud ``x [B, N, 3]``,
    with the parts outside each cloud's category (``masks [B, P]`` False) set to -1e9."""
    b, k = x.shape[0], draws
    xk = x.repeat_interleave(k, dim=0)
    xk = xk + torch.randn(xk.shape, generator=generator) * sigma
    nrm = normals.repeat_interleave(k, dim=0) if normals is not None else None
    logits = model(model_input(xk, nrm), categories.repeat_interleave(k))
    logits = logits.masked_fill(~masks.repeat_interleave(k, dim=0)[:, None, :], -1e9)
    return logits.reshape(b, k, *logits.shape[1:])


def noise_loss(logits: torch.Tensor, labels: torch.Tensor, *, consistency: float = 0.0,
               entropy: float = 0.0, count: float = 0.0, cut: float = 0.82, width: float = 0.05) -> torch.Tensor:
    """Training loss from the logits ``[B, K, N, P]`` of K noisy copies of each cloud and ``labels [B, N]``.

    Cross-entropy averaged over the copies; with K > 1 and ``consistency`` λ > 0 plus λ·KL(p̄ ‖ p_k), the
    divergence of each copy's prediction p_k from their mean p̄ (consistency regularisation, Jeong & Shin
    2020), and ``entropy`` η·H(p̄): both push the noisy predictions of a point to agree, which is what the
    smoothed classifier's vote fraction, and so the certificate, needs."""
    b, k, n, p = logits.shape
    logp = torch.log_softmax(logits, dim=-1)
    y = labels[:, None, :, None].expand(b, k, n, 1)
    loss = -logp.gather(-1, y).mean()
    if k > 1 and (consistency > 0 or entropy > 0):
        probs = logp.exp()
        mean = probs.mean(dim=1)  # [B, N, P]
        ent = -torch.special.xlogy(mean, mean).sum(-1)  # H(p̄)
        # KL(p̄ ‖ p_k) averaged over k = -H(p̄) - Σ p̄ · mean_k log p_k
        kl = -ent - (mean * logp.mean(dim=1)).sum(-1)
        loss = loss + consistency * kl.mean() + entropy * ent.mean()
    if count > 0:
        # soft count of the points whose mean probability of the true part clears the cut: its gradient
        # vanishes for points far below (given up) and far above (already certified)
        vote = logp.exp().gather(-1, y).squeeze(-1).mean(dim=1)  # [B, N]
        loss = loss - count * torch.sigmoid((vote - cut) / width).mean()
    return loss


def train_model(model: PointNetPartSeg, points: torch.Tensor, labels: torch.Tensor, categories: torch.Tensor, *,
                sigma: float, epochs: int, batch_size: int, lr: float, generator: torch.Generator,
                rotation_sigma: float = 0.0, train_points: int = 0, progress: bool = True,
                normals: torch.Tensor | None = None, noise_draws: int = 1, consistency: float = 0.0,
                entropy: float = 0.0, count: float = 0.0, cut: float = 0.82, scale_jitter: float = 0.0,
                ) -> list[float]:
    """Train in place with noise augmentation x + N(0, σ²I) (and optional up-axis rotation of N(0, rot²)
    radians); the loss (:func:`noise_loss`) is cross-entropy over each shape's own category parts on
    ``noise_draws`` noisy copies of every cloud, plus the consistency terms. Each step uses a random subset
    of ``train_points`` points per cloud (0 = all). ``normals [S, N, 3]`` (optional) are appended to the
    noisy coordinates as features, rotated with the cloud but never noised. Returns the per-epoch loss."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(points) / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    masks = part_mask(categories)
    losses = []
    bar = tqdm(range(epochs), desc="train-pc", unit="epoch", disable=not progress, file=sys.stderr)
    model.train()
    for _ in bar:
        order = torch.randperm(len(points), generator=generator)
        run, seen = 0.0, 0
        for i in range(0, len(points), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and len(points) >= 2 and noise_draws < 2:  # BatchNorm needs > 1 cloud
                continue
            x, y = points[idx], labels[idx]
            nrm = normals[idx] if normals is not None else None
            if 0 < train_points < points.shape[1]:
                sub = torch.rand(len(idx), points.shape[1], generator=generator).argsort(dim=1)[:, :train_points]
                x = x.gather(1, sub[..., None].expand(-1, -1, 3))
                y = y.gather(1, sub)
                nrm = nrm.gather(1, sub[..., None].expand(-1, -1, 3)) if nrm is not None else None
            if rotation_sigma > 0:
                ang = torch.randn(len(idx), generator=generator) * rotation_sigma
                x = torch.cat([rotate_about_up(x[j], ang[j:j + 1]) for j in range(len(idx))])
                if nrm is not None:
                    nrm = torch.cat([rotate_about_up(nrm[j], ang[j:j + 1]) for j in range(len(idx))])
            if scale_jitter > 0:  # anisotropic scaling of each training cloud by U(1 - s, 1 + s) per axis
                x = x * (1 + scale_jitter * (2 * torch.rand(len(idx), 1, 3, generator=generator) - 1))
            logits = noisy_part_logits(model, x, categories[idx], masks[idx], sigma=sigma, draws=noise_draws,
                                       generator=generator, normals=nrm)
            loss = noise_loss(logits, y, consistency=consistency, entropy=entropy, count=count, cut=cut)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += float(loss.detach()) * len(idx)
            seen += len(idx)
        losses.append(run / max(seen, 1))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def _count_above(scores: torch.Tensor, target: torch.Tensor, cut: float) -> int:
    """How many points have a vote fraction of their ``target [M]`` above ``cut``, from ``scores [K, M, P]``
    of K noise draws."""
    return int(((scores.argmax(-1) == target).float().mean(0) > cut).sum())


@torch.inference_mode()
def calibrate_part_biases(model: PointNetPartSeg, points: torch.Tensor, labels: torch.Tensor,
                          categories: torch.Tensor, *, sigma: float, draws: int, cut: float,
                          generator: torch.Generator, linear: bool = False, sample_points: int = 512,
                          normals: torch.Tensor | None = None, steps: tuple[float, ...] = (1.0, 0.3, 0.1),
                          ) -> dict[str, list[list[float]]]:
    """Class-prior calibration of the smoothed decision: per category, add to its parts' logits a constant
    (``linear``: an affine function ``w·xyz + b`` of the point's own noisy coordinates, the model's
    ``prior`` layer) chosen so that as many points as possible of the given shapes get a vote fraction
    P(argmax = true part) above ``cut`` under noise σ — the count certification rewards — instead of the
    most votes on average that training aims at.

    ``points [S, N, 3]`` (clean), ``labels [S, N]``, ``categories [S]``. Each shape is classified under
    ``draws`` noise draws; the vote fractions of ``sample_points`` random points per shape are then
    maximised by coordinate search over each part's coefficients (the first part of a category stays at 0),
    with step sizes ``steps`` (each tried from -6 to +6 steps). Changes ``model`` in place (its ``prior``
    layer, or the last layer's bias when it has none); returns ``[b, w_x, w_y, w_z]`` per part per category."""
    model.eval()
    by_cat: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for i in range(len(points)):
        c = int(categories[i])
        if c < 0:
            continue
        parts = torch.tensor(CATEGORY_PARTS[CATEGORIES[c]])
        sub = torch.randperm(points.shape[1], generator=generator)[:sample_points]
        xk = points[i:i + 1].expand(draws, -1, -1)
        xk = xk + torch.randn(xk.shape, generator=generator) * sigma
        nrm = normals[i:i + 1] if normals is not None else None
        logits = model(model_input(xk, nrm), categories[i:i + 1].expand(draws))  # [K, N, P]
        target = (labels[i, sub, None] == parts[None]).float().argmax(-1)  # index into the category's parts
        feats = torch.cat([torch.ones(draws, len(sub), 1), xk[:, sub]], dim=-1)  # [K, M, 4]: 1, x, y, z
        by_cat.setdefault(c, []).append((logits[:, sub][..., parts], feats, target))
    nfeat = 4 if linear else 1
    out = {}
    for c, items in sorted(by_cat.items()):
        logits = torch.cat([z for z, _, _ in items], dim=1)  # [K, M, Pc]
        feats = torch.cat([f for _, f, _ in items], dim=1)[..., :nfeat]  # [K, M, F]
        target = torch.cat([t for _, _, t in items])  # [M]
        coef = torch.zeros(logits.shape[-1], nfeat)  # [Pc, F]
        best = _count_above(logits, target, cut)
        for step in steps:
            for j in range(1, len(coef)):
                for f in range(nfeat):
                    base = coef
                    for d in range(-6, 7):
                        if d == 0:
                            continue
                        trial = base.clone()
                        trial[j, f] += d * step
                        got = _count_above(logits + feats @ trial.T, target, cut)
                        if got > best:
                            best, coef = got, trial
        parts = list(CATEGORY_PARTS[CATEGORIES[c]])
        if model.prior is not None:
            model.prior.bias[parts] += coef[:, 0]
            model.prior.weight[parts] += coef[:, 1:] if linear else 0.0
        elif linear:
            raise ValueError("linear calibration needs a model built with spatial_prior=True")
        else:
            model.head[-1].bias[parts] += coef[:, 0]
        out[CATEGORIES[c]] = coef.tolist()
    return out


@torch.inference_mode()
def evaluate_model(model: PointNetPartSeg, shapes: list[Shape], *, sigma: float, generator: torch.Generator,
                   batch_size: int = 16, use_normals: bool = False) -> dict:
    """Per-point accuracy and instance/class mIoU on clean clouds and on one noisy draw (σ)."""
    model.eval()
    out = {}
    for tag, s in (("clean", 0.0), ("noisy", sigma)):
        ious, correct, total = [], 0, 0
        for i in range(0, len(shapes), batch_size):
            chunk = shapes[i:i + batch_size]
            pts, lab, cat = stack_shapes(chunk)
            if s > 0:
                pts = pts + torch.randn(pts.shape, generator=generator) * s
            nrm = stack_normals(chunk) if use_normals else None
            pred = predict_parts(model, model_input(pts, nrm), cat, part_mask(cat)).numpy()
            for p, shp in zip(pred, chunk, strict=False):
                ious.append(shape_iou(p, shp.labels, CATEGORY_PARTS[shp.category]))
                correct += int((p == shp.labels).sum())
                total += p.size
        summ = miou_summary(ious, [sh.category for sh in shapes])
        out[tag] = {"accuracy": correct / max(total, 1), **summ}
    return out


def save_checkpoint(path: Path, model: PointNetPartSeg, *, sigma: float, num_points: int, categories: list[str],
                    train_config: dict, metrics: dict, rotation_sigma_deg: float = 0.0) -> None:
    import io

    from geocert.io import atomic_write

    buf = io.BytesIO()
    torch.save({
        "format": CHECKPOINT_FORMAT,
        "model": {"arch": "pointnet", "width": model.width, "num_parts": model.num_parts,
                  "num_categories": model.num_categories, "in_channels": model.in_channels,
                  "spatial_prior": model.prior is not None},
        "normals": model.in_channels == 6,
        "state_dict": model.state_dict(),
        "sigma": sigma,
        "rotation_sigma_deg": rotation_sigma_deg,
        "num_points": num_points,
        "categories": categories,
        "train_config": train_config,
        "metrics": metrics,
    }, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_checkpoint(path: Path) -> tuple[PointNetPartSeg, dict]:
    """Model (eval mode) and checkpoint dict; :class:`InputError` naming the file when missing/invalid."""
    path = Path(path)
    ckpt = read_checkpoint(path, hint=" (train one with `geocert train-pc`)")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a geocert train-pc checkpoint")
    try:
        model = build_model(ckpt["model"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:
        raise InputError(f"{path}: checkpoint does not match the PointNet model ({type(exc).__name__})") from None
    if model.num_parts != NUM_PARTS or model.num_categories != NUM_CATEGORIES:
        raise InputError(f"{path}: checkpoint has {model.num_parts} parts / {model.num_categories} categories, "
                         f"expected {NUM_PARTS} / {NUM_CATEGORIES}")
    model.eval()
    return model, ckpt


def _validate(cfg) -> None:
    from geocert.validate import check_positive_int, check_sigma

    check_sigma(cfg.sigma)
    for name in ("epochs", "batch_size", "width", "num_points", "threads", "noise_draws", "calibration_draws"):
        check_positive_int(getattr(cfg, name), name.replace("_", "-"))
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ParameterError(f"lr must be > 0, got {cfg.lr}")
    if not (math.isfinite(cfg.scale_jitter) and 0 <= cfg.scale_jitter < 1):
        raise ParameterError(f"scale-jitter must lie in [0, 1), got {cfg.scale_jitter}")
    if cfg.max_train_shapes < 0 or cfg.eval_shapes < 0 or cfg.train_points < 0:
        raise ParameterError("max-train-shapes, eval-shapes and train-points must be >= 0 (0 = all)")
    if not (math.isfinite(cfg.rotation_sigma_deg) and cfg.rotation_sigma_deg >= 0):
        raise ParameterError(f"rotation-sigma-deg must be >= 0, got {cfg.rotation_sigma_deg}")
    for name in ("consistency", "entropy", "count_loss"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            raise ParameterError(f"{name} must be >= 0, got {v}")
    if not (0 < cfg.calibration_cut < 1):
        raise ParameterError(f"calibration-cut must lie in (0, 1), got {cfg.calibration_cut}")


def run_train(cfg) -> dict:
    from tqdm.auto import tqdm

    from geocert.io import write_config, write_json
    from geocert_pointcloud.config import PLUGIN_NAME, PLUGIN_VERSION
    from geocert_pointcloud.scenes import default_dataset

    _validate(cfg)
    torch.set_num_threads(cfg.threads)
    root = Path(cfg.data) if cfg.data is not None else default_dataset()
    ds = ShapeNetPart(root)
    train_items = ds.items("train")
    test_items = ds.items("test")
    if not train_items:
        raise InputError(f"{ds.split_file('train')}: no training shapes")
    if not test_items:
        raise InputError(f"{ds.split_file('test')}: no test shapes")
    train_items = [train_items[i] for i in evenly_spaced(cfg.max_train_shapes, len(train_items))]
    test_items = [test_items[i] for i in evenly_spaced(cfg.eval_shapes, len(test_items))]
    def load(items, desc):
        # the context manager clears the bar before an InputError propagates, so the CLI's one-line
        # error starts its own line instead of trailing the half-drawn bar
        with tqdm(items, desc=desc, unit="shape", leave=False, file=sys.stderr) as bar:
            return [ds.load(it, num_points=cfg.num_points, seed=cfg.seed) for it in bar]

    train_shapes = load(train_items, "loading train")
    test_shapes = load(test_items, "loading test")

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = PointNetPartSeg(width=cfg.width, in_channels=6 if cfg.normals else 3,
                            spatial_prior=cfg.calibrate == "linear")
    pts, lab, cat = stack_shapes(train_shapes)
    nrm = stack_normals(train_shapes) if cfg.normals else None
    if cfg.normals:
        stack_normals(test_shapes)
    t0 = time.perf_counter()
    losses = train_model(model, pts, lab, cat, sigma=cfg.sigma, epochs=cfg.epochs, batch_size=cfg.batch_size,
                         lr=cfg.lr, generator=gen, rotation_sigma=math.radians(cfg.rotation_sigma_deg),
                         train_points=cfg.train_points, normals=nrm, noise_draws=cfg.noise_draws,
                         consistency=cfg.consistency, entropy=cfg.entropy, count=cfg.count_loss,
                         cut=cfg.calibration_cut, scale_jitter=cfg.scale_jitter)
    biases = None
    if cfg.calibrate != "off":
        biases = calibrate_part_biases(model, pts, lab, cat, sigma=cfg.sigma, draws=cfg.calibration_draws,
                                       cut=cfg.calibration_cut, generator=gen, normals=nrm,
                                       linear=cfg.calibrate == "linear")
    train_s = time.perf_counter() - t0
    eval_metrics = evaluate_model(model, test_shapes, sigma=cfg.sigma, use_normals=cfg.normals,
                                  generator=torch.Generator().manual_seed(cfg.seed + 1))
    metrics = {
        "dataset": str(root),
        "num_train_shapes": len(train_shapes),
        "num_test_shapes": len(test_shapes),
        "categories": ds.categories,
        "sigma": cfg.sigma,
        "train_seconds": train_s,
        "final_loss": losses[-1] if losses else None,
        "part_biases": biases,
        "loss_per_epoch": losses,
        "test": eval_metrics,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    out = Path(cfg.output)
    save_checkpoint(out / "model.pt", model, sigma=cfg.sigma, num_points=cfg.num_points, categories=ds.categories,
                    train_config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
                    metrics=metrics, rotation_sigma_deg=cfg.rotation_sigma_deg)
    write_json(out / "metrics.json", metrics)
    write_config(out, cfg, plugin=PLUGIN_NAME, plugin_version=PLUGIN_VERSION, seed=cfg.seed, dataset=str(root))
    t, n = eval_metrics["noisy"], eval_metrics["clean"]
    print(f"train-pc: {len(train_shapes)} shapes, {cfg.epochs} epochs in {train_s:.1f}s; test (σ={cfg.sigma}) "
          f"acc {t['accuracy']:.3f} instance mIoU {t['instance_miou']:.3f} class mIoU {t['class_miou']:.3f}; "
          f"clean acc {n['accuracy']:.3f} instance mIoU {n['instance_miou']:.3f} → {out / 'model.pt'}")
    return metrics
