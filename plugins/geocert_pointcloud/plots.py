"""Plots of ``certify-pc``: certified accuracy against radius (several τ; the paper's Figure 3) and the number
of certified points under Bonferroni vs Holm (Figure 5). Written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path

__all__ = ["plot_radius_curve", "plot_corrections", "plot_kfwer"]


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from geocert.io import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.5, 4))


def plot_radius_curve(path: Path, metrics: dict, cfg) -> None:
    """Dots: certified accuracy at R(τ) = σ·Φ⁻¹(τ) for each τ (labelled), with the run's correction; line:
    certified accuracy against each point's own radius σ·Φ⁻¹(p̲) from the main run."""
    fig, ax = _figure()
    pts = [c for c in metrics["curve"] if c["correction"] == cfg.correction]
    ax.plot([c["radius"] for c in pts], [c["certified_accuracy"] for c in pts], "o-", color="C0",
            label=f"SegCertify ({cfg.correction}), n={cfg.n}")
    for c in pts:
        ax.annotate(f"{c['tau']:g}", (c["radius"], c["certified_accuracy"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    cr = metrics.get("cohen_radius_curve")
    if cr:
        ax.plot(cr["radius"], cr["certified_accuracy"], "--", color="C1", label="per-point radius σΦ⁻¹(p̲)")
    unit = "ℓ2 radius" if cfg.mode == "xyz" else "rotation radius (degrees)"
    ax.set_xlabel(unit)
    ax.set_ylabel("certified per-point accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"certified accuracy vs radius ({metrics['num_shapes']} clouds, σ={metrics['sigma']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_corrections(path: Path, metrics: dict, cfg) -> None:
    """Fraction of points certified (solid) and certified accuracy (dashed) against τ for each correction."""
    fig, ax = _figure()
    for i, corr in enumerate(("none", "bonferroni", "holm")):
        pts = [c for c in metrics["curve"] if c["correction"] == corr]
        if not pts:
            continue
        taus = [c["tau"] for c in pts]
        ax.plot(taus, [c["certified_fraction"] for c in pts], "o-", color=f"C{i}", label=f"{corr}: certified")
        ax.plot(taus, [c["certified_accuracy"] for c in pts], "x--", color=f"C{i}", label=f"{corr}: cert. acc.")
    ax.set_xlabel("τ")
    ax.set_ylabel("fraction of points")
    ax.set_title(f"FWER control: Bonferroni vs Holm (α={cfg.alpha}, n={cfg.n})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_kfwer(path: Path, metrics: dict, cfg) -> None:
    """Certified fraction and certified accuracy at the run's τ against the k of k-FWER control (Figure 6)."""
    fig, ax = _figure()
    pts = metrics["kfwer"]
    ks = [p["k"] for p in pts]
    ax.plot(ks, [p["certified_fraction"] for p in pts], "o-", label="certified")
    ax.plot(ks, [p["certified_accuracy"] for p in pts], "x--", label="certified accuracy")
    ax.set_xscale("log")
    ax.set_xlabel("k (up to k−1 false certificates per cloud allowed with probability ≥ 1−α)")
    ax.set_ylabel("fraction of points")
    ax.set_title(f"k-FWER control (Holm, τ={cfg.tau}, α={cfg.alpha}, n={cfg.n})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
