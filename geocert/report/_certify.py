"""Interactive versions of a dataset certification's standard figures (``geocert.pipeline.plots``), from
``metrics.json``: certified accuracy vs radius, Bonferroni vs Holm, k-FWER."""

from __future__ import annotations

from typing import Any

from geocert.report._blocks import note, plot, rounded

__all__ = ["certification_plots", "STANDARD_FIGURES"]

STANDARD_FIGURES = ("certified_accuracy_vs_radius.png", "bonferroni_vs_holm.png", "kfwer.png")
"""The static figures these plots replace on the page."""


def _same_k(entries: list[dict], k: Any) -> list[dict]:
    return [c for c in entries if c.get("k", k) == k]


def certification_plots(run: Any, *, what: str = "component", unit: str | None = None) -> str:
    """The three plots (those ``run.metrics`` allows), side by side; marks the static PNGs as shown.

    ``what``: the certified component (point, pixel); ``unit``: the radius' axis label."""
    m = run.metrics
    k = m.get("k", 1)
    unit = unit or m.get("radius_unit") or "ℓ2 radius"
    corr = m.get("correction", "holm")
    curve = _same_k([c for c in m.get("curve") or [] if isinstance(c, dict)], k)
    blocks = []
    traces = []
    pts = [c for c in curve if c.get("correction") == corr]
    if pts:
        traces.append({"type": "scatter", "mode": "lines+markers+text", "name": f"SegCertify ({corr})",
                       "x": [c["radius"] for c in pts], "y": [c["certified_accuracy"] for c in pts],
                       "text": [f"τ={c['tau']:g}" for c in pts], "textposition": "top right"})
    cr = m.get("cohen_radius_curve")
    if isinstance(cr, dict) and cr.get("radius"):
        traces.append({"type": "scatter", "mode": "lines", "name": "own radius σΦ⁻¹(p̲)",
                       "x": rounded(cr["radius"], 5), "y": rounded(cr["certified_accuracy"], 5),
                       "line": {"dash": "dash"}})
    if traces:
        blocks.append(plot(traces, {"title": {"text": "certified accuracy vs radius"},
                                    "xaxis": {"title": {"text": unit}},
                                    "yaxis": {"title": {"text": f"certified per-{what} accuracy"}, "range": [0, 1]},
                                    "legend": {"orientation": "h", "y": -0.25}}, height=400))
    if curve:
        tr = []
        for i, c_name in enumerate(("none", "bonferroni", "holm")):
            cs = [c for c in curve if c.get("correction") == c_name]
            if not cs:
                continue
            colour = ("#2ca02c", "#1f77b4", "#ff7f0e")[i]
            tr.append({"type": "scatter", "mode": "lines+markers", "name": f"{c_name}: certified",
                       "x": [c["tau"] for c in cs], "y": [c.get("certified_fraction") for c in cs],
                       "line": {"color": colour}, "customdata": [c.get("radius") for c in cs],
                       "hovertemplate": "τ=%{x}<br>R=%{customdata:.4f}<br>%{y:.4f}"})
            tr.append({"type": "scatter", "mode": "lines+markers", "name": f"{c_name}: cert. acc.",
                       "x": [c["tau"] for c in cs], "y": [c.get("certified_accuracy") for c in cs],
                       "line": {"color": colour, "dash": "dash"}, "marker": {"symbol": "x"}})
        blocks.append(plot(tr, {"title": {"text": f"FWER control: Bonferroni vs Holm (α = {m.get('alpha')})"},
                                "xaxis": {"title": {"text": "τ"}},
                                "yaxis": {"title": {"text": f"fraction of {what}s"}, "range": [0, 1]},
                                "legend": {"orientation": "h", "y": -0.25}}, height=400))
    kf = [c for c in m.get("kfwer") or [] if isinstance(c, dict)]
    if kf:
        ks = [c["k"] for c in kf]
        blocks.append(plot(
            [{"type": "scatter", "mode": "lines+markers", "name": "certified", "x": ks,
              "y": [c.get("certified_fraction") for c in kf]},
             {"type": "scatter", "mode": "lines+markers", "name": "certified accuracy", "x": ks,
              "y": [c.get("certified_accuracy") for c in kf], "line": {"dash": "dash"}}],
            {"title": {"text": f"k-FWER control (τ = {kf[0].get('tau', m.get('tau'))})"},
             "xaxis": {"title": {"text": "k (up to k − 1 false certificates per item allowed)"}, "type": "log"},
             "yaxis": {"title": {"text": f"fraction of {what}s"}, "range": [0, 1]},
             "legend": {"orientation": "h", "y": -0.25}}, height=400))
    if not blocks:
        return note("metrics.json has no certification curves (unlabelled items, or the run is in progress)")
    for f in STANDARD_FIGURES:
        run.mark_used(f)
    return '<div class="gc-row">' + "".join(f'<div style="flex:1 1 420px;min-width:0">{b}</div>' for b in blocks) + "</div>"
