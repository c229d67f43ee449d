"""``geocert certify-seg``: per-pixel certification of a segmentation model, with optional denoised smoothing.

The smoothed segmenter is the core's SegCertify (:mod:`geocert.certify`); this module builds the base model
``f`` (optional denoiser → segmentation model → argmax), validates every input before writing anything,
certifies one image or a whole folder (resumable through ``results.jsonl``), and writes label maps, metrics
and the certified-accuracy-vs-radius plot.

The curve reuses one image's n0 / n counts for every τ on a grid (``certify_from_counts``): each point holds
at level α on its own (not simultaneously across τ).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geocert.errors import InputError, ParameterError
from geocert_imageseg.config import PLUGIN_NAME, PLUGIN_VERSION
from geocert_imageseg.data import (
    convert_channels,
    find_pairs,
    load_image,
    load_mask,
    read_class_names,
    split_folder,
)
from geocert_imageseg.metrics import confusion_stats, summarize_stats

__all__ = ["SegPipeline", "build_pipeline", "certify_image", "run_certify_seg", "TAU_GRID"]

TAU_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)


class SegPipeline:
    """The base model f of denoised smoothing / SegCertify: ``[B, C, H, W]`` noisy images → labels ``[B, H, W]``.

    ``forward_s`` accumulates the wall time spent inside the denoiser and segmentation model calls (the
    "forward passes"); everything else in a certification run (noise, argmax, counting, statistics) is overhead.
    """

    def __init__(self, model: Callable, *, model_channels: int | None, num_classes: int, sigma: float,
                 denoiser: Any | None = None, source: str | None = None):
        self.model, self.model_channels, self.num_classes = model, model_channels, num_classes
        self.sigma, self.denoiser = sigma, denoiser
        self.source = source or "the segmentation model"
        self.forward_s = 0.0
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        z = batch
        if self.denoiser is not None:
            z = self.denoiser.denoise(convert_channels(z, self.denoiser.in_channels), self.sigma)
        if self.model_channels is not None:
            z = convert_channels(z, self.model_channels)
        out = self.model(z)
        self.forward_s += time.perf_counter() - t0
        self.calls += 1
        if out.dim() != 4:  # a TorchScript model returning labels: they must be class indices 0..K-1
            labels = out.long()
            _check_label_range(labels, self.num_classes, self.source)
            return labels
        # argmax over a channels-last copy: ~4x faster on CPU than a strided argmax over dim 1
        return out.permute(0, 2, 3, 1).contiguous().argmax(-1)


def build_pipeline(model, meta: dict, *, sigma: float, denoiser=None) -> SegPipeline:
    return SegPipeline(model, model_channels=meta.get("in_channels"), num_classes=int(meta["num_classes"]),
                       sigma=sigma, denoiser=denoiser, source=meta.get("path"))


def _check_label_range(labels: torch.Tensor, num_classes: int, source: str) -> None:
    """:class:`InputError` naming ``source`` when a label-returning model gives a label outside 0..K-1."""
    if labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= num_classes:
            raise InputError(f"{source}: the model returned label(s) outside 0..{num_classes - 1} (min {lo}, "
                             f"max {hi}); give the right --num-classes")


def certify_image(f: SegPipeline, x: torch.Tensor, *, sigma: float, n0: int, n: int, tau: float, alpha: float,
                  correction: str, k: int, batch_size: int, generator: torch.Generator,
                  taus: tuple[float, ...] = (), progress: bool = False):
    """Certify every pixel of ``x`` ``[C, H, W]``. Returns (Certificate at τ, {τ: labels ``[H, W]``} for the
    curve τs, timings dict with ``sampling_s``, ``forward_s``, ``statistics_s``, ``total_s``, ``overhead_frac``)."""
    from geocert.certify import certify_from_counts, check_tau_reachable
    from geocert.smoothing import sample_counts

    m = int(x.shape[-1] * x.shape[-2])
    check_tau_reachable(tau, n, alpha, m, correction, k)
    f.forward_s = 0.0
    t0 = time.perf_counter()
    c0 = sample_counts(f, x, sigma=sigma, n=n0, num_classes=f.num_classes, batch_size=batch_size,
                       generator=generator, progress="selection (n0)" if progress else False)
    c1 = sample_counts(f, x, sigma=sigma, n=n, num_classes=f.num_classes, batch_size=batch_size,
                       generator=generator, progress="estimation (n)" if progress else False)
    t1 = time.perf_counter()
    cert = certify_from_counts(c0, c1, sigma=sigma, tau=tau, alpha=alpha, correction=correction, k=k, n0=n0)
    t2 = time.perf_counter()
    curve = {}
    for t in taus:
        curve[t] = cert.labels if t == tau else certify_from_counts(
            c0, c1, sigma=sigma, tau=t, alpha=alpha, correction=correction, k=k, n0=n0).labels
    t3 = time.perf_counter()
    timings = {"sampling_s": t1 - t0, "forward_s": f.forward_s, "statistics_s": t2 - t1, "curve_s": t3 - t2,
               "total_s": t2 - t0}
    timings["overhead_frac"] = (timings["total_s"] - f.forward_s) / timings["total_s"]
    cert.timings = timings
    return cert, curve, timings


# ---------------------------------------------------------------------------------------------- validation


def _validate_params(cfg) -> tuple[float, float, float, int, int, str, int]:
    from geocert.validate import (
        check_alpha,
        check_correction,
        check_positive_int,
        check_samples,
        check_sigma,
        check_tau,
    )

    sigma, tau, alpha = check_sigma(cfg.sigma), check_tau(cfg.tau), check_alpha(cfg.alpha)
    n0, n = check_samples(cfg.n0, cfg.n)
    if n0 >= n:  # the core allows n0 == n; the plugin's contract (like certify-pc) wants few n0, many n
        raise ParameterError(f"n0 must be < n (few selection samples, many estimation samples), got n0={n0}, n={n}")
    correction, k = check_correction(cfg.correction, cfg.k)
    check_positive_int(cfg.batch_size, "batch_size")
    check_positive_int(cfg.denoise_steps, "denoise_steps")
    if cfg.max_images is not None:
        check_positive_int(cfg.max_images, "max_images")
    if cfg.num_classes is not None:
        check_positive_int(cfg.num_classes, "num_classes")
    return sigma, tau, alpha, n0, n, correction, k


def resolve_device(name: str) -> torch.device:
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ParameterError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {name!r} requested but CUDA is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}")
    return dev


def _load_model(cfg, image: torch.Tensor):
    """(model, meta) with ``num_classes`` resolved (probing a TorchScript model on the clean image)."""
    from geocert_imageseg.commands import default_segmenter
    from geocert_imageseg.models import load_segmenter

    # default: the SegCertify model (trained with noise 0.25), or a clean model behind a denoiser
    train_sigma = 0.25 if cfg.denoiser in ("none", "") else 0.0
    path = cfg.model if cfg.model is not None else default_segmenter(train_sigma, progress=cfg.progress)
    model, meta = load_segmenter(path, cfg.num_classes)
    meta = dict(meta, path=str(path))
    if meta["kind"] == "torchscript":
        try:
            with torch.no_grad():
                out = model(image.unsqueeze(0))
        except Exception as exc:
            raise InputError(f"{path}: the TorchScript model failed on a [1, {', '.join(map(str, image.shape))}] "
                             f"image ({type(exc).__name__}: {' '.join(str(exc).split())[:140]})") from None
        if not isinstance(out, torch.Tensor) or out.shape[-2:] != image.shape[-2:] or out.dim() not in (3, 4):
            raise InputError(f"{path}: the model must return logits [B, K, H, W] or labels [B, H, W] of the image "
                             f"size, got {getattr(out, 'shape', type(out).__name__)}")
        if out.dim() == 4:
            if cfg.num_classes is not None and cfg.num_classes != out.shape[1]:
                raise ParameterError(f"num-classes {cfg.num_classes} differs from the model's {out.shape[1]} "
                                     "output channels")
            meta["num_classes"] = int(out.shape[1])
        elif cfg.num_classes is None:
            raise ParameterError("the TorchScript model returns labels, not logits: give --num-classes")
        else:
            _check_label_range(out.long(), cfg.num_classes, str(path))
        meta["in_channels"] = int(image.shape[0])
    return model, meta


def _load_denoiser(cfg, sigma: float):
    if cfg.denoiser in ("none", ""):
        return None, {"kind": "none"}
    import sys

    from geocert_imageseg.denoise import DiffusionDenoiser, load_denoiser

    if cfg.denoiser == "unet":
        from geocert_imageseg.commands import default_unet_denoiser

        den, info = load_denoiser(default_unet_denoiser(progress=cfg.progress))
    else:
        den, info = load_denoiser(cfg.denoiser, steps=cfg.denoise_steps)
    if isinstance(den, DiffusionDenoiser):
        den.check_sigma(sigma)
        info["t_star"] = den.timestep(sigma)
        a = float(den.alphas_cumprod[info["t_star"]])
        info["sigma_at_t_star"] = ((1 - a) / a) ** 0.5 / 2  # the σ ([0, 1] units) the grid point t* matches
    elif info.get("sigma_min") is not None and not info["sigma_min"] <= sigma <= info["sigma_max"]:
        print(f"geocert certify-seg: warning: sigma={sigma} is outside the denoiser's training range "
              f"[{info['sigma_min']}, {info['sigma_max']}]", file=sys.stderr)
    return den, info


def _run_key(cfg, meta: dict, den_info: dict) -> str:
    keys = ("sigma", "n0", "n", "tau", "alpha", "correction", "k", "denoise_steps", "seed", "device")
    d = {k: getattr(cfg, k) for k in keys}
    d.update(model=meta.get("path"), denoiser=den_info.get("path", den_info.get("kind")))
    for p in (meta.get("path"), den_info.get("path")):
        if p and Path(p).exists():
            d[f"mtime:{p}"] = os.path.getmtime(p)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- outputs


def _colour(labels: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    from geocert.io import label_palette

    lab = np.asarray(labels)
    pal = label_palette(num_classes)
    return pal[np.where(lab < 0, num_classes, lab)]


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    x = convert_channels(x, 3) if x.shape[0] in (1, 3) else x[:3]
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _plot_curve(path: Path, curves: dict[str, list[tuple[float, float]]], title: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geocert.io import atomic_write

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for label, pts in curves.items():
        r, a = zip(*pts, strict=False)
        ax.step(r, a, where="post", marker="o", ms=3, label=label)
    ax.set_xlabel("certified ℓ2 radius R = σ·Φ⁻¹(τ)  ([0,1] pixel units)")
    ax.set_ylabel("certified pixel accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _curve_points(sigma: float, correct: dict[float, int], total: int) -> list[tuple[float, float]]:
    from scipy.stats import norm

    return [(float(sigma * norm.ppf(t)), correct[t] / total) for t in sorted(correct)]


# ---------------------------------------------------------------------------------------------- command


def run_certify_seg(cfg) -> None:
    from tqdm.auto import tqdm

    from geocert.io import append_jsonl, atomic_write, read_jsonl, write_config, write_image, write_json
    from geocert.stats import max_certifiable_tau

    torch.set_num_threads(min(torch.get_num_threads(), int(os.environ.get("GEOCERT_THREADS", "2"))))
    sigma, tau, alpha, n0, n, correction, k = _validate_params(cfg)
    device = resolve_device(cfg.device)

    # ---- inputs: one image (+ optional mask) or a data-set folder
    if cfg.image is None:
        from geocert_imageseg.scenes import default_dataset

        source: Path = default_dataset("xray")
    else:
        source = Path(cfg.image)
        if not source.exists():
            raise InputError(f"{source}: file or folder not found")
    dataset_mode = source.is_dir()
    if dataset_mode:
        if cfg.mask is not None:
            raise ParameterError("--mask is for a single image; a data-set folder takes its masks from masks/")
        folder = split_folder(source, "test")
        pairs = find_pairs(folder, require_masks=False)[: cfg.max_images]
        class_names = read_class_names(folder)
    else:
        folder = source.parent
        pairs = [(source, Path(cfg.mask) if cfg.mask is not None else None)]
        class_names = None
    first = load_image(pairs[0][0])
    model, meta = _load_model(cfg, first)
    num_classes = int(meta["num_classes"])
    class_names = meta.get("class_names") or class_names
    if class_names is not None and len(class_names) != num_classes:
        class_names = None
    denoiser, den_info = _load_denoiser(cfg, sigma)

    # validate every image and mask before writing anything
    images: list[tuple[str, Path, Path | None]] = []
    max_m = 0
    for ip, mp in pairs:
        x = load_image(ip)
        if meta.get("in_channels") is not None and x.shape[0] not in (1, 3):
            raise InputError(f"{ip}: unsupported channel count {x.shape[0]}")
        if mp is not None:
            load_mask(mp, num_classes, shape=tuple(x.shape[-2:]))
        max_m = max(max_m, int(x.shape[-1] * x.shape[-2]))
        images.append((ip.stem, ip, mp))
    tmax = max_certifiable_tau(n, alpha, max_m, correction, k)
    from geocert.certify import check_tau_reachable

    check_tau_reachable(tau, n, alpha, max_m, correction, k)
    taus = tuple(sorted({t for t in TAU_GRID if t <= tmax} | {tau}))

    out = Path(cfg.output)
    key = _run_key(cfg, meta, den_info)
    done: dict[str, dict] = {}
    if dataset_mode:
        recs = read_jsonl(out / "results.jsonl")
        foreign = [r for r in recs if r.get("run_key") != key]
        if foreign and not cfg.overwrite:
            raise ParameterError(f"{out / 'results.jsonl'} holds results of a different configuration; "
                                 "use another --output or pass --overwrite to discard them")
        if foreign:
            (out / "results.jsonl").unlink()
            recs = []
        done = {r["name"]: r for r in recs}

    def config() -> None:
        write_config(out, cfg, plugin=PLUGIN_NAME, plugin_version=PLUGIN_VERSION, seed=cfg.seed,
                     model=meta.get("path"), model_kind=meta.get("kind"), model_train_sigma=meta.get("train_sigma"),
                     denoiser=den_info, pixel_units="[0, 1]", radius=float(sigma * _ndtri(tau)),
                     tau_grid=list(taus), run_key=key)

    # dataset mode: config.json first (it identifies the results a resumed run appends to); one image: every
    # output after its certification, so a failure while sampling (e.g. a model error under noise) leaves
    # no output folder behind
    if dataset_mode:
        config()

    model = model.to(device)
    if denoiser is not None:
        if hasattr(denoiser, "unet"):
            denoiser.unet.to(device)
        else:
            denoiser = denoiser.to(device)
    f = build_pipeline(model, meta, sigma=sigma, denoiser=denoiser)
    bar = tqdm(images, desc="certify-seg", unit="image", disable=not (cfg.progress and dataset_mode))
    for idx, (name, ip, mp) in enumerate(bar):
        if name in done:
            continue
        x = load_image(ip)
        if meta.get("in_channels") is not None:
            x = convert_channels(x, int(meta["in_channels"]))
        x = x.to(device)
        g = torch.Generator(device=device).manual_seed(int(cfg.seed) + idx)
        cert, curve, timings = certify_image(f, x, sigma=sigma, n0=n0, n=n, tau=tau, alpha=alpha,
                                             correction=correction, k=k, batch_size=cfg.batch_size, generator=g,
                                             taus=taus, progress=cfg.progress and not dataset_mode)
        labels = cert.labels.cpu()
        rec: dict[str, Any] = {"name": name, "image": str(ip), "run_key": key, "height": int(x.shape[-2]),
                               "width": int(x.shape[-1]), "abstain_pct": 100.0 * cert.abstain_rate,
                               "radius": cert.radius, "timings": timings}
        target = load_mask(mp, num_classes, shape=tuple(x.shape[-2:])) if mp is not None else None
        if target is not None:
            stats = confusion_stats(labels, target, num_classes)
            rec["stats"] = {s: v.tolist() for s, v in stats.items()}
            rec["curve_correct"] = {str(t): int((lab.cpu() == target).sum()) for t, lab in curve.items()}
            rec["metrics"] = summarize_stats(stats, num_classes, class_names)
        label_png = out / "labels" / f"{name}.png" if dataset_mode else out / "labels.png"
        write_image(label_png, _colour(labels, num_classes))
        if dataset_mode:
            append_jsonl(out / "results.jsonl", rec)
            done[name] = rec
        else:
            with atomic_write(out / "labels.npy", "wb") as fh:  # never a half-written labels.npy
                np.save(fh, labels.numpy().astype(np.int16))
            panels = [_to_rgb(x.cpu())]
            if target is not None:
                panels.append(_colour(target, num_classes))
            panels.append(_colour(labels, num_classes))
            panel = np.concatenate(panels, axis=1)
            scale = max(1, 256 // panel.shape[0])  # small images: nearest-neighbour upscaling for viewing
            write_image(out / "comparison.png", panel.repeat(scale, axis=0).repeat(scale, axis=1))
            summary = {"image": str(ip), "num_classes": num_classes, "class_names": class_names,
                       "sigma": sigma, "tau": tau, "radius": cert.radius, "n0": n0, "n": n, "alpha": alpha,
                       "correction": correction, "k": k, "abstain_pct": rec["abstain_pct"], "timings": timings,
                       "denoiser": den_info}
            if target is not None:
                summary.update(rec["metrics"])
                pts = _curve_points(sigma, {float(t): c for t, c in rec["curve_correct"].items()}, target.numel())
                summary["certified_accuracy_curve"] = [{"radius": r, "accuracy": a} for r, a in pts]
                _plot_curve(out / "certified_accuracy_vs_radius.png", {f"σ={sigma:g}": pts},
                            f"{ip.name}  n={n}, α={alpha}, {correction}")
            write_json(out / "metrics.json", summary)
            config()
            _print_summary(summary, out)
    bar.close()

    if dataset_mode:
        _write_dataset_summary(out, [done[nm] for nm, _, _ in images if nm in done], num_classes, class_names, sigma,
                               dict(tau=tau, n0=n0, n=n, alpha=alpha, correction=correction, k=k,
                                    denoiser=den_info, model=meta.get("path")))


def _ndtri(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def _write_dataset_summary(out: Path, recs: list[dict], num_classes: int, class_names, sigma: float,
                           params: dict) -> None:
    from geocert.io import write_json

    summary: dict[str, Any] = {"images": len(recs), "sigma": sigma, "radius": float(sigma * _ndtri(params["tau"])),
                               **params, "num_classes": num_classes, "class_names": class_names}
    summary["abstain_pct_mean"] = float(np.mean([r["abstain_pct"] for r in recs])) if recs else None
    t = [r["timings"] for r in recs]
    summary["timings"] = {key: float(sum(x[key] for x in t)) for key in ("sampling_s", "forward_s", "statistics_s",
                                                                        "total_s")} if t else {}
    if summary["timings"]:
        tt = summary["timings"]
        tt["overhead_frac"] = (tt["total_s"] - tt["forward_s"]) / tt["total_s"]
    with_gt = [r for r in recs if "stats" in r]
    if with_gt:
        pooled = {key: np.sum([np.asarray(r["stats"][key]) for r in with_gt], axis=0) for key in with_gt[0]["stats"]}
        summary["pooled"] = summarize_stats(pooled, num_classes, class_names)
        names = list(with_gt[0]["metrics"]["per_class"])
        per_image = {}
        for nm in names:
            entry = {}
            for metric in ("dice", "iou", "abstain_pct"):
                vals = [r["metrics"]["per_class"][nm][metric] for r in with_gt]
                vals = [v for v in vals if v is not None]
                entry[metric] = float(np.mean(vals)) if vals else None
            per_image[nm] = entry
        summary["per_image_mean"] = {
            "per_class": per_image,
            "certified_pixel_accuracy": float(np.mean([r["metrics"]["certified_pixel_accuracy"] for r in with_gt])),
        }
        total = int(sum(int(r["stats"]["total"]) for r in with_gt))
        correct: dict[float, int] = {}
        for r in with_gt:
            for t, c in r["curve_correct"].items():
                correct[float(t)] = correct.get(float(t), 0) + int(c)
        pts = _curve_points(sigma, correct, total)
        summary["certified_accuracy_curve"] = [{"radius": r, "accuracy": a} for r, a in pts]
        _plot_curve(out / "certified_accuracy_vs_radius.png", {f"σ={sigma:g}": pts},
                    f"{len(with_gt)} images, n={params['n']}, α={params['alpha']}, {params['correction']}")
    write_json(out / "metrics.json", summary)
    _print_summary(summary.get("pooled", summary), out, title=f"{len(recs)} images (pooled over pixels)")


def _print_summary(summary: dict, out: Path, title: str | None = None) -> None:
    lines = [title] if title else []
    if summary.get("certified_pixel_accuracy") is not None:
        lines.append(f"certified pixel accuracy {summary['certified_pixel_accuracy']:.4f}   "
                     f"abstain {summary['abstain_pct']:.2f}%   mean Dice {summary['mean_dice']:.4f}   "
                     f"mIoU {summary['mean_iou']:.4f}")
        for nm, m in summary["per_class"].items():
            fmt = lambda v, p="{:.4f}": "  n/a " if v is None else p.format(v)  # noqa: E731
            lines.append(f"  {nm:<14} Dice {fmt(m['dice'])}  IoU {fmt(m['iou'])}  "
                         f"abstain {fmt(m['abstain_pct'], '{:.2f}')}%")
    elif summary.get("abstain_pct") is not None:
        lines.append(f"abstain {summary['abstain_pct']:.2f}% (no ground-truth mask: no accuracy metrics)")
    lines.append(f"outputs in {out}")
    print("\n".join(lines))

