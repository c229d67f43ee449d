"""The page shell of ``report.html``: style, the small script that drives plots, tables, sliders and videos,
and the inlined plotly.js (once per page, only when the page has a plot)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from geocert.report._blocks import escape

__all__ = ["assemble", "plotly_js", "PLOTLY_MISSING"]

PLOTLY_MISSING = "plotly is not installed (pip install plotly): interactive plots are left out"

_CSS = """
:root { --fg:#1d232a; --muted:#5b6570; --line:#d9dee3; --accent:#1f77b4; --bg:#fff; --soft:#f5f7f9; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
header.gc-head { background: #16202b; color: #f2f5f8; padding: 18px 28px 14px; }
header.gc-head h1 { margin: 0 0 4px; font-size: 22px; }
header.gc-head .gc-sub { color: #b9c4cf; font-size: 13px; }
nav.gc-toc { padding: 8px 28px; background: var(--soft); border-bottom: 1px solid var(--line); font-size: 13px; }
nav.gc-toc a { margin-right: 14px; color: var(--accent); text-decoration: none; }
main { padding: 6px 28px 30px; max-width: 1400px; }
section.gc-section { border-bottom: 1px solid var(--line); padding: 10px 0 18px; }
section.gc-section h2 { font-size: 18px; margin: 12px 0 8px; }
.gc-guarantee { background: #eef6ee; border-left: 4px solid #2ca02c; padding: 8px 12px; margin: 8px 0; }
.gc-kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 14px; }
.gc-kv dt { color: var(--muted); } .gc-kv dd { margin: 0; font-family: ui-monospace, monospace; }
.gc-note { padding: 6px 10px; border-radius: 4px; background: var(--soft); font-size: 13px; }
.gc-warn { background: #fff6e0; } .gc-error { background: #fde8e8; color: #8a1c1c; }
.gc-row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure.gc-fig { margin: 4px 0; display: inline-block; vertical-align: top; }
figure.gc-fig img, figure.gc-fig video { max-width: 100%; border: 1px solid var(--line); background: #fff; }
figcaption, .gc-caption { font-size: 12px; color: var(--muted); margin-top: 2px; }
.gc-table-box { overflow-x: auto; max-height: 520px; overflow-y: auto; margin: 6px 0; }
table.gc-table { border-collapse: collapse; font-size: 13px; }
table.gc-table th, table.gc-table td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: right; }
table.gc-table th:first-child, table.gc-table td:first-child { text-align: left; }
table.gc-table caption { text-align: left; font-size: 12px; color: var(--muted); padding: 2px 0; }
table.gc-sortable th { cursor: pointer; user-select: none; background: var(--soft); position: sticky; top: 0; }
table.gc-sortable th[data-sorted="asc"]::after { content: " ▲"; }
table.gc-sortable th[data-sorted="desc"]::after { content: " ▼"; }
.gc-slider-bar { display: flex; gap: 10px; align-items: center; margin: 6px 0; font-size: 13px; }
.gc-slider-bar input[type=range] { width: min(420px, 60vw); }
.gc-plot-controls { display: flex; gap: 14px; align-items: center; font-size: 13px; margin: 4px 0; }
.gc-views button { margin-right: 4px; padding: 3px 10px; border: 1px solid var(--line); background: #fff;
                   border-radius: 3px; cursor: pointer; }
.gc-views button[aria-pressed="true"] { background: var(--accent); color: #fff; border-color: var(--accent); }
.gc-colorbar { display: inline-block; width: 180px; height: 12px; border: 1px solid var(--line); vertical-align: middle; }
pre.gc-json { background: var(--soft); padding: 8px; font-size: 12px; max-height: 420px; overflow: auto; }
footer.gc-foot { padding: 10px 28px 24px; font-size: 12px; color: var(--muted); }
"""

_JS = r"""
(function () {
  "use strict";
  const plots = {};
  function setPath(obj, path, value) {
    const keys = path.split(".");
    let o = obj;
    for (let i = 0; i < keys.length - 1; i++) {
      if (typeof o[keys[i]] !== "object" || o[keys[i]] === null) o[keys[i]] = {};
      o = o[keys[i]];
    }
    o[keys[keys.length - 1]] = value;
  }
  function tracesOf(p) {
    const item = p.spec.items[p.item];
    const data = JSON.parse(JSON.stringify(item.data));
    const upd = p.view && item.views ? item.views[p.view] : null;
    if (upd) upd.forEach(function (u, i) { if (u && data[i]) for (const k in u) setPath(data[i], k, u[k]); });
    return data;
  }
  function draw(p) {
    return Plotly.react(p.div, tracesOf(p), p.spec.layout, {responsive: true, displaylogo: false});
  }
  function visible(el) { return !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length); }
  function renderVisible() {
    const pending = [];
    for (const id in plots) {
      const p = plots[id];
      if (!visible(p.div)) continue;
      if (!p.drawn) { p.drawn = true; pending.push(draw(p)); }
      else pending.push(Plotly.Plots.resize(p.div));
    }
    return Promise.all(pending);
  }
  function setupPlots() {
    document.querySelectorAll("script.gc-plot-spec").forEach(function (s) {
      const id = s.dataset.for, div = document.getElementById(id);
      const spec = JSON.parse(s.textContent);
      const p = {div: div, spec: spec, item: 0, view: spec.view, drawn: false};
      plots[id] = p;
      const box = div.closest(".gc-plot-box");
      const sel = box.querySelector("select.gc-plot-item");
      if (sel) sel.addEventListener("change", function () { p.item = +sel.value; draw(p); });
      box.querySelectorAll("button.gc-view-btn").forEach(function (b) {
        b.addEventListener("click", function () {
          p.view = b.dataset.view;
          box.querySelectorAll("button.gc-view-btn").forEach(function (o) {
            o.setAttribute("aria-pressed", o === b ? "true" : "false");
          });
          draw(p);
        });
      });
    });
  }
  function setupTables() {
    document.querySelectorAll("table.gc-sortable").forEach(function (t) {
      t.querySelectorAll("th").forEach(function (th, j) {
        th.addEventListener("click", function () {
          const asc = th.dataset.sorted !== "asc";
          t.querySelectorAll("th").forEach(function (o) { delete o.dataset.sorted; });
          th.dataset.sorted = asc ? "asc" : "desc";
          const body = t.tBodies[0], rows = Array.from(body.rows);
          rows.sort(function (a, b) {
            const x = a.cells[j], y = b.cells[j];
            const vx = x && x.dataset.v !== undefined ? +x.dataset.v : null;
            const vy = y && y.dataset.v !== undefined ? +y.dataset.v : null;
            let c;
            if (vx !== null && vy !== null) c = vx - vy;
            else if (vx !== null) c = -1;
            else if (vy !== null) c = 1;
            else c = (x ? x.textContent : "").localeCompare(y ? y.textContent : "");
            return asc ? c : -c;
          });
          rows.forEach(function (r) { body.appendChild(r); });
        });
      });
    });
  }
  function setupSliders() {
    document.querySelectorAll(".gc-slider").forEach(function (s) {
      const input = s.querySelector("input[type=range]"), label = s.querySelector(".gc-slider-label");
      const frames = Array.from(s.children).filter(function (c) { return c.classList.contains("gc-frame"); });
      input.addEventListener("input", function () {
        const i = +input.value;
        frames.forEach(function (f, k) { f.hidden = k !== i; });
        label.textContent = frames[i].dataset.label;
        if (window.Plotly) renderVisible();
      });
    });
  }
  function setupVideos() {
    document.querySelectorAll("video.gc-video").forEach(function (v) {
      const fb = v.parentElement.querySelector(".gc-video-fallback");
      function fallback() { if (fb) { v.hidden = true; fb.hidden = false; } }
      if (!v.canPlayType('video/mp4; codecs="avc1.42E01E"')) fallback();
      const src = v.querySelector("source");
      if (src) src.addEventListener("error", fallback);
      v.addEventListener("error", fallback);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    setupTables();
    setupSliders();
    setupVideos();
    const done = function () { document.body.dataset.gcReady = "1"; };
    if (window.Plotly) {
      setupPlots();
      renderVisible().then(done, function (e) { console.error("geocert report: " + e); done(); });
    } else {
      done();
    }
  });
})();
"""


@functools.lru_cache(maxsize=1)
def plotly_js() -> str | None:
    """plotly.js as shipped inside the plotly wheel (``plotly/package_data/plotly.min.js``), or None."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        return None
    return re.sub(r"</(script)", r"<\\/\1", path.read_text(encoding="utf-8"), flags=re.IGNORECASE)


def assemble(title: str, subtitle: str, sections: list[tuple[str, str, str]], footer: str,
             *, with_plotly: bool) -> str:
    """The whole page. ``sections``: (anchor id, title, body HTML)."""
    toc = "".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t, _ in sections)
    body = "".join(
        f'<section class="gc-section" id="{escape(a)}" data-section="{escape(t)}"><h2>{escape(t)}</h2>{b}</section>'
        for a, t, b in sections)
    js_lib = plotly_js() if with_plotly else None
    lib = f"<script>{js_lib}</script>" if js_lib else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style>{lib}<script>{_JS}</script></head>"
        f'<body><header class="gc-head"><h1>{escape(title)}</h1><div class="gc-sub">{escape(subtitle)}</div></header>'
        f'<nav class="gc-toc">{toc}</nav><main>{body}</main><footer class="gc-foot">{footer}</footer></body></html>\n'
    )
