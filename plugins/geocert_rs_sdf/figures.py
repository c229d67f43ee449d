"""The SDF slice figure of ``geocert sdf`` and ``geocert render``: one colour convention for both.

Red is inside (SDF > 0), blue outside, white the zero level (drawn as a black contour), on a symmetric colour
range, with axes in scene units and a colour bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["sdf_slice_figure", "SLICE_CMAP", "SLICE_CONVENTION"]

SLICE_CMAP = "RdBu_r"  # low (outside, negative) blue → white → high (inside, positive) red
SLICE_CONVENTION = "red: inside (SDF > 0), blue: outside, black line: SDF = 0, grey: undecided (render)"


def sdf_slice_figure(values: np.ndarray, extent: tuple[float, float, float, float], *, xlabel: str, ylabel: str,
                     title: str, units: str, second_level: tuple[np.ndarray, str] | None = None,
                     undecided: np.ndarray | None = None) -> Any:
    """A matplotlib figure of a 2-D SDF slice ``values [A, B]`` (positive inside): axis 0 runs along x
    (``xlabel``), axis 1 along y (``ylabel``); ``extent`` = (x0, x1, y0, y1) of the outer cell edges.

    ``second_level``: another field on the same cells and a label, whose ½ level is drawn green, dashed (e.g.
    the input occupancy). ``undecided``: a bool mask on the same cells (e.g. where the base occupancy is
    neither inside nor outside), drawn as grey hatching with its share of the slice in the title."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    vals = np.asarray(values, dtype=np.float64)
    a, b = vals.shape
    x0, x1, y0, y1 = extent
    xs = x0 + (np.arange(a) + 0.5) * (x1 - x0) / a
    ys = y0 + (np.arange(b) + 0.5) * (y1 - y0) / b
    lim = float(np.abs(vals).max()) or 1.0
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(vals.T, origin="lower", cmap=SLICE_CMAP, vmin=-lim, vmax=lim, extent=extent,
                   interpolation="nearest")
    notes = ["black: SDF = 0"]
    if second_level is not None:
        other, label = second_level
        other = np.asarray(other)
        if other.min() < 0.5 < other.max():
            ax.contour(xs, ys, other.T, levels=[0.5], colors="green", linestyles="dashed", linewidths=1.0)
        notes.append(f"green dashed: {label} = 0.5")
    if undecided is not None:
        und = np.asarray(undecided, dtype=bool)
        if und.any():
            ax.contourf(xs, ys, und.T.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
            ax.imshow(np.ma.masked_where(~und.T, und.T.astype(float)), origin="lower", cmap="Greys",
                      vmin=0.0, vmax=2.0, alpha=0.8, extent=extent, interpolation="nearest")
        notes.append(f"grey: undecided ({100 * und.mean():.1f}% of the slice)")
    if vals.min() < 0.0 < vals.max():
        ax.contour(xs, ys, vals.T, levels=[0.0], colors="black", linewidths=1.2)
    fig.colorbar(im, ax=ax, label=f"SDF ({units}): red inside (> 0), blue outside")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{'; '.join(notes)}", fontsize=9)
    return fig
