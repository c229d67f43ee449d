"""The standard figures of a dataset certification (SegCertify's Figures 3, 5 and 6), from ``metrics.json``:

- ``certified_accuracy_vs_radius.png``: certified accuracy at R(τ) = σ·Φ⁻¹(τ) for several τ (dots, labelled
  with τ) and against each component's own radius σ·Φ⁻¹(p̲) (dashed);
- ``bonferroni_vs_holm.png``: certified fraction and certified accuracy against τ for each correction;
- ``kfwer.png``: the same at the run's τ against the k of k-FWER control.
"""

from __future__ import annotations

from typing import Any

__all__ = ["figure", "plot_radius_curve", "plot_corrections", "plot_kfwer", "write_standard_plots"]


def figure(size=(5.5, 4)):
    """A new matplotlib (Agg) figure and axes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def plot_radius_curve(metrics: dict, *, unit: str, what: str):
    fig, ax = figure()
    corr = metrics["correction"]
    pts = [c for c in metrics["curve"] if c["correction"] == corr and c["k"] == metrics["k"]]
    ax.plot([c["radius"] for c in pts], [c["certified_accuracy"] for c in pts], "o-", color="C0",
            label=f"SegCertify ({corr}), n={metrics['n']}")
    for c in pts:
        ax.annotate(f"{c['tau']:g}", (c["radius"], c["certified_accuracy"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    cr = metrics.get("cohen_radius_curve")
    if cr:
        ax.plot(cr["radius"], cr["certified_accuracy"], "--", color="C1", label="own radius σΦ⁻¹(p̲)")
    ax.set_xlabel(unit)
    ax.set_ylabel(f"certified per-{what} accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"certified accuracy vs radius ({metrics['num_items']} items, σ={metrics['sigma']:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_corrections(metrics: dict, *, what: str):
    fig, ax = figure()
    for i, corr in enumerate(("none", "bonferroni", "holm")):
        pts = [c for c in metrics["curve"] if c["correction"] == corr and c["k"] == metrics["k"]]
        if not pts:
            continue
        taus = [c["tau"] for c in pts]
        ax.plot(taus, [c["certified_fraction"] for c in pts], "o-", color=f"C{i}", label=f"{corr}: certified")
        ax.plot(taus, [c["certified_accuracy"] for c in pts], "x--", color=f"C{i}", label=f"{corr}: cert. acc.")
    ax.set_xlabel("τ")
    ax.set_ylabel(f"fraction of {what}s")
    ax.set_title(f"FWER control: Bonferroni vs Holm (α={metrics['alpha']:g}, n={metrics['n']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_kfwer(metrics: dict, *, what: str):
    fig, ax = figure()
    pts = metrics["kfwer"]
    ks = [p["k"] for p in pts]
    ax.plot(ks, [p["certified_fraction"] for p in pts], "o-", label="certified")
    ax.plot(ks, [p["certified_accuracy"] for p in pts], "x--", label="certified accuracy")
    ax.set_xscale("log")
    ax.set_xlabel("k (up to k−1 false certificates per item allowed with probability ≥ 1−α)")
    ax.set_ylabel(f"fraction of {what}s")
    ax.set_title(f"k-FWER control (Holm, τ={metrics['tau']:g}, α={metrics['alpha']:g}, n={metrics['n']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_standard_plots(run: Any, metrics: dict, *, unit: str = "ℓ2 radius", what: str = "component") -> list[str]:
    """Write the three figures into ``run`` (those the metrics allow: labelled items are needed)."""
    written = []
    if metrics.get("curve") and metrics.get("certified_accuracy") is not None:
        run.save_figure("certified_accuracy_vs_radius.png", plot_radius_curve(metrics, unit=unit, what=what), dpi=120)
        run.save_figure("bonferroni_vs_holm.png", plot_corrections(metrics, what=what), dpi=120)
        written += ["certified_accuracy_vs_radius.png", "bonferroni_vs_holm.png"]
    if metrics.get("kfwer") and metrics.get("certified_accuracy") is not None:
        run.save_figure("kfwer.png", plot_kfwer(metrics, what=what), dpi=120)
        written.append("kfwer.png")
    return written
