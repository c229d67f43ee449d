"""Report sections of the pointcloud plugin (``Plugin.report``), built only from the run folder's files.

certify-pc: an interactive 3D view of each certified cloud (``shapes/*.npz``) coloured by certified part,
abstentions white, with certified / smoothed / clean / ground-truth views and hover showing the part, the
top-class count and the point's own radius; interactive accuracy-vs-radius, Bonferroni-vs-Holm and k-FWER
plots (metrics.json); a per-shape table (results.jsonl) sortable by certified accuracy.
train-pc: the loss curve and the test accuracies.
"""

from __future__ import annotations

from typing import Any

from geocert.report import (
    Run,
    Section,
    certification_plots,
    guarantee_sentence,
    loss_curve,
    note,
    plot,
    rounded,
    table,
)

__all__ = ["sections", "MAX_CLOUDS", "MAX_POINTS"]

MAX_CLOUDS = 16
"""At most this many clouds are shown in the 3D view (the first ones, in run order)."""
MAX_POINTS = 2048
"""Clouds with more points are subsampled (seeded, uniformly) for display."""

_VIEWS = (("certified", "certified"), ("smoothed", "smoothed"), ("clean", "clean"), ("ground truth", "target"))
_BG = "#3b4046"


def sections(run: Run) -> list[Section]:
    if run.command == "certify-pc":
        return _certify_sections(run)
    if run.command == "train-pc":
        return _train_sections(run)
    return []


def _certify_sections(run: Run) -> list[Section]:
    m = run.metrics
    out: list[Section] = []
    unit = m.get("radius_unit") or ("rotation angle (degrees)" if m.get("mode") == "rotation" else "ℓ2")
    # before metrics.json exists (a run in progress) the parameters give the guarantee (xyz mode: σ is the radius'
    # σ; rotation mode needs the run's own radius)
    params = {**run.params, **m} if run.params.get("mode", "xyz") == "xyz" or m else m
    g = guarantee_sentence(params, component="point", unit=unit)
    if g:
        out.append(Section("guarantee", g, role="guarantee"))
    out.append(Section("Certified clouds (3D)", lambda: _clouds(run)))
    out.append(Section("Certified accuracy", lambda: certification_plots(
        run, what="point", unit="rotation radius (degrees)" if m.get("mode") == "rotation" else "ℓ2 radius")))
    if run.results:
        out.append(Section("Per shape", lambda: _shape_table(run)))
    return out


def _colorscale(num_parts: int) -> list[list[Any]]:
    """A discrete colour scale for values −1 (abstain, white) … num_parts − 1, with cmin/cmax ±0.5 around."""
    from geocert.io import label_palette

    pal = label_palette(num_parts)  # [P + 1, 3], the last row is the abstain colour
    colours = [pal[-1]] + [pal[i] for i in range(num_parts)]
    n = len(colours)
    scale = []
    for j, c in enumerate(colours):
        css = f"rgb({int(c[0])},{int(c[1])},{int(c[2])})"
        scale += [[j / n, css], [(j + 1) / n, css]]
    return scale


def _clouds(run: Run) -> str:
    import numpy as np

    files = run.files("shapes/*.npz")
    if not files:
        return note("no shapes/*.npz in this run folder: nothing to show in 3D")
    shown = files[:MAX_CLOUDS]
    from geocert.pipeline.dataset import safe_name

    names = {safe_name(str(r.get("name", ""))): r for r in run.results}
    clouds = [(f, run.npz(f)) for f in shown]
    parts = max(int(max(z[k].max(initial=-1) for k in ("certified", "smoothed", "clean", "target") if k in z))
                for _, z in clouds) + 1
    parts = max(parts, 1)
    scale = _colorscale(parts)
    n = run.metrics.get("n") or run.params.get("n")
    subsampled = 0
    items = []
    for f, z in clouds:
        pts = np.asarray(z["points"], dtype=np.float64)
        idx = np.arange(len(pts))
        if len(pts) > MAX_POINTS:
            idx = np.sort(np.random.default_rng(0).choice(len(pts), MAX_POINTS, replace=False))
            subsampled += 1
        pts = pts[idx]
        top = np.asarray(z.get("top_counts", np.zeros(len(idx))))[idx] if "top_counts" in z else np.zeros(len(idx))
        rad = np.asarray(z["point_radius"], dtype=np.float64)[idx] if "point_radius" in z else np.zeros(len(idx))
        trace = {"type": "scatter3d", "mode": "markers", "x": rounded(pts[:, 0]), "y": rounded(pts[:, 1]),
                 "z": rounded(pts[:, 2]), "customdata": [[int(c), float(r)] for c, r in zip(top, rounded(rad, 5), strict=True)],
                 "marker": {"size": 3, "cmin": -1.5, "cmax": parts - 0.5, "colorscale": scale, "showscale": False,
                            "line": {"width": 0}}}
        views = {}
        for label, key in _VIEWS:
            if key not in z:
                continue
            lab = np.asarray(z[key]).astype(np.int64)[idx]
            text = ["abstain" if v < 0 else f"part {v}" for v in lab.tolist()]
            hover = (f"{label}: %{{text}}<br>top-class count %{{customdata[0]}}" + (f" / {n}" if n else "")
                     + "<br>radius %{customdata[1]}<extra></extra>")
            views[label] = [{"marker.color": lab.tolist(), "text": text, "hovertemplate": hover}]
        stem = f.split("/")[-1][:-4]
        rec = names.get(stem, {})
        label = stem
        if rec:
            label = f"{rec.get('name', stem)} ({rec.get('category', '?')}), certified acc {rec.get('certified_accuracy', 0):.3f}"
        items.append({"label": label, "data": [trace], "views": views})
    layout = {"scene": {"aspectmode": "data", "bgcolor": _BG, "xaxis": {"visible": False},
                        "yaxis": {"visible": False}, "zaxis": {"visible": False}},
              "margin": {"l": 0, "r": 0, "t": 10, "b": 0}, "paper_bgcolor": _BG, "showlegend": False}
    msg = (f"{len(shown)} of {len(files)} clouds shown" if len(files) > len(shown) else f"{len(shown)} cloud(s)")
    if subsampled:
        msg += f"; {subsampled} cloud(s) subsampled to {MAX_POINTS} points for display"
    caption = (f"{msg}. Colour = part (abstentions white); drag to rotate, scroll to zoom, hover a point for its "
               "part, top-class count and its own radius σ·Φ⁻¹(p̲) (0 when abstained).")
    return plot([], layout, items=items, height=560, caption=caption)


def _shape_table(run: Run) -> str:
    run.mark_used("results.jsonl")
    cols = ["name", "category", "certified_accuracy", "abstain_rate", "smoothed_accuracy", "clean_accuracy",
            "certified_miou", "smoothed_miou", "num_points", "sampling_s"]
    rows = [[r.get(c) for c in cols] for r in run.results]
    return table(cols, rows, sort_by="certified_accuracy",
                 caption=f"{len(rows)} shape(s); click a header to sort")


def _train_sections(run: Run) -> list[Section]:
    m = run.metrics
    out = []
    loss = m.get("loss_per_epoch")
    if isinstance(loss, list) and loss:
        out.append(Section("Training", loss_curve(loss)))
    test = m.get("test")
    if isinstance(test, dict):
        rows = [[k, v.get("accuracy"), v.get("instance_miou"), v.get("class_miou")]
                for k, v in test.items() if isinstance(v, dict)]
        out.append(Section("Test accuracy", table(["inputs", "accuracy", "instance mIoU", "class mIoU"], rows,
                                                  sortable=False,
                                                  caption=f"σ = {m.get('sigma')} for the noisy inputs")))
    return out
