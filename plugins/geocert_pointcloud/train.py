"""Training the base model f_σ (PointNet, optionally with a voxel neighbourhood stage) under Gaussian xyz noise (the library; the command is train_pc.py)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from geocert.errors import InputError
from geocert_pointcloud.data import (
    CATEGORIES,
    CATEGORY_PARTS,
    Shape,
)
from geocert_pointcloud.evaluate import miou_summary, shape_iou
from geocert_pointcloud.model import (
    PRIOR_FEATURES,
    PointNetPartSeg,
    fuse_batchnorm,
    model_input,
    part_mask,
    predict_parts,
    prior_features,
    rotate_about_up,
)

__all__ = ["train_model", "evaluate_model", "calibrate_part_biases", "stack_shapes", "stack_normals",
           "noise_loss", "noisy_part_logits", "part_boundary_distance", "DEFAULT_MODEL_VERSION"]

# version of the model `geocert train-pc` trains with its defaults; the `--checkpoint auto` cache file name
# carries it, so a change of the defaults retrains the cached default model (2: certification-aware training;
# 3: --arch voxel, 60 epochs)
DEFAULT_MODEL_VERSION = 3


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


def noisy_part_logits(model: PointNetPartSeg, x: torch.Tensor, categories: torch.Tensor, masks: torch.Tensor, *,
                      sigma: float, draws: int, generator: torch.Generator,
                      normals: torch.Tensor | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``[B, K, N, P]`` of ``draws`` = K independent noisy copies x + N(0, σ²I) of each cloud ``x [B, N, 3]``,
    with the parts outside each cloud's category (``masks [B, P]`` False) set to -1e9. ``context [B, M, C]``
    (optional): every copy takes its cloud-level features from this cloud (``PointNetPartSeg``'s ``context``)."""
    b, k = x.shape[0], draws
    xk = x.repeat_interleave(k, dim=0)
    xk = xk + torch.randn(xk.shape, generator=generator).to(xk.device) * sigma  # CPU generator: same draws anywhere
    nrm = normals.repeat_interleave(k, dim=0) if normals is not None else None
    extra = {} if context is None else {"context": context.repeat_interleave(k, dim=0)}
    logits = model(model_input(xk, nrm), categories.repeat_interleave(k), **extra)
    logits = logits.masked_fill(~masks.repeat_interleave(k, dim=0)[:, None, :], -1e9)
    return logits.reshape(b, k, *logits.shape[1:])


def noise_loss(logits: torch.Tensor, labels: torch.Tensor, *, consistency: float = 0.0,
               entropy: float = 0.0, count: float = 0.0, cut: float = 0.82, width: float = 0.05,
               macer: float = 0.0, macer_gamma: float = 2.0, weights: torch.Tensor | None = None,
               count_temperature: float = 1.0) -> torch.Tensor:
    """Training loss from the logits ``[B, K, N, P]`` of K noisy copies of each cloud and ``labels [B, N]``.

    Cross-entropy averaged over the copies; with K > 1 and ``consistency`` λ > 0 plus λ·KL(p̄ ‖ p_k), the
    divergence of each copy's prediction p_k from their mean p̄ (consistency regularisation, Jeong & Shin
    2020), and ``entropy`` η·H(p̄): both push the noisy predictions of a point to agree, which is what the
    smoothed classifier's vote fraction, and so the certificate, needs. ``count`` subtracts a soft count of
    the points whose mean probability p̄_y of the true part clears ``cut``. ``macer`` adds MACER's margin
    term (Zhai et al. 2020) on the soft smoothed classifier p̄: the mean over the points it classifies
    right of max(0, γ − (Φ⁻¹(p̄_y) − Φ⁻¹(p̄_runner-up))), γ = ``macer_gamma`` (a radius in units of σ, up to
    the factor 1/2). ``count_temperature`` T < 1 computes the count's probabilities from logits / T, nearer
    the argmax votes certification counts. ``weights [B, N]`` (optional) weight each point's cross-entropy (normalised to mean 1)."""
    b, k, n, p = logits.shape
    logp = torch.log_softmax(logits, dim=-1)
    y = labels[:, None, :, None].expand(b, k, n, 1)
    if weights is None:
        loss = -logp.gather(-1, y).mean()
    else:
        loss = -(logp.gather(-1, y).squeeze(-1).mean(dim=1) * weights).sum() / weights.sum().clamp(min=1e-12)
    if k > 1 and (consistency > 0 or entropy > 0):
        mean = logp.exp().mean(dim=1)  # [B, N, P]
        # H(p̄) from log p̄ (finite where p̄ = 0, for the masked parts: xlogy's gradient there is 0 · -inf = NaN)
        log_mean = torch.logsumexp(logp, dim=1) - math.log(k)
        ent = -(mean * log_mean).sum(-1)
        # KL(p̄ ‖ p_k) averaged over k = -H(p̄) - Σ p̄ · mean_k log p_k
        kl = -ent - (mean * logp.mean(dim=1)).sum(-1)
        loss = loss + consistency * kl.mean() + entropy * ent.mean()
    if count > 0:
        # soft count of the points whose mean probability of the true part clears the cut: its gradient
        # vanishes for points far below (given up) and far above (already certified)
        probs = logp.exp() if count_temperature == 1.0 else torch.softmax(logits / count_temperature, dim=-1)
        vote = probs.gather(-1, y).squeeze(-1).mean(dim=1)  # [B, N]
        loss = loss - count * torch.sigmoid((vote - cut) / width).mean()
    if macer > 0:
        mean = logp.exp().mean(dim=1)  # [B, N, P]: the soft smoothed classifier
        p_true = mean.gather(-1, labels[..., None]).squeeze(-1)
        p_other = mean.scatter(-1, labels[..., None], -1.0).amax(-1)
        right = p_true > p_other
        eps = 1e-4
        margin = torch.special.ndtri(p_true.clamp(eps, 1 - eps)) - torch.special.ndtri(p_other.clamp(eps, 1 - eps))
        hinge = torch.relu(macer_gamma - margin) * right
        loss = loss + macer * hinge.sum() / right.sum().clamp(min=1)
    return loss


def train_model(model: PointNetPartSeg, points: torch.Tensor, labels: torch.Tensor, categories: torch.Tensor, *,
                sigma: float, epochs: int, batch_size: int, lr: float, generator: torch.Generator,
                rotation_sigma: float = 0.0, train_points: int = 0, progress: bool = True,
                normals: torch.Tensor | None = None, noise_draws: int = 1, consistency: float = 0.0,
                entropy: float = 0.0, count: float = 0.0, cut: float = 0.82, scale_jitter: float = 0.0,
                macer: float = 0.0, macer_gamma: float = 2.0, device: torch.device | str = "cpu",
                ema: float = 0.0, boundary_weight: float = 1.0, boundary_distance: float = 0.2,
                count_warmup: float = 0.0, count_temperature: float = 1.0) -> list[float]:
    """Train in place with noise augmentation x + N(0, σ²I) (and optional up-axis rotation of N(0, rot²)
    radians); the loss (:func:`noise_loss`) is cross-entropy over each shape's own category parts on
    ``noise_draws`` noisy copies of every cloud, plus the consistency terms. Each step uses a random subset
    of ``train_points`` points per cloud (0 = all). ``normals [S, N, 3]`` (optional) are appended to the
    noisy coordinates as features, rotated with the cloud but never noised. The model trains on ``device``
    (random draws come from the CPU ``generator``, so every device sees the same ones) and is returned on the
    CPU. ``ema`` > 0: the model ends with an exponential moving average (decay ``ema``) of its weights and
    BatchNorm statistics over the steps instead of the last step's. ``boundary_weight`` ≠ 1 scales the
    cross-entropy of the points closer than ``boundary_distance`` to a point of another part of the clean
    cloud. ``count_warmup`` > 0: the count weight rises linearly from 0 over that fraction of the steps.
    Returns the per-epoch loss."""
    from geocert.pipeline.progress import Progress

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(points) / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    masks = part_mask(categories)
    weights = None
    if boundary_weight != 1.0:
        near = torch.stack([part_boundary_distance(p, lab) for p, lab in zip(points, labels, strict=True)])
        weights = torch.where(near < boundary_distance, boundary_weight, 1.0)
    avg = copy.deepcopy(model).to(device) if ema > 0 else None
    step = 0
    losses = []
    bar = Progress(epochs, "train-pc", "epochs", disable=not progress)
    model.to(device)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(points), generator=generator)
        run, seen = 0.0, 0
        for i in range(0, len(points), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and len(points) >= 2 and noise_draws < 2:  # BatchNorm needs > 1 cloud
                continue
            x, y = points[idx], labels[idx]
            wt = weights[idx] if weights is not None else None
            nrm = normals[idx] if normals is not None else None
            if 0 < train_points < points.shape[1]:
                sub = torch.rand(len(idx), points.shape[1], generator=generator).argsort(dim=1)[:, :train_points]
                x = x.gather(1, sub[..., None].expand(-1, -1, 3))
                y = y.gather(1, sub)
                wt = wt.gather(1, sub) if wt is not None else None
                nrm = nrm.gather(1, sub[..., None].expand(-1, -1, 3)) if nrm is not None else None
            if rotation_sigma > 0:
                ang = torch.randn(len(idx), generator=generator) * rotation_sigma
                x = torch.cat([rotate_about_up(x[j], ang[j:j + 1]) for j in range(len(idx))])
                if nrm is not None:
                    nrm = torch.cat([rotate_about_up(nrm[j], ang[j:j + 1]) for j in range(len(idx))])
            if scale_jitter > 0:  # anisotropic scaling of each training cloud by U(1 - s, 1 + s) per axis
                x = x * (1 + scale_jitter * (2 * torch.rand(len(idx), 1, 3, generator=generator) - 1))
            to = lambda t: t.to(device) if t is not None else None  # noqa: E731
            logits = noisy_part_logits(model, to(x), to(categories[idx]), to(masks[idx]), sigma=sigma,
                                       draws=noise_draws, generator=generator, normals=to(nrm))
            ramp = min(1.0, step / (count_warmup * total)) if count_warmup > 0 else 1.0
            loss = noise_loss(logits, to(y), consistency=consistency, entropy=entropy, count=count * ramp, cut=cut,
                              macer=macer, macer_gamma=macer_gamma, weights=to(wt),
                              count_temperature=count_temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if avg is not None:
                _ema_update(avg, model, min(ema, (1 + step) / (10 + step)))
            run += float(loss.detach()) * len(idx)
            seen += len(idx)
        losses.append(run / max(seen, 1))
        bar.set_postfix_str(f"loss={losses[-1]:.3f}")
        bar.update(1)
    bar.close()
    if avg is not None:
        model.load_state_dict(avg.state_dict())
    model.eval()
    model.cpu()
    return losses


@torch.no_grad()
def _ema_update(avg: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``avg ← decay·avg + (1 − decay)·model`` over every floating parameter and buffer (counters copied)."""
    for a, m in zip(avg.state_dict().values(), model.state_dict().values(), strict=True):
        if a.dtype.is_floating_point:
            a.mul_(decay).add_(m, alpha=1 - decay)
        else:
            a.copy_(m)


def part_boundary_distance(points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[N]``: each point's distance to the nearest point of another part in the same clean cloud
    (``points [N, 3]``, ``labels [N]``; inf when the cloud has one part)."""
    d = torch.cdist(points, points)
    return d.masked_fill(labels[:, None] == labels[None, :], float("inf")).amin(dim=1)


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
    kind = getattr(model, "prior_kind", None) or "linear"
    fused = fuse_batchnorm(model)  # same outputs, faster
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
        logits = fused(model_input(xk, nrm), categories[i:i + 1].expand(draws))  # [K, N, P]
        target = (labels[i, sub, None] == parts[None]).float().argmax(-1)  # index into the category's parts
        feats = torch.cat([torch.ones(draws, len(sub), 1), prior_features(xk[:, sub], kind)], dim=-1)  # 1, x, y, z…
        by_cat.setdefault(c, []).append((logits[:, sub][..., parts], feats, target))
    nfeat = 1 + PRIOR_FEATURES[kind] if linear else 1
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
