"""Report sections of the imageseg plugin (``Plugin.report``), built from the run folder's files.

certify-seg: image, ground truth, certified labels (abstentions white) and the per-pixel radius heat map side by
side, with a slider over the images in dataset mode; Dice / IoU per class; certified accuracy vs radius;
a per-image table. The input image and its mask are read from the paths the run recorded (they are the
user's data, not copied into the run folder); when they are gone the page says so.
train-seg / train-denoiser: the loss curve and the test scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geocert.report import (
    Run,
    Section,
    certification_plots,
    guarantee_sentence,
    heat_image,
    image,
    loss_curve,
    note,
    plot,
    slider,
    table,
)

__all__ = ["sections", "MAX_IMAGES"]

MAX_IMAGES = 32
"""Dataset runs show the first this many images in the slider (the table lists all)."""
_DISPLAY = 200  # display width of one panel, px


def sections(run: Run) -> list[Section]:
    if run.command == "certify-seg":
        return _certify_sections(run)
    if run.command in ("train-seg", "train-denoiser"):
        return _train_sections(run)
    return []


def _certify_sections(run: Run) -> list[Section]:
    m = run.metrics or {}
    params = {**run.params, **m}
    if "radius" not in params and "radius" in run.config:
        params["radius"] = run.config["radius"]
    out: list[Section] = []
    units = run.config.get("pixel_units") or [0, 1]
    g = guarantee_sentence(params, component="pixel", unit=f"ℓ2 (pixel intensities in {units})")
    if g:
        out.append(Section("guarantee", g, role="guarantee"))
    out.append(Section("Certified segmentation", lambda: _panels(run, params)))
    per_class = (m.get("pooled") or m).get("per_class") if m else None
    if isinstance(per_class, dict) and per_class:
        out.append(Section("Dice / IoU per class", lambda: _per_class(per_class)))
    if m.get("curve") or m.get("kfwer"):
        out.append(Section("Certified accuracy", lambda: certification_plots(run, what="pixel")))
    elif isinstance(m.get("certified_accuracy_curve"), list) and m["certified_accuracy_curve"]:
        curve = m["certified_accuracy_curve"]
        run.mark_used("certified_accuracy_vs_radius.png")
        out.append(Section("Certified accuracy", plot(
            [{"type": "scatter", "mode": "lines+markers", "x": [c.get("radius") for c in curve],
              "y": [c.get("accuracy") for c in curve], "name": "certified pixel accuracy"}],
            {"xaxis": {"title": {"text": "ℓ2 radius (pixel values in [0, 1])"}},
             "yaxis": {"title": {"text": "certified pixel accuracy"}, "range": [0, 1]}}, height=340)))
    if run.results:
        run.mark_used("results.jsonl")
        cols = ["name", "certified accuracy", "abstain %", "mean Dice", "mean IoU", "height", "width"]
        rows = []
        for r in run.results:
            rm = r.get("metrics") or {}
            acc = r.get("certified_accuracy", rm.get("certified_pixel_accuracy"))
            abst = r.get("abstain_pct", 100.0 * r["abstain_rate"] if isinstance(r.get("abstain_rate"), float) else None)
            rows.append([r.get("name"), acc, abst, rm.get("mean_dice"), rm.get("mean_iou"), r.get("height"),
                         r.get("width")])
        out.append(Section("Per image", table(cols, rows, sort_by="certified accuracy",
                                              caption=f"{len(rows)} image(s); click a header to sort")))
    return out


# ---------------------------------------------------------------------------------------------- panels


def _read_any(path: Path) -> Any:
    import numpy as np

    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    import imageio.v3 as iio

    return iio.imread(path)


def _display_image(path: Path) -> Any:
    """An input image as uint8 gray or RGB for display."""
    import numpy as np

    a = np.asarray(_read_any(path))
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3:
        a = a[..., :3] if a.shape[-1] >= 3 else a[..., 0]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = ((a - lo) / (hi - lo if hi > lo else 1.0) * 255 + 0.5).astype(np.uint8)
    return a


def _colour(labels: Any, num_classes: int) -> Any:
    import numpy as np

    from geocert.io import label_palette

    lab = np.asarray(labels).astype(np.int64)
    pal = label_palette(num_classes)
    return pal[np.where((lab < 0) | (lab >= num_classes), num_classes, lab)]


def _abstain_from_rgb(certified_rgb: Any) -> Any:
    import numpy as np

    from geocert.io import ABSTAIN_COLOR

    rgb = np.asarray(certified_rgb)[..., :3]
    return np.all(rgb == np.array(ABSTAIN_COLOR, dtype=rgb.dtype), axis=-1)


def _mask_path(image_path: Path) -> Path | None:
    masks = image_path.parent.parent / "masks"
    if not masks.is_dir():
        return None
    for p in sorted(masks.glob(image_path.stem + ".*")):
        return p
    return None


def _panel(name: str, image_path: str | None, gt: Any | None, labels_rgb: Any, radius_map: Any,
           vmax: float, radius_note: str, num_classes: int) -> str:
    figs, missing = [], []
    if image_path and Path(image_path).is_file():
        figs.append(image(_display_image(Path(image_path)), "image", width=_DISPLAY, pixelated=True))
    else:
        missing.append(f"image {image_path or '(not recorded)'}")
    if gt is not None:
        figs.append(image(_colour(gt, num_classes), "ground truth", width=_DISPLAY, pixelated=True))
    figs.append(image(labels_rgb, "certified labels (white = abstain)", width=_DISPLAY, pixelated=True))
    rmap, bar = heat_image(radius_map, vmax)
    figs.append(image(rmap, radius_note, width=_DISPLAY, pixelated=True).replace(
        "</figcaption>", f"<br>{bar}</figcaption>"))
    body = '<div class="gc-row">' + "".join(figs) + "</div>"
    if missing:
        body += note(f"{name}: not found any more, not shown: {'; '.join(missing)}", "warn")
    return body


def _read_mask(path: Path | None) -> Any | None:
    import numpy as np

    if path is None or not Path(path).is_file():
        return None
    mask = np.asarray(_read_any(Path(path)))
    return mask[..., 0] if mask.ndim == 3 else mask


def _item(run: Run, rec: dict, num_classes: int, radius: float) -> tuple[str, float] | None:
    """One image's panel: from ``items/<name>.npz`` (certified labels, ground truth, each pixel's own radius)
    when the run wrote it, else from ``labels/<name>.png``."""
    import numpy as np

    from geocert.pipeline.dataset import safe_name

    name = str(rec.get("name"))
    npz = f"items/{safe_name(name)}.npz"
    ip = rec.get("image")
    if run.exists(npz):
        z = run.npz(npz)
        cert = np.asarray(z["certified"])
        gt = np.asarray(z["target"]) if "target" in z and np.asarray(z["target"]).max(initial=-1) >= 0 else None
        own = np.asarray(z["point_radius"], dtype=np.float64) if "point_radius" in z else None
        if own is not None:
            own = np.where(cert >= 0, own, 0.0)
            vmax = float(own.max(initial=0.0)) or radius
            cap = "each pixel's own radius σ·Φ⁻¹(p̲) (0 = abstain)"
        else:
            own, vmax, cap = np.where(cert >= 0, radius, 0.0), radius, "certified radius R (0 = abstain)"
        return _panel(name, ip, gt, _colour(cert, num_classes), own, vmax, cap, num_classes), vmax
    rel = f"labels/{name}.png"
    if not run.exists(rel):
        return None
    rgb = run.image(rel)
    gt = _read_mask(_mask_path(Path(ip))) if ip else None
    rmap = np.where(_abstain_from_rgb(rgb), 0.0, radius)
    return _panel(name, ip, gt, rgb, rmap, radius, "certified radius R (0 = abstain)", num_classes), radius


def _legend(class_names: list[str], num_classes: int) -> str:
    from geocert.io import label_palette

    pal = label_palette(num_classes)
    items = [(str(class_names[i]) if i < len(class_names) else f"class {i}", pal[i]) for i in range(num_classes)]
    items.append(("abstain", pal[-1]))
    return '<p class="gc-caption">' + " ".join(
        f'<span style="display:inline-block;width:12px;height:12px;border:1px solid #999;'
        f'background:rgb({int(c[0])},{int(c[1])},{int(c[2])})"></span> {n}&nbsp;&nbsp;' for n, c in items) + "</p>"


def _panels(run: Run, params: dict) -> str:
    import numpy as np

    num_classes = int(params.get("num_classes") or run.config.get("num_classes") or 0)
    radius = float(params.get("radius") or 0.0)
    names = params.get("class_names") or run.config.get("class_names") or []
    if run.results:  # dataset mode: one frame per image, a slider over them
        recs = run.results[:MAX_IMAGES]
        frames, labels = [], []
        for r in recs:
            k = num_classes or int(len((r.get("metrics") or {}).get("per_class") or {})) or 1
            got = _item(run, r, k, radius)
            if got is None:
                continue
            frames.append(got[0])
            acc = r.get("certified_accuracy", (r.get("metrics") or {}).get("certified_pixel_accuracy"))
            labels.append(f"{r.get('name')}" + (f" (certified acc {acc:.3f})" if isinstance(acc, float) else ""))
        for f in run.files("labels/*.png"):
            run.mark_used(f)
        if not frames:
            return note("no items/*.npz or labels/*.png written yet")
        extra = (f" The first {len(frames)} of {len(run.results)} images are shown." if len(run.results) > len(recs)
                 else "")
        return (_legend(names, num_classes) + slider(frames, labels, title="image") +
                note("Every certified pixel keeps its label within R = σ·Φ⁻¹(τ); the heat map shows each pixel's own "
                     f"(larger or equal) radius σ·Φ⁻¹(p̲) where the run stored it.{extra}"))
    # single image: labels.npy (exact) or labels.png
    if run.exists("labels.npy"):
        lab = run.npy("labels.npy")
        lab_rgb = _colour(lab, max(num_classes, 1))
        abstain = np.asarray(lab) < 0
        run.mark_used("labels.png")
    elif run.exists("labels.png"):
        lab_rgb = run.image("labels.png")
        abstain = _abstain_from_rgb(lab_rgb)
    else:
        return note("no labels.npy / labels.png in this run folder")
    run.mark_used("comparison.png")
    cfg = run.params
    ip = params.get("image") or cfg.get("image")
    gt = _read_mask(Path(cfg["mask"])) if cfg.get("mask") else None
    return (_legend(names, num_classes) +
            _panel(Path(str(ip)).name, ip, gt, lab_rgb, np.where(abstain, 0.0, radius), radius,
                   "certified radius R (0 = abstain)", max(num_classes, 1)))


def _per_class(per_class: dict) -> str:
    names = list(per_class)
    rows = [[n, v.get("dice"), v.get("iou"), v.get("abstain_pct"), v.get("pixels")] for n, v in per_class.items()
            if isinstance(v, dict)]
    bars = plot([{"type": "bar", "name": "Dice", "x": names, "y": [r[1] for r in rows]},
                 {"type": "bar", "name": "IoU", "x": names, "y": [r[2] for r in rows]}],
                {"barmode": "group", "yaxis": {"range": [0, 1], "title": {"text": "score (abstain counts wrong)"}}},
                height=320)
    return (table(["class", "Dice", "IoU", "abstain %", "pixels"], rows, sortable=True,
                  caption="pooled over all pixels of all images") + bars)


def _train_sections(run: Run) -> list[Section]:
    m = run.metrics
    out = []
    loss = m.get("loss_history")
    if isinstance(loss, list) and loss:
        out.append(Section("Training", loss_curve(loss)))
    rows = []
    for key in ("test_clean", "test_noisy"):
        v = m.get(key)
        if isinstance(v, dict):
            rows.append([key, v.get("certified_pixel_accuracy"), v.get("mean_dice"), v.get("mean_iou")])
    if rows:
        out.append(Section("Test scores", table(["inputs", "pixel accuracy", "mean Dice", "mean IoU"], rows,
                                                sortable=False)))
    return out
