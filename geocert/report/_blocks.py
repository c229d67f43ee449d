"""HTML building blocks of a report section: inline images, videos, sortable tables, sliders and plotly plots.

Every block returns an HTML string with everything inline (data URIs, JSON specs in ``<script
type="application/json">``), so that the page opens from disk with no network. The page's own script
(``_page.py``) turns the JSON specs into plotly plots and wires tables, sliders and view buttons.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "escape",
    "image",
    "image_data_uri",
    "video",
    "table",
    "slider",
    "plot",
    "details",
    "note",
    "rounded",
    "format_value",
    "png_bytes",
    "heat_image",
    "loss_curve",
]

_ids = itertools.count()


def _new_id(prefix: str) -> str:
    return f"gc-{prefix}-{next(_ids)}"


def escape(text: Any) -> str:
    """HTML-escape ``str(text)``."""
    return html.escape(str(text), quote=True)


def png_bytes(array: Any) -> bytes:
    """Encode an ``[H, W]`` or ``[H, W, 3|4]`` uint8 (or float in [0, 1]) array as PNG bytes."""
    import imageio.v3 as iio
    import numpy as np

    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return iio.imwrite("<bytes>", arr, extension=".png")


_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
         ".mp4": "video/mp4", ".webm": "video/webm", ".svg": "image/svg+xml"}


def image_data_uri(data: bytes | Any, mime: str = "image/png") -> str:
    """A ``data:`` URI of encoded bytes, or of an image array (encoded as PNG)."""
    if not isinstance(data, (bytes, bytearray)):
        data, mime = png_bytes(data), "image/png"
    return f"data:{mime};base64,{base64.b64encode(bytes(data)).decode('ascii')}"


def image(data: bytes | Any, caption: str = "", *, mime: str = "image/png", width: int | None = None,
          pixelated: bool = False, alt: str = "") -> str:
    """An inline ``<figure>`` with an image (encoded bytes or an array) and an optional caption.

    ``pixelated``: upscale small images without smoothing (label maps); ``width``: display width in px."""
    style = []
    if width:
        style.append(f"width:{int(width)}px")
    if pixelated:
        style.append("image-rendering:pixelated")
    st = f' style="{";".join(style)}"' if style else ""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (f'<figure class="gc-fig"><img src="{image_data_uri(data, mime)}" alt="{escape(alt or caption)}"{st}>'
            f"{cap}</figure>")


def video(mp4: bytes | None, gif: bytes | None = None, caption: str = "", *, width: int | None = None) -> str:
    """An inline looping video: the MP4 (H.264) when the browser plays it, else the GIF fallback."""
    if mp4 is None and gif is None:
        raise ValueError("video needs an MP4 or a GIF")
    st = f' style="width:{int(width)}px"' if width else ""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    gif_img = (f'<img class="gc-video-fallback" src="{image_data_uri(gif, "image/gif")}" alt="{escape(caption)}"'
               f'{st}{" hidden" if mp4 is not None else ""}>') if gif is not None else ""
    vid = ""
    if mp4 is not None:
        vid = (f'<video class="gc-video" autoplay loop muted playsinline controls{st}>'
               f'<source src="{image_data_uri(mp4, "video/mp4")}" type="video/mp4"></video>')
    return f'<figure class="gc-fig gc-video-box">{vid}{gif_img}{cap}</figure>'


def format_value(value: Any, digits: int = 4) -> str:
    """A short display string: floats to ``digits`` significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(format_value(v, digits) for v in value[:8])
        return f"[{inner}{', …' if len(value) > 8 else ''}]"
    if isinstance(value, Mapping):
        return escape(json.dumps(value)[:120])
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, sortable: bool = True,
          sort_by: str | None = None, descending: bool = True, caption: str = "", max_rows: int = 2000,
          table_id: str | None = None) -> str:
    """A table; with ``sortable`` each header click sorts by that column (numbers numerically).

    ``sort_by``: the column sorted initially (``descending`` or not). At most ``max_rows`` rows are shown
    (the caption says how many were left out)."""
    rows = list(rows)
    if sort_by is not None and sort_by in columns:
        j = list(columns).index(sort_by)

        def key(r: Sequence[Any]) -> tuple:
            v = r[j]
            num = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            return (num, v if num else 0)

        rows.sort(key=key, reverse=descending)
    left = len(rows) - max_rows
    rows = rows[:max_rows]
    tid = table_id or _new_id("table")
    head = "".join(
        f'<th{" data-sorted=" + chr(34) + ("desc" if descending else "asc") + chr(34) if c == sort_by else ""}>'
        f"{escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for v in r:
            num = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            attr = f' data-v="{float(v)!r}"' if num else ""
            cells.append(f"<td{attr}>{escape(format_value(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = caption + (f" ({left} more rows not shown)" if left > 0 else "")
    capt = f"<caption>{escape(cap)}</caption>" if cap else ""
    cls = "gc-table gc-sortable" if sortable else "gc-table"
    return (f'<div class="gc-table-box"><table id="{tid}" class="{cls}">{capt}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def slider(frames: Sequence[str], labels: Sequence[str], *, title: str = "", start: int = 0) -> str:
    """Show one of ``frames`` (HTML) at a time, chosen with a range slider; ``labels`` name the frames;
    ``start``: the frame shown first."""
    if not frames:
        raise ValueError("slider needs at least one frame")
    start = min(max(int(start), 0), len(frames) - 1)
    sid = _new_id("slider")
    parts = [f'<div class="gc-slider" id="{sid}">',
             f'<div class="gc-slider-bar"><span>{escape(title)}</span>'
             f'<input type="range" min="0" max="{len(frames) - 1}" value="{start}" step="1" '
             f'aria-label="{escape(title)}"><span class="gc-slider-label">{escape(labels[start])}</span></div>']
    for i, (frame, label) in enumerate(zip(frames, labels, strict=False)):
        parts.append(f'<div class="gc-frame" data-label="{escape(label)}"{"" if i == start else " hidden"}>{frame}</div>')
    parts.append("</div>")
    return "".join(parts)


def details(summary: str, body_html: str, *, open_: bool = False) -> str:
    """A collapsible ``<details>`` block."""
    return f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>{body_html}</details>"


def note(text: str, kind: str = "info") -> str:
    """A short highlighted note (``kind``: info, warn or error)."""
    return f'<p class="gc-note gc-{escape(kind)}">{escape(text)}</p>'


def rounded(values: Any, digits: int = 4) -> list:
    """A numpy-convertible array as nested lists of floats rounded to ``digits`` decimals (compact JSON)."""
    import numpy as np

    arr = np.round(np.asarray(values, dtype=np.float64), digits)
    finite = np.isfinite(arr)
    if finite.all():
        return arr.tolist()
    return np.where(finite, arr, None).tolist()  # NaN / inf -> None (JSON null)


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, Mapping):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if hasattr(x, "tolist"):
        return _nan_to_none(x.tolist())
    return x


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return _nan_to_none(obj.tolist())
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def script_json(obj: Any) -> str:
    """JSON safe to place inside ``<script type="application/json">`` (no ``</``, no NaN)."""
    try:  # fast path: plot data built with `rounded` is already NaN-free
        text = json.dumps(obj, default=_json_default, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_nan_to_none(obj), default=_json_default, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/")


def plot(data: Sequence[Mapping[str, Any]], layout: Mapping[str, Any] | None = None, *,
         views: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
         items: Sequence[Mapping[str, Any]] | None = None, height: int = 420, caption: str = "",
         view: str | None = None) -> str:
    """An interactive plotly plot (rendered in the browser by the inlined plotly.js).

    Args:
        data: plotly traces (dicts), e.g. ``{"type": "scatter", "x": [...], "y": [...]}``.
        layout: plotly layout.
        views: optional named views, each a list (one entry per trace) of ``{"attr.path": value}`` updates;
            the page shows one button per view and applies the chosen one (e.g. colour by certified / clean).
        items: optional alternatives chosen from a drop-down, each ``{"label": str, "data": [...],
            "views": {...}}`` (e.g. one point cloud each); ``data``/``views`` above are then the first item's.
        view: the view shown first (default: the first).
        caption: a line under the plot.
    """
    if items is None:
        items = [{"label": "", "data": list(data), "views": dict(views or {})}]
    pid = _new_id("plot")
    lay = {"margin": {"l": 50, "r": 20, "t": 40, "b": 45}, "height": height, "uirevision": "keep",
           **dict(layout or {})}
    names = list((items[0].get("views") or {}).keys())
    spec = {"items": [dict(it) for it in items], "layout": lay, "view": view or (names[0] if names else None)}
    controls = []
    if len(items) > 1:
        opts = "".join(f'<option value="{i}">{escape(it.get("label", i))}</option>' for i, it in enumerate(items))
        controls.append(f'<label>shown: <select class="gc-plot-item">{opts}</select></label>')
    if names:
        btns = "".join(
            f'<button type="button" class="gc-view-btn" data-view="{escape(n)}"'
            f'{" aria-pressed=" + chr(34) + "true" + chr(34) if n == spec["view"] else ""}>{escape(n)}</button>'
            for n in names)
        controls.append(f'<span class="gc-views">{btns}</span>')
    ctrl = f'<div class="gc-plot-controls">{"".join(controls)}</div>' if controls else ""
    cap = f'<p class="gc-caption">{escape(caption)}</p>' if caption else ""
    return (f'<div class="gc-plot-box" data-plot="{pid}">{ctrl}'
            f'<div class="gc-plot" id="{pid}" style="height:{int(height)}px"></div>'
            f'<script type="application/json" class="gc-plot-spec" data-for="{pid}">{script_json(spec)}</script>'
            f"{cap}</div>")



# colour maps as 9 samples (matplotlib's viridis and magma), interpolated linearly: no matplotlib import
_CMAPS = {
    "viridis": [[68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140], [40, 174, 128],
                [94, 201, 98], [173, 220, 48], [253, 231, 37]],
    "magma": [[0, 0, 4], [29, 17, 71], [81, 18, 124], [131, 38, 129], [183, 55, 121], [231, 82, 99],
              [252, 137, 97], [254, 196, 136], [252, 253, 191]],
}


def heat_image(values: Any, vmax: float, *, cmap: str = "viridis", label: str = "") -> tuple[Any, str]:
    """An ``[H, W]`` map in ``[0, vmax]`` as an RGB uint8 image (colour map ``viridis`` or ``magma``), and an
    HTML colour bar (0 … vmax) to put in its caption."""
    import numpy as np

    stops = np.asarray(_CMAPS[cmap], dtype=np.float64)
    v = np.nan_to_num(np.asarray(values, dtype=np.float64))
    t = np.clip(v / vmax, 0.0, 1.0) if vmax > 0 else np.zeros_like(v)
    pos = np.linspace(0.0, 1.0, len(stops))
    img = np.stack([np.interp(t, pos, stops[:, c]) for c in range(3)], axis=-1)
    img = (img + 0.5).astype(np.uint8)
    grad = ", ".join(f"rgb({r},{g},{b})" for r, g, b in _CMAPS[cmap])
    bar = (f'<span class="gc-caption">0 <span class="gc-colorbar" style="background:linear-gradient(90deg, {grad})">'
           f"</span> {vmax:.4g}{' ' + escape(label) if label else ''}</span>")
    return img, bar


def loss_curve(losses: Sequence[float], *, height: int = 320) -> str:
    """An interactive plot of a training loss per epoch (epochs counted from 1)."""
    return plot([{"type": "scatter", "mode": "lines+markers", "x": list(range(1, len(losses) + 1)),
                  "y": list(losses), "name": "loss"}],
                {"xaxis": {"title": {"text": "epoch"}}, "yaxis": {"title": {"text": "loss"}}}, height=height)
