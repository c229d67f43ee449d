"""The dataset certification runner: a plugin supplies items and a model adapter, the core does the rest.

A plugin describes its data set and model with a :class:`DatasetTask` (picklable: executors may send it to
other processes or machines) and calls :func:`certify_dataset`::

    run = open_run(cfg, resumable=True, result_key={**settings.key(), **task.result_key()})
    metrics = certify_dataset(run, task, settings, executor=cfg.executor)
    run.finish(metrics)

For every item, on whichever worker runs it: the model is loaded once per worker
(:meth:`DatasetTask.load_model`), the item is loaded (:meth:`DatasetTask.load_item`), the base classifier
``f`` and clean input ``x`` are built (:meth:`DatasetTask.base_model`), ``n0`` selection and ``n`` estimation
samples are counted with :func:`geocert.smoothing.sample_counts` under a generator seeded by
:func:`item_seed` (the run seed and the item's *name* only, so every executor and worker count gives the same
labels), and :func:`geocert.certify.certify_from_counts` certifies every component.

On the driver, each finished item's arrays go to ``<item_dir>/<name>.npz`` and its record to one line of
``results.jsonl`` (flushed): a rerun skips finished items. At the end the pooled metrics (certified / smoothed
/ clean accuracy, % abstain, IoU / Dice, timings, the certified-accuracy curves for several τ and
corrections and k-FWER from the same counts) and the standard plots are written.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geocert.errors import GeocertError, InputError, ParameterError

__all__ = [
    "CertifySettings",
    "Sample",
    "DatasetTask",
    "ItemResult",
    "item_seed",
    "certify_item",
    "certify_dataset",
    "summarize_items",
    "safe_name",
    "RESULTS",
]

RESULTS = "results.jsonl"


def item_seed(seed: int, name: str) -> int:
    """The noise seed of one item: a function of the run seed and the item's name only."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63 - 1)


def safe_name(name: str) -> str:
    """A file-name-safe form of an item name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


@dataclasses.dataclass(frozen=True)
class CertifySettings:
    """The certification parameters of a dataset run (SegCertify)."""

    sigma: float
    """Noise std σ, in the units of the input the noise is added to."""
    n0: int = 10
    """Selection samples (pick each component's top class)."""
    n: int = 1000
    """Estimation samples (test each top class); n0 < n."""
    tau: float = 0.75
    """Certify a component when P(top class) > τ; radius R = σ·Φ⁻¹(τ)."""
    alpha: float = 0.001
    """Family-wise error level per item."""
    correction: str = "holm"
    """none, bonferroni or holm over the components of an item."""
    k: int = 1
    """k-FWER: up to k−1 false certificates per item allowed with probability ≥ 1−α."""
    batch_size: int = 64
    """Noisy inputs per forward pass."""
    seed: int = 0
    """Run seed; each item's noise seed is :func:`item_seed` (seed, name)."""
    curve_taus: tuple[float, ...] = (0.55, 0.65, 0.75, 0.85, 0.9, 0.95, 0.99)
    """Thresholds for the curves (same counts, statistics only)."""
    kfwer_ks: tuple[int, ...] = (1, 5, 20, 100)
    """k values for the k-FWER curve."""
    radius_scale: float = 1.0
    """Multiply radii by this for display (e.g. 180/π for rotation angles in degrees)."""
    radius_unit: str = "ℓ2 radius"
    """Axis label of the radius."""

    def validate(self) -> CertifySettings:
        """Check every parameter (one-line :class:`ParameterError` naming the option); returns a normalized copy."""
        from geocert.validate import check_alpha, check_correction, check_positive_int, check_sigma, check_tau

        sigma, tau, alpha = check_sigma(self.sigma), check_tau(self.tau), check_alpha(self.alpha)
        n0, n = check_positive_int(self.n0, "n0"), check_positive_int(self.n, "n")
        if n0 >= n:
            raise ParameterError(f"--n0 must be < --n (few selection samples, many estimation samples), got "
                                 f"n0={n0}, n={n}")
        correction, k = check_correction(self.correction, self.k)
        check_positive_int(self.batch_size, "batch-size")
        for t in self.curve_taus:
            if not (isinstance(t, (int, float)) and math.isfinite(t) and 0.5 <= t < 1.0):
                raise ParameterError(f"--curve-taus must lie in [0.5, 1), got {t}")
        for kk in self.kfwer_ks:
            check_positive_int(kk, "kfwer-ks")
        return dataclasses.replace(self, sigma=sigma, tau=tau, alpha=alpha, n0=n0, n=n, correction=correction, k=k)

    def key(self) -> dict:
        """What changes the per-item results (the resume key); curve settings do not."""
        return {f: getattr(self, f) for f in ("sigma", "n0", "n", "tau", "alpha", "correction", "k", "seed")}

    @property
    def radius(self) -> float:
        from geocert.certify import certified_radius

        return certified_radius(self.sigma, self.tau)


@dataclasses.dataclass
class Sample:
    """One loaded item."""

    x: Any
    """The clean input tensor the noise is added to (``[N, 3]`` points, ``[C, H, W]`` image, ``[1]`` angle…)."""
    target: Any = None
    """Ground-truth labels ``[*components]`` (int; negative = unlabelled), or None."""
    data: dict = dataclasses.field(default_factory=dict)
    """Anything else the plugin needs (category, normals, the original points…)."""


class DatasetTask:
    """What a plugin supplies to :func:`certify_dataset`. Subclass it; keep instances picklable (plain
    fields: paths, names, settings), since executors may run items in other processes."""

    num_classes: int = 2
    """C: labels lie in ``[0, C)``."""
    item_dir: str = "items"
    """Folder (in the run) for the per-item ``.npz`` arrays."""
    what: str = "component"
    """What a component is, for plots and messages (``point``, ``pixel``)."""
    label: str = "certify"
    """Progress label."""

    def item_names(self) -> list[str]:
        """The items to certify, in order (names must be unique). Runs on the driver."""
        raise NotImplementedError

    def load_model(self, device: Any) -> Any:
        """Load the model once per worker (on ``device``)."""
        raise NotImplementedError

    def load_item(self, name: str) -> Sample:
        """Load one item (on the worker)."""
        raise NotImplementedError

    def base_model(self, model: Any, sample: Sample, device: Any) -> tuple[Any, Any]:
        """``(f, x)``: the base classifier ``f(batch [B, *x.shape]) -> labels [B, *components]`` and the
        clean input ``x`` on ``device``."""
        raise NotImplementedError

    def max_components(self) -> int | None:
        """An upper bound on components per item, if known up front (to check τ is reachable before work)."""
        return None

    def result_key(self) -> dict:
        """What identifies the data and the model (paths, hashes) for resuming."""
        return {}

    def item_record(self, name: str, sample: Sample, arrays: dict) -> dict:
        """Extra fields of the item's JSON line (e.g. category, mIoU). Runs on the worker."""
        return {}

    def item_arrays(self, name: str, sample: Sample) -> dict:
        """Extra arrays saved with the item (e.g. the points). Runs on the worker."""
        return {}

    def write_item(self, run: Any, name: str, arrays: dict, record: dict) -> None:
        """Extra files for a finished item (PLY, PNG). Runs on the driver."""

    def item_line(self, record: dict) -> str | None:
        """A one-line summary printed when an item finishes (None: the default line)."""
        return None

    def summarize(self, metrics: dict, records: list[dict], arrays: list[dict]) -> None:
        """Add plugin-specific pooled metrics to ``metrics`` (in place). Runs on the driver."""


@dataclasses.dataclass
class ItemResult:
    name: str
    record: dict
    arrays: dict


def certify_item(task: DatasetTask, model: Any, name: str, settings: CertifySettings, device: Any,
                 progress: bool = False) -> ItemResult:
    """Sample, count and certify one item (see the module docstring). Pure apart from the model's own state."""
    import torch

    from geocert.certify import certify_from_counts, check_tau_reachable
    from geocert.pipeline.models import timed
    from geocert.smoothing import sample_counts

    sample = task.load_item(name)
    f, x = task.base_model(model, sample, device)
    f = timed(f)
    gen = torch.Generator(device=x.device).manual_seed(item_seed(settings.seed, name))
    with torch.inference_mode():
        clean = f(x.unsqueeze(0))[0]
    m = int(clean.numel())
    check_tau_reachable(settings.tau, settings.n, settings.alpha, m, settings.correction, settings.k)
    f.seconds = 0.0
    t0 = time.perf_counter()
    kw = dict(sigma=settings.sigma, num_classes=task.num_classes, batch_size=settings.batch_size, generator=gen)
    counts0 = sample_counts(f, x, n=settings.n0, progress="selection n0" if progress else False, **kw)
    counts = sample_counts(f, x, n=settings.n, progress="estimation n" if progress else False, **kw)
    t1 = time.perf_counter()
    cert = certify_from_counts(counts0, counts, sigma=settings.sigma, tau=settings.tau, alpha=settings.alpha,
                               correction=settings.correction, k=settings.k, n0=settings.n0)
    own_radius = cert.cohen_radius()
    t2 = time.perf_counter()
    cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
    target = sample.target
    target_np = (np.asarray(cpu(target) if hasattr(target, "detach") else target).astype(np.int64)
                 if target is not None else np.full(cert.labels.shape, -1, dtype=np.int64))
    arrays = {
        "target": target_np,
        "certified": cpu(cert.labels),
        "top_classes": cpu(cert.top_classes),
        "top_counts": cpu(cert.counts),
        "smoothed": cpu(counts.argmax(-1)),
        "clean": cpu(clean).astype(np.int64),
        "lower_bounds": cpu(cert.lower_bounds),
        "pvalues": cpu(cert.pvalues),
        "point_radius": cpu(own_radius) * settings.radius_scale,
    }
    arrays.update(task.item_arrays(name, sample))
    cert_l = arrays["certified"]
    record: dict[str, Any] = {
        "name": name,
        "num_components": int(cert_l.size),
        "radius": cert.radius * settings.radius_scale,
        "abstain_rate": float((cert_l == -1).mean()) if cert_l.size else 0.0,
        "sampling_s": t1 - t0,
        "forward_s": f.seconds,
        "statistics_s": t2 - t1,
    }
    lab = target_np >= 0
    if target is not None and lab.any():
        record.update({
            "certified_accuracy": float((cert_l[lab] == target_np[lab]).mean()),
            "smoothed_accuracy": float((arrays["smoothed"][lab] == target_np[lab]).mean()),
            "clean_accuracy": float((arrays["clean"][lab] == target_np[lab]).mean()),
        })
    record.update(task.item_record(name, sample, arrays))
    return ItemResult(name, record, arrays)


# ---------------------------------------------------------------------------------------------- driver


def _write_npz(path, arrays: Mapping[str, np.ndarray]) -> None:
    from geocert.io import atomic_write

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _read_npz(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def certify_dataset(run: Any, task: DatasetTask, settings: CertifySettings, *, executor: Any = "local",
                    names: Sequence[str] | None = None, progress: bool = True) -> dict:
    """Certify every item of ``task`` into ``run`` (resumable) and return the pooled metrics.

    Args:
        run: an open resumable :class:`geocert.pipeline.Run`.
        executor: ``"local"``, ``"ray"``, or an executor object (see :mod:`geocert.pipeline.executors`).
        names: the items (default ``task.item_names()``).
    Returns:
        the metrics dict (the caller passes it to ``run.finish``). The standard plots are written.
    """
    from geocert.certify import check_tau_reachable
    from geocert.io import read_jsonl, repair_jsonl
    from geocert.pipeline.executors import get_executor
    from geocert.pipeline.plots import write_standard_plots
    from geocert.pipeline.progress import Progress

    settings = settings.validate()
    names = list(task.item_names() if names is None else names)
    if not names:
        raise InputError("no items to certify")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"duplicate item names: {', '.join(dup[:5])}")
    m = task.max_components()
    if m:
        check_tau_reachable(settings.tau, settings.n, settings.alpha, m, settings.correction, settings.k)
    exe = get_executor(executor) if isinstance(executor, str) else executor

    npz = lambda name: run.dir / task.item_dir / f"{safe_name(name)}.npz"  # noqa: E731
    repair_jsonl(run.dir / RESULTS)  # a run killed mid-append leaves a partial last line
    done = {r["name"]: r for r in read_jsonl(run.dir / RESULTS) if isinstance(r, dict) and "name" in r}
    done = {k: v for k, v in done.items() if npz(k).is_file()}
    todo = [n for n in names if n not in done]
    bar = Progress(len(names), task.label, "items", initial=len(names) - len(todo), disable=not progress)
    results = exe.run(task, settings, todo, run.device)
    try:
        for res in results:
            if res.name in done:  # an executor retried an item that finished meanwhile: keep the first
                continue
            _write_npz(run.path(f"{task.item_dir}/{safe_name(res.name)}.npz"), res.arrays)
            task.write_item(run, res.name, res.arrays, res.record)
            run.append_result(res.record, RESULTS)
            done[res.name] = res.record
            bar.update(1)
            line = task.item_line(res.record)
            if line is None and res.record.get("certified_accuracy") is not None:
                line = (f"  {res.name}: certified acc {res.record['certified_accuracy']:.3f}, abstain "
                        f"{res.record['abstain_rate']:.3f}, {res.record['sampling_s']:.1f}s sampling")
            if line:
                bar.write(line)
    finally:
        close = getattr(results, "close", None)
        if close is not None:  # stop the executor's workers now, also when writing a result failed
            close()
        bar.close()
    records = [done[n] for n in names]
    arrays = [_read_npz(npz(n)) for n in names]
    metrics = summarize_items(settings, records, arrays, num_classes=task.num_classes)
    task.summarize(metrics, records, arrays)
    write_standard_plots(run, metrics, unit=settings.radius_unit, what=task.what)
    return metrics


def summarize_items(settings: CertifySettings, records: Sequence[dict], arrays: Sequence[dict], *,
                    num_classes: int) -> dict:
    """Pooled metrics of finished items (see the module docstring). Accuracies count labelled components
    (target ≥ 0) only; an abstention counts as wrong."""
    import torch

    from geocert.certify import certified_radius, certify_curve
    from geocert.metrics import certified_accuracy_curve, segmentation_metrics

    scale = settings.radius_scale
    cert_all = np.concatenate([a["certified"].reshape(-1) for a in arrays]) if arrays else np.zeros(0, int)
    sampling = float(sum(r["sampling_s"] for r in records))
    statistics = float(sum(r["statistics_s"] for r in records))
    forward = float(sum(r.get("forward_s", 0.0) for r in records))
    total = sampling + statistics
    m: dict[str, Any] = {
        "radius": certified_radius(settings.sigma, settings.tau) * scale,
        "radius_unit": settings.radius_unit,
        "sigma": settings.sigma, "n0": settings.n0, "n": settings.n, "tau": settings.tau, "alpha": settings.alpha,
        "correction": settings.correction, "k": settings.k, "seed": settings.seed,
        "num_items": len(records), "num_components": int(cert_all.size),
        "abstain_rate": float((cert_all == -1).mean()) if cert_all.size else None,
        "timings": {
            "sampling_s": sampling, "forward_s": forward, "statistics_s": statistics, "total_s": total,
            "per_item_s": total / max(len(records), 1),
            "statistics_fraction": statistics / max(total, 1e-12),
            "outside_forward_fraction": (total - forward) / max(total, 1e-12),
        },
        "items": [r["name"] for r in records],
    }
    tgt = [a["target"].reshape(-1) for a in arrays]
    lab = [t >= 0 for t in tgt]
    n_lab = int(sum(int(x.sum()) for x in lab))
    if not n_lab:  # unlabelled items: no accuracy keys at all
        return m
    cat = lambda key: np.concatenate([a[key].reshape(-1)[l_] for a, l_ in zip(arrays, lab, strict=True)])  # noqa: E731
    t_all, c_all = cat("target"), cat("certified")
    seg = segmentation_metrics(torch.from_numpy(c_all), torch.from_numpy(t_all), num_classes)
    m.update({
        "certified_accuracy": float((c_all == t_all).mean()),
        "smoothed_accuracy": float((cat("smoothed") == t_all).mean()),
        "clean_accuracy": float((cat("clean") == t_all).mean()),
        "labelled_abstain_rate": float((c_all == -1).mean()),
        "miou_non_abstained": seg["miou"],
        "mean_dice_non_abstained": seg["mean_dice"],
    })
    grid, acc = certified_accuracy_curve(torch.from_numpy(c_all), torch.from_numpy(t_all),
                                         torch.from_numpy(cat("point_radius")))
    m["cohen_radius_curve"] = {"radius": grid.tolist(), "certified_accuracy": acc.tolist()}
    tops = [a["top_counts"].reshape(-1) for a in arrays]
    classes = [a["top_classes"].reshape(-1) for a in arrays]
    common = dict(n=settings.n, sigma=settings.sigma, alpha=settings.alpha)
    curve = certify_curve(tops, classes, tgt, taus=sorted(set(settings.curve_taus) | {settings.tau}),
                          corrections=("none", "bonferroni", "holm"), ks=(settings.k,), **common)
    kfwer = certify_curve(tops, classes, tgt, taus=(settings.tau,), corrections=("holm",),
                          ks=sorted(set(settings.kfwer_ks) | {settings.k}), **common)
    for c in curve + kfwer:
        c["radius"] *= scale
    m["curve"] = curve
    m["kfwer"] = kfwer
    return m


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def run_item_checked(task: DatasetTask, model: Any, name: str, settings: CertifySettings, device: Any,
                     progress: bool = False) -> ItemResult:
    """:func:`certify_item`, with a model failure turned into one line naming the item (any executor)."""
    from geocert.pipeline.models import ModelError

    try:
        return certify_item(task, model, name, settings, device, progress=progress)
    except GeocertError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        raise ModelError(f"item {name}: the model failed ({type(exc).__name__}: {_one_line(exc)})") from None

