"""Report sections of the connected2d plugin (``Plugin.report``), built from the run folder's files.

segment2d: the image, its scribbles, the mask overlay, the mask (and the ground truth when the run had one);
the component counts and the connectivity check with the evidence behind it (FICNN convexity, flow
round trip). The image and scribbles are read from the paths the run recorded (the user's data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geocert.report import Run, Section, image, note, slider, table

__all__ = ["sections"]

_WIDTH = 480
_SCRIBBLES = "scribbles (red: foreground, blue: background)"


def sections(run: Run) -> list[Section]:
    if run.command != "segment2d":
        return []
    m = run.metrics
    out = [Section("guarantee", _guarantee(m), role="guarantee"),
           Section("Image, scribbles and mask", lambda: _images(run)),
           Section("Connectivity", lambda: _connectivity(m))]
    return out


def _guarantee(m: dict) -> str:
    return ("The foreground {x : h(g(x)) ≤ 0} is the preimage of the convex sublevel set {z : h(z) ≤ 0} of an "
            "input-convex network h under a bijective spline flow g, so it is path-connected by construction: "
            "any two foreground points are joined by a path inside it (g⁻¹ of the straight segment between their "
            "images). On the pixel grid this shows as one connected component once the certified joining paths "
            f"are drawn (here: {m.get('components_8conn_joined_mask', '?')} component(s)).")


def _read(path: Any) -> Any | None:
    import imageio.v3 as iio

    if not path or not Path(str(path)).is_file():
        return None
    return iio.imread(str(path))


def _scribble_overlay(img: Any, scr: Any) -> Any:
    """The scribbles (red = foreground, blue = background, black = none) drawn over the image."""
    import numpy as np

    base = np.asarray(img)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    base = base[..., :3].copy()
    s = np.asarray(scr)
    if s.ndim == 2:
        s = np.repeat(s[..., None], 3, axis=-1)
    s = s[..., :3]
    if s.shape[:2] != base.shape[:2]:
        return base
    drawn = s.max(axis=-1) > 0
    base[drawn] = s[drawn]
    return base


def _images(run: Run) -> str:
    m = run.metrics
    figs: list[tuple[str, str]] = []
    missing: list[str] = []
    img = _read(m.get("image"))
    if img is not None:
        figs.append((image(img, "image", width=_WIDTH, pixelated=True), "image"))
    else:
        missing.append(f"image {m.get('image')}")
    if run.exists("overlay_scribbles.png"):
        figs.append((image(run.read_bytes("overlay_scribbles.png"), _SCRIBBLES, width=_WIDTH, pixelated=True),
                     _SCRIBBLES))
    else:
        scr = _read(m.get("scribbles"))
        if scr is not None and img is not None:
            figs.append((image(_scribble_overlay(img, scr), _SCRIBBLES, width=_WIDTH, pixelated=True), _SCRIBBLES))
        elif m.get("scribbles"):
            missing.append(f"scribbles {m.get('scribbles')}")
    for rel, cap in (("overlay.png", "mask overlay"), ("mask.png", "mask (with the certified joining paths)"),
                     ("mask_centres.png", "mask (pixel centres only)")):
        if run.exists(rel):
            figs.append((image(run.read_bytes(rel), cap, width=_WIDTH, pixelated=True), cap))
    gt = _read(m.get("gt"))
    if gt is not None:
        figs.append((image(gt, "ground truth", width=_WIDTH, pixelated=True), "ground truth"))
    if not figs:
        return note("no image, scribbles or mask to show")
    # one large panel at a time: flipping between them shows how mask, scribbles and image line up
    start = next((i for i, (_, c) in enumerate(figs) if c == "mask overlay"), 0)
    out = slider([f for f, _ in figs], [c for _, c in figs], title="layer", start=start)
    if missing:
        out += note("not found any more, not shown: " + "; ".join(missing), "warn")
    return out


def _connectivity(m: dict) -> str:
    joined = m.get("components_8conn_joined_mask")
    if joined == 1:
        verdict = note("PASS: the mask with its certified joining paths is one 8-connected component", "info")
    elif joined == 0:
        verdict = note("EMPTY: the mask has no foreground pixel (is the model trained long enough?)", "warn")
    elif isinstance(joined, int):
        verdict = note(f"FAIL: the mask with its joining paths has {joined} components", "error")
    else:
        verdict = note("metrics.json has no connectivity check", "warn")
    count_keys = [k for k in m if k.startswith("components_") or k.startswith("teacher_components")]
    rows = [[k, m[k]] for k in count_keys]
    jp = m.get("joining_paths")
    if isinstance(jp, dict):
        rows += [[f"joining_paths.{k}", v] for k, v in jp.items() if not isinstance(v, (dict, list))]
    evidence = [[k, m[k]] for k in ("convexity_pairs", "convexity_max_violation", "z_weights_min",
                                    "flow_roundtrip_max_err_px", "flow_grid_outside_square",
                                    "iou_foreground", "iou_foreground_centres", "iou_background",
                                    "teacher_iou_foreground", "foreground_fraction") if k in m]
    return (verdict + table(["component count", "value"], rows, sortable=False,
                            caption="4conn / 8conn: pixel connectivity; fineNx: on a grid N times as fine") +
            table(["check", "value"], evidence, sortable=False,
                  caption="evidence: convexity of h on random pairs, non-negative z-weights, flow round-trip error, "
                          "and the segmentation quality"))
