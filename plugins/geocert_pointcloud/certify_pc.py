"""``geocert certify-pc``: per-point certified part segmentation (SegCertify) of one cloud or a dataset split.

For each cloud x ``[N, 3]`` the base model f (PointNet restricted to the cloud's category parts) is sampled
under Gaussian noise — on every coordinate (``--mode xyz``, ℓ2 radius R = σ·Φ⁻¹(τ)) or on the rotation angle
about the up axis (``--mode rotation``, angle radius) — n0 samples pick each point's top part and n fresh
samples test P(top part) > τ, with FWER control over the cloud's points. Results are written per shape as
they finish (``results.jsonl`` + ``shapes/<shape>.npz``), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from geocert.errors import InputError, ParameterError
from geocert_pointcloud.data import CATEGORIES, CATEGORY_PARTS, NUM_PARTS, Shape, load_shapes
from geocert_pointcloud.evaluate import miou_summary, shape_iou
from geocert_pointcloud.model import fuse_batchnorm, part_mask, predict_parts, rotate_about_up
from geocert_pointcloud.train import load_checkpoint, model_input, stack_normals

__all__ = ["run_certify", "make_base_model", "certify_shape", "statistics_for", "summarize"]

RESULTS = "results.jsonl"
# config fields that do not change the per-shape results (a resumed run may change them; e.g. a larger
# --num-shapes reuses every shape already certified, since each shape's noise seed depends only on its name)
_NON_RESULT_FIELDS = ("output", "overwrite", "threads", "save_ply", "curve_taus", "num_shapes")


def make_base_model(model, shape: Shape, mode: str, allowed_parts):
    """The base classifier f for :func:`geocert.smoothing.sample_counts` and the clean input x.

    xyz: ``x = points [N, 3]``, ``f(batch [B, N, 3]) -> [B, N]``. rotation: ``x = angle [1]`` (radians, 0),
    ``f(angles [B, 1]) -> [B, N]`` rotates the cloud about +y by each angle and classifies it.
    """
    points = torch.from_numpy(shape.points).float()
    use_normals = getattr(model, "in_channels", 3) == 6
    normals = stack_normals([shape])[0] if use_normals else None
    cat_idx = CATEGORIES.index(shape.category) if shape.category is not None else -1
    cat = torch.tensor([cat_idx])
    mask = part_mask(cat, allowed_parts)

    if mode == "xyz":
        def f(batch: torch.Tensor) -> torch.Tensor:
            b = batch.shape[0]
            return predict_parts(model, model_input(batch, normals), cat.expand(b), mask.expand(b, -1))

        return f, points

    def f_rot(angles: torch.Tensor) -> torch.Tensor:
        b = angles.shape[0]
        nrm = rotate_about_up(normals, angles[:, 0]) if normals is not None else None
        return predict_parts(model, model_input(rotate_about_up(points, angles[:, 0]), nrm), cat.expand(b),
                             mask.expand(b, -1))

    return f_rot, torch.zeros(1)


def _shape_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63 - 1)


def certify_shape(model, shape: Shape, cfg, allowed_parts, progress: bool = True) -> dict:
    """Sample and certify one cloud. Returns per-point numpy arrays and timings (see ``shapes/*.npz``)."""
    from geocert.certify import certify_from_counts
    from geocert.smoothing import sample_counts

    f, x = make_base_model(model, shape, cfg.mode, allowed_parts)
    sigma = cfg.sigma if cfg.mode == "xyz" else math.radians(cfg.angle_sigma_deg)
    gen = torch.Generator().manual_seed(_shape_seed(cfg.seed, shape.name))
    with torch.inference_mode():
        clean = f(x.unsqueeze(0))[0]
    t0 = time.perf_counter()
    kw = dict(sigma=sigma, num_classes=NUM_PARTS, batch_size=cfg.batch_size, generator=gen)
    counts0 = sample_counts(f, x, n=cfg.n0, progress="selection n0" if progress else False, **kw)
    counts = sample_counts(f, x, n=cfg.n, progress="estimation n" if progress else False, **kw)
    t1 = time.perf_counter()
    cert = certify_from_counts(counts0, counts, sigma=sigma, tau=cfg.tau, alpha=cfg.alpha,
                               correction=cfg.correction, k=cfg.k, n0=cfg.n0)
    radius_pp = cert.cohen_radius()
    t2 = time.perf_counter()
    to_unit = (lambda r: r) if cfg.mode == "xyz" else math.degrees
    return {
        "points": shape.points,
        "target": shape.labels if shape.labels is not None else np.full(len(shape.points), -1),
        "certified": cert.labels.numpy(),
        "top_classes": cert.top_classes.numpy(),
        "top_counts": cert.counts.numpy(),
        "smoothed": counts.argmax(-1).numpy(),
        "clean": clean.numpy(),
        "lower_bounds": cert.lower_bounds.numpy(),
        "pvalues": cert.pvalues.numpy(),
        "point_radius": radius_pp.numpy() * (1.0 if cfg.mode == "xyz" else 180.0 / math.pi),
        "radius": to_unit(cert.radius),
        "n": cert.n,
        "sampling_s": t1 - t0,
        "statistics_s": t2 - t1,
    }


def statistics_for(top_counts: np.ndarray, n: int, tau: float, alpha: float, correction: str, k: int = 1,
                   ) -> np.ndarray:
    """Which points of one cloud are certified at τ (bool ``[N]``), from the counts of their top class."""
    from geocert import stats

    return stats.fwer_reject(stats.binomial_pvalues(top_counts, n, tau), alpha, correction, k)


def _validate(cfg) -> None:
    from geocert.validate import check_alpha, check_correction, check_positive_int, check_sigma, check_tau

    if cfg.mode == "xyz":
        check_sigma(cfg.sigma)
    else:
        check_sigma(cfg.angle_sigma_deg, "angle-sigma-deg")
    check_tau(cfg.tau)
    check_alpha(cfg.alpha)
    n0 = check_positive_int(cfg.n0, "n0")
    n = check_positive_int(cfg.n, "n")
    if n0 >= n:
        raise ParameterError(f"n0 must be < n (few selection samples, many estimation samples), got n0={n0}, n={n}")
    check_correction(cfg.correction, cfg.k)
    for name in ("batch_size", "num_points", "threads"):
        check_positive_int(getattr(cfg, name), name.replace("_", "-"))
    if cfg.num_shapes < 0:
        raise ParameterError(f"num-shapes must be >= 0 (0 = all), got {cfg.num_shapes}")
    for t in cfg.curve_taus:
        if not (math.isfinite(t) and 0.5 <= t < 1.0):
            raise ParameterError(f"curve-taus must lie in [0.5, 1), got {t}")
    if cfg.category is not None and cfg.category not in CATEGORIES:
        raise ParameterError(f"category must be one of {', '.join(CATEGORIES)}, got {cfg.category!r}")


def _result_key(cfg, checkpoint_sha: str, data_root: str) -> dict:
    from geocert.io import to_plain

    plain = to_plain(cfg)
    key = {k: v for k, v in plain.items() if k not in _NON_RESULT_FIELDS}
    key["data"] = data_root
    key["checkpoint_sha256"] = checkpoint_sha
    return key


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _write_npz(path: Path, arrays: dict) -> None:
    import io

    from geocert.io import atomic_write

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def run_certify(cfg) -> dict:
    from tqdm.auto import tqdm

    from geocert.certify import check_tau_reachable
    from geocert.io import (
        append_jsonl,
        label_palette,
        read_json,
        read_jsonl,
        write_config,
        write_json,
        write_ply,
    )
    from geocert_pointcloud.config import PLUGIN_NAME, PLUGIN_VERSION
    from geocert_pointcloud.scenes import default_dataset

    # ---- validate everything before writing anything
    _validate(cfg)
    correction = cfg.correction
    check_tau_reachable(cfg.tau, cfg.n, cfg.alpha, cfg.num_points, correction, cfg.k)
    torch.set_num_threads(cfg.threads)
    data = Path(cfg.data) if cfg.data is not None else default_dataset()
    shapes = load_shapes(data, split=cfg.split, num_shapes=cfg.num_shapes, num_points=cfg.num_points,
                         seed=cfg.seed, category=cfg.category)
    names = [s.name for s in shapes]
    if len(set(names)) != len(names):
        raise InputError(f"{data}: duplicate shape names in split {cfg.split!r}")
    ckpt_path = default_checkpoint() if str(cfg.checkpoint) == "auto" else Path(cfg.checkpoint)
    model, ckpt = load_checkpoint(ckpt_path)
    model = fuse_batchnorm(model)  # same outputs, fewer passes over the features
    checkpoint_sha = hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    if ckpt.get("normals"):
        stack_normals(shapes)  # every cloud needs normals: fail before writing anything
    unseen = sorted({s.category for s in shapes if s.category is not None} - set(ckpt.get("categories", [])))
    if unseen:
        print(f"certify-pc: warning: {ckpt_path} was not trained on {', '.join(unseen)}", file=sys.stderr)
    trained = [c for c in ckpt.get("categories", []) if c in CATEGORY_PARTS]
    allowed_unknown = sorted(p for c in trained for p in CATEGORY_PARTS[c]) or None

    out = Path(cfg.output)
    key = _result_key(cfg, checkpoint_sha, str(data))
    if cfg.overwrite:
        for sub in ("shapes", "ply"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for f in (RESULTS, "metrics.json", "certified_accuracy_vs_radius.png", "bonferroni_vs_holm.png", "kfwer.png"):
            (out / f).unlink(missing_ok=True)
    elif (out / RESULTS).exists():
        old = read_json(out / "config.json") if (out / "config.json").exists() else {}
        old_key = old.get("result_key")
        if isinstance(old_key, dict):
            old_key = {k: v for k, v in old_key.items() if k not in _NON_RESULT_FIELDS}
        if old_key != key:
            diff = sorted(k for k in set(key) | set(old_key or {}) if (old_key or {}).get(k) != key.get(k))
            raise ParameterError(f"{out}: holds results of a different run (differs in: {', '.join(diff) or '?'}); "
                                 "pass --overwrite or choose another --output")
    write_config(out, cfg, plugin=PLUGIN_NAME, plugin_version=PLUGIN_VERSION, seed=cfg.seed, result_key=key,
                 checkpoint_sigma=ckpt.get("sigma"))

    # ---- certify shape by shape (resumable)
    done = {r["name"]: r for r in read_jsonl(out / RESULTS)}
    palette = label_palette(NUM_PARTS)
    with tqdm(shapes, desc="certify-pc", unit="shape", file=sys.stderr) as bar:  # closed before any error line
        for shape in bar:
            npz = out / "shapes" / f"{_safe(shape.name)}.npz"
            if shape.name in done and npz.is_file():
                continue
            bar.set_postfix_str(shape.name)
            res = certify_shape(model, shape, cfg, allowed_unknown)
            _write_npz(npz, {k: v for k, v in res.items() if isinstance(v, np.ndarray)})
            if cfg.save_ply:
                write_ply(out / "ply" / f"{_safe(shape.name)}.ply", shape.points, palette[res["certified"]],
                          labels=res["certified"])
            rec = _shape_record(shape, res, cfg)
            append_jsonl(out / RESULTS, rec)
            done[shape.name] = rec
            if rec.get("certified_accuracy") is not None:
                bar.write(f"  {shape.name} ({shape.category}): certified acc {rec['certified_accuracy']:.3f}, "
                          f"abstain {rec['abstain_rate']:.3f}, {res['sampling_s']:.1f}s sampling", file=sys.stderr)

    # ---- aggregate over every finished shape of this selection
    results = []
    for shape in shapes:
        with np.load(out / "shapes" / f"{_safe(shape.name)}.npz") as z:
            results.append((shape, {k: z[k] for k in z.files}, done[shape.name]))
    metrics = summarize(results, cfg)
    metrics["base_model_inputs"] = "xyz + unperturbed normals" if ckpt.get("normals") else "xyz"
    write_json(out / "metrics.json", metrics)
    from geocert_pointcloud.plots import plot_corrections, plot_kfwer, plot_radius_curve

    if metrics.get("curve"):
        plot_radius_curve(out / "certified_accuracy_vs_radius.png", metrics, cfg)
        plot_corrections(out / "bonferroni_vs_holm.png", metrics, cfg)
    if metrics.get("kfwer"):
        plot_kfwer(out / "kfwer.png", metrics, cfg)
    unit = "" if cfg.mode == "xyz" else "°"
    acc = metrics.get("certified_accuracy")
    print(f"certify-pc: {len(shapes)} shapes × {cfg.num_points} points, R = {metrics['radius']:.3f}{unit}: "
          + (f"certified acc {acc:.3f}, " if acc is not None else "")
          + f"abstain {metrics['abstain_rate']:.3f}, sampling {metrics['timings']['sampling_s']:.1f}s, "
          f"statistics {metrics['timings']['statistics_s']:.2f}s → {out}")
    return metrics


def default_checkpoint() -> Path:
    """``--checkpoint auto``: the default model (``geocert train-pc`` defaults on the default dataset), trained
    once into ``$GEOCERT_CACHE/pointcloud/models/`` (temp folder + rename) and reused afterwards."""
    import tempfile

    from geocert_pointcloud.config import TrainPcConfig
    from geocert_pointcloud.scenes import _DATASET_VERSION, cache_root
    from geocert_pointcloud.train import run_train

    target = cache_root() / "pointcloud" / "models" / f"default_procedural_v{_DATASET_VERSION}.pt"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"certify-pc: training the default model once into {target}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=".tmp_train_", dir=target.parent) as tmp:
        run_train(TrainPcConfig(output=Path(tmp)))
        Path(tmp, "model.pt").replace(target)
    return target


def _shape_record(shape: Shape, res: dict, cfg) -> dict:
    labelled = shape.labels is not None
    rec = {
        "name": shape.name, "category": shape.category, "source": str(shape.source),
        "num_points": int(len(shape.points)), "mode": cfg.mode, "radius": res["radius"],
        "abstain_rate": float((res["certified"] == -1).mean()),
        "sampling_s": res["sampling_s"], "statistics_s": res["statistics_s"],
    }
    if labelled:
        t = shape.labels
        parts = CATEGORY_PARTS[shape.category] if shape.category else sorted(set(t.tolist()))
        rec.update({
            "certified_accuracy": float((res["certified"] == t).mean()),
            "smoothed_accuracy": float((res["smoothed"] == t).mean()),
            "clean_accuracy": float((res["clean"] == t).mean()),
            "certified_miou": shape_iou(res["certified"], t, parts),
            "smoothed_miou": shape_iou(res["smoothed"], t, parts),
        })
    return rec


def summarize(results: list, cfg) -> dict:
    """metrics.json from ``(shape, arrays, record)`` triples: pooled per-point accuracy, % abstain, mIoUs,
    timings, and the certified-accuracy-vs-radius / correction curves over ``cfg.curve_taus``."""
    from geocert import stats
    from geocert.metrics import certified_accuracy_curve, segmentation_metrics

    to_unit = 1.0 if cfg.mode == "xyz" else 180.0 / math.pi
    sigma = cfg.sigma if cfg.mode == "xyz" else math.radians(cfg.angle_sigma_deg)
    labelled = [(s, a, r) for s, a, r in results if s.labels is not None]
    cert_all = np.concatenate([a["certified"] for _, a, _ in results])
    sampling = float(sum(r["sampling_s"] for _, _, r in results))
    statistics = float(sum(r["statistics_s"] for _, _, r in results))
    m = {
        "mode": cfg.mode,
        "radius": float(sigma * stats_ppf(cfg.tau) * to_unit),
        "radius_unit": "l2 (unit sphere)" if cfg.mode == "xyz" else "degrees",
        "sigma": cfg.sigma if cfg.mode == "xyz" else cfg.angle_sigma_deg,
        "n0": cfg.n0, "n": cfg.n, "tau": cfg.tau, "alpha": cfg.alpha, "correction": cfg.correction, "k": cfg.k,
        "num_shapes": len(results), "num_points": int(cert_all.size),
        "abstain_rate": float((cert_all == -1).mean()),
        "timings": {
            "sampling_s": sampling, "statistics_s": statistics, "total_s": sampling + statistics,
            "per_shape_s": (sampling + statistics) / max(len(results), 1),
            "statistics_fraction": statistics / max(sampling + statistics, 1e-12),
        },
        "shapes": [r["name"] for _, _, r in results],
    }
    if not labelled:
        return m
    tgt = np.concatenate([a["target"] for _, a, _ in labelled])
    cert = np.concatenate([a["certified"] for _, a, _ in labelled])
    cats = [s.category for s, _, _ in labelled]
    seg = segmentation_metrics(torch.from_numpy(cert), torch.from_numpy(tgt), NUM_PARTS)
    m.update({
        "certified_accuracy": float((cert == tgt).mean()),
        "smoothed_accuracy": float(np.mean(np.concatenate([a["smoothed"] == a["target"] for _, a, _ in labelled]))),
        "clean_accuracy": float(np.mean(np.concatenate([a["clean"] == a["target"] for _, a, _ in labelled]))),
        "certified": miou_summary([r["certified_miou"] for _, _, r in labelled], cats),
        "smoothed": miou_summary([r["smoothed_miou"] for _, _, r in labelled], cats),
        "miou_non_abstained": seg["miou"],
        "per_category": {},
    })
    for c in sorted({c for c in cats if c is not None}, key=CATEGORIES.index):
        sel = [(a, r) for s, a, r in labelled if s.category == c]
        m["per_category"][c] = {
            "num_shapes": len(sel),
            "certified_accuracy": float(np.mean(np.concatenate([a["certified"] == a["target"] for a, _ in sel]))),
            "abstain_rate": float(np.mean(np.concatenate([a["certified"] == -1 for a, _ in sel]))),
            "certified_miou": float(np.mean([r["certified_miou"] for _, r in sel])),
        }
    radius_pp = np.concatenate([a["point_radius"] for _, a, _ in labelled])
    grid, acc = certified_accuracy_curve(torch.from_numpy(cert), torch.from_numpy(tgt), torch.from_numpy(radius_pp))
    m["cohen_radius_curve"] = {"radius": grid.tolist(), "certified_accuracy": acc.tolist()}
    # certified accuracy vs radius at several τ, and the corrections compared (same samples, statistics only)
    curve = []
    for tau in sorted(set(cfg.curve_taus) | {cfg.tau}):
        for corr in ("none", "bonferroni", "holm"):
            reach = stats.max_certifiable_tau(cfg.n, cfg.alpha, cfg.num_points, corr, cfg.k)
            if tau > reach:
                continue
            ok_all, cert_ok = 0, 0
            for _, a, _ in labelled:
                acc_mask = statistics_for(a["top_counts"], cfg.n, tau, cfg.alpha, corr, cfg.k)
                ok_all += int(acc_mask.sum())
                cert_ok += int((acc_mask & (a["top_classes"] == a["target"])).sum())
            curve.append({"tau": tau, "correction": corr, "radius": float(sigma * stats_ppf(tau) * to_unit),
                          "certified_accuracy": cert_ok / tgt.size, "certified_fraction": ok_all / tgt.size})
    m["curve"] = curve
    # k-FWER (Figure 6): Holm allowing up to k − 1 false certificates per cloud, at the run's τ
    kfwer = []
    for kk in sorted({1, 5, 20, 100, cfg.k}):
        if cfg.tau > stats.max_certifiable_tau(cfg.n, cfg.alpha, cfg.num_points, "holm", kk):
            continue
        ok_all, cert_ok = 0, 0
        for _, a, _ in labelled:
            acc_mask = statistics_for(a["top_counts"], cfg.n, cfg.tau, cfg.alpha, "holm", kk)
            ok_all += int(acc_mask.sum())
            cert_ok += int((acc_mask & (a["top_classes"] == a["target"])).sum())
        kfwer.append({"k": kk, "tau": cfg.tau, "certified_accuracy": cert_ok / tgt.size,
                      "certified_fraction": ok_all / tgt.size})
    m["kfwer"] = kfwer
    return m


def stats_ppf(p: float) -> float:
    """Φ⁻¹(p)."""
    from scipy.stats import norm

    return float(norm.ppf(p))
