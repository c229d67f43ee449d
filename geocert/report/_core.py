"""Building ``report.html`` from the files of a run folder: the run, the sections, the core's own sections."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from statistics import NormalDist
from typing import Any

from geocert.errors import InputError
from geocert.report import _blocks as B
from geocert.report._page import PLOTLY_MISSING, assemble, plotly_js

__all__ = ["Run", "Section", "write_report", "build_report", "load_run", "guarantee_sentence",
           "REPORT_NAME", "MAX_PAGE_BYTES"]

REPORT_NAME = "report.html"
MAX_PAGE_BYTES = 20 * 1024 * 1024
"""A page over this size gets a warning (on the page and on stderr); plugins subsample to stay under it."""
_MAX_GALLERY_IMAGES = 24
_MAX_GALLERY_BYTES = 2 * 1024 * 1024


@dataclasses.dataclass
class Section:
    """One section of the page.

    ``body`` is HTML (build it with the helpers of :mod:`geocert.report`: ``image``, ``table``, ``plot``,
    ``slider``, ``video``, ``note``; text must be escaped with ``escape``), or a function returning HTML.
    ``role="guarantee"`` makes the body the page header's one-sentence guarantee instead of a section.
    """

    title: str
    body: str | Callable[[], str]
    """HTML, or a function returning it: then it is called while the page is built, and if it raises only this
    section becomes a "could not render" note (the plugin's other sections still show)."""
    role: str = "section"

    def __post_init__(self) -> None:
        if self.role not in ("section", "guarantee"):
            raise ValueError(f"Section.role must be 'section' or 'guarantee', got {self.role!r}")


@dataclasses.dataclass
class Run:
    """What a report is built from: the files of one run folder, read once.

    ``config`` is config.json (``{}`` when missing), ``metrics`` is metrics.json (``{}`` while a dataset run
    is still in progress), ``results`` the complete records of results.jsonl. File readers take paths
    relative to ``dir`` and mark them as shown, so that the core's gallery leaves them out.
    """

    dir: Path
    config: dict
    metrics: dict
    results: list[dict]
    plugin: str | None
    command: str | None
    notes: list[str] = dataclasses.field(default_factory=list)
    used: set[str] = dataclasses.field(default_factory=set)
    hook: str | None = None
    """The plugin's report hook (``Plugin.report``), when the plugin is installed and has one."""

    @property
    def params(self) -> dict:
        """The command's own parameters (config.json's ``config``)."""
        cfg = self.config.get("config")
        return cfg if isinstance(cfg, dict) else {}

    def path(self, rel: str) -> Path:
        return self.dir / rel

    def exists(self, rel: str) -> bool:
        return (self.dir / rel).is_file()

    def files(self, pattern: str) -> list[str]:
        """Relative paths of the files matching a glob ``pattern`` (sorted; temporary files left out)."""
        return sorted(p.relative_to(self.dir).as_posix() for p in self.dir.glob(pattern)
                      if p.is_file() and not p.name.startswith("."))

    def mark_used(self, rel: str) -> None:
        self.used.add(Path(rel).as_posix())

    def read_bytes(self, rel: str) -> bytes:
        self.mark_used(rel)
        return (self.dir / rel).read_bytes()

    def image(self, rel: str) -> Any:
        """An image file as a numpy array."""
        import imageio.v3 as iio

        self.mark_used(rel)
        return iio.imread(self.dir / rel)

    def npz(self, rel: str) -> dict:
        """The arrays of an ``.npz`` file (no pickles)."""
        import numpy as np

        self.mark_used(rel)
        with np.load(self.dir / rel, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def npy(self, rel: str) -> Any:
        import numpy as np

        self.mark_used(rel)
        return np.load(self.dir / rel, allow_pickle=False)


def _read_json(path: Path, notes: list[str]) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{path.name} could not be read ({type(exc).__name__}: {exc})")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path.name} is not a JSON object")
        return {}
    return data


def _read_results(path: Path, notes: list[str]) -> list[dict]:
    from geocert.io import read_jsonl

    try:
        return [r for r in read_jsonl(path) if isinstance(r, dict)]
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"{path.name} could not be read ({type(exc).__name__}: {exc})")
        return []


def _plugins() -> dict:
    import warnings

    from geocert.plugins import discover

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return discover()
        except Exception as exc:  # e.g. a malformed GEOCERT_PLUGINS: the core sections still show
            print(f"geocert report: warning: plugins not loaded ({type(exc).__name__}: {exc})", file=sys.stderr)
            return {}


def _find_plugin(name: str) -> Any:
    """The installed plugin ``name``: only its own entry point is loaded (the others are not imported);
    through :func:`geocert.plugins.discover` when it is not found that way (GEOCERT_PLUGINS, odd names)."""
    import os

    from geocert.plugins import ENV_VAR, Plugin, _entry_points

    if not os.environ.get(ENV_VAR):
        try:
            for src in _entry_points():
                if src.name == name:
                    obj = src.load()
                    if isinstance(obj, Plugin) and obj.name == name:
                        return obj
        except Exception:  # a broken entry point: discover() below warns and skips it
            pass
    return _plugins().get(name)


def _command_of(config: dict, plugin: Any) -> str | None:
    if isinstance(config.get("command"), str):
        return config["command"]
    cls = config.get("command_config")
    if plugin is not None and isinstance(cls, str):
        for name, cfg in plugin.commands.items():
            if cfg.__name__ == cls:
                return name
    return None


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder. Raises :class:`InputError` when ``run_dir`` is not a folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a folder")
    notes: list[str] = []
    config = _read_json(run_dir / "config.json", notes)
    if not (run_dir / "config.json").is_file():
        notes.append("config.json is missing: the header is incomplete")
    metrics = _read_json(run_dir / "metrics.json", notes)
    results = _read_results(run_dir / "results.jsonl", notes)
    if not (run_dir / "metrics.json").is_file():
        notes.append(f"metrics.json is not written yet (a run in progress?): {len(results)} finished item(s) shown"
                     if results else "metrics.json is missing")
    plugin_name = config.get("plugin") if isinstance(config.get("plugin"), str) else None
    plugin = _find_plugin(plugin_name) if plugin_name else None
    if plugin_name and plugin is None:
        notes.append(f"plugin {plugin_name!r} is not installed: only the core sections are shown")
    return Run(dir=run_dir, config=config, metrics=metrics, results=results, plugin=plugin_name,
               command=_command_of(config, plugin), notes=notes, hook=getattr(plugin, "report", None))


# ---------------------------------------------------------------------------------------------- the guarantee


def guarantee_sentence(metrics: Mapping[str, Any], *, component: str = "component",
                       unit: str | None = None) -> str | None:
    """The certificate's guarantee in one sentence with α, τ, σ and R filled in (HTML), or None when
    ``metrics`` lacks them. ``component``: what is certified (point, pixel); ``unit``: the radius' norm."""
    try:
        alpha, tau, sigma = float(metrics["alpha"]), float(metrics["tau"]), float(metrics["sigma"])
        radius = (float(metrics["radius"]) if metrics.get("radius") is not None
                  else sigma * NormalDist().inv_cdf(tau))  # R = σ·Φ⁻¹(τ), e.g. before metrics.json exists
    except (KeyError, TypeError, ValueError):
        return None
    corr = metrics.get("correction")
    k = metrics.get("k") or 1
    unit = unit or metrics.get("radius_unit") or "ℓ2"
    who = (f"for all but at most k − 1 = {k - 1} of each item's certified {component}s"
           if isinstance(k, int) and k > 1 else f"for every certified {component}")
    how = f" ({corr} correction over each item's {component}s)" if corr else ""
    return (f"With probability at least 1 − α = {1 - alpha:.4g} over the Monte-Carlo noise{how}, {who} the "
            f"smoothed classifier gives its certified class a probability above τ = {tau:g}, so that class is kept "
            f"under every input perturbation of {B.escape(unit)} norm up to R = σ·Φ⁻¹(τ) = {radius:.4g} "
            f"(σ = {sigma:g}); abstained {component}s (white) carry no claim.")


# ---------------------------------------------------------------------------------------------- core sections


def _timings(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    tm = metrics.get("timings")
    if isinstance(tm, Mapping):
        out.update({k: v for k, v in tm.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for k, v in metrics.items():
        if (isinstance(v, (int, float)) and not isinstance(v, bool)
                and (k.endswith("_s") or k.endswith("seconds") or k == "timing_s")):
            out[k] = v
    tm = metrics.get("timing_s")
    if isinstance(tm, Mapping):
        out.update({f"timing_s.{k}": v for k, v in tm.items() if isinstance(v, (int, float))})
    return out


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    return '<dl class="gc-kv">' + "".join(
        f"<dt>{B.escape(k)}</dt><dd>{B.escape(B.format_value(v))}</dd>" for k, v in pairs) + "</dl>"


def _header_section(run: Run, guarantee: str | None) -> str:
    c = run.config
    parts = []
    if guarantee:
        parts.append(f'<p class="gc-guarantee">{guarantee}</p>')
    parts.extend(B.note(n, "warn") for n in run.notes)
    pairs = [("command", f"geocert {run.command}" if run.command else c.get("command_config", "?")),
             ("plugin", f"{run.plugin or '?'} {c.get('plugin_version') or ''}".strip()),
             ("geocert", c.get("geocert_version")), ("seed", c.get("seed"))]
    pairs += [(k, c[k]) for k in ("python", "torch_version") if k in c]
    pairs.append(("output folder", str(run.dir)))
    parts.append(_kv(pairs))
    tm = _timings(run.metrics)
    if tm:
        parts.append("<h3>Timings (seconds)</h3>" + _kv(sorted(tm.items())))
    cfg_text = json.dumps(run.params, indent=2, default=str)
    extra = {k: v for k, v in c.items() if k not in ("config",)}
    parts.append(B.details("config (the command's parameters)", f'<pre class="gc-json">{B.escape(cfg_text)}</pre>',
                           open_=False))
    parts.append(B.details("config.json (everything else: versions, data, model)",
                           f'<pre class="gc-json">{B.escape(json.dumps(extra, indent=2, default=str))}</pre>'))
    return "".join(parts)


def _flatten(obj: Any, prefix: str = "", depth: int = 0) -> Iterable[tuple[str, Any]]:
    if isinstance(obj, Mapping) and depth < 4:
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
    elif isinstance(obj, (str, int, float, bool)) or obj is None:
        yield prefix, obj


def _metrics_section(run: Run) -> str:
    if not run.metrics:
        return B.note("no metrics.json yet")
    rows = [(k, v) for k, v in _flatten(run.metrics) if not isinstance(v, str) or len(v) < 200]
    table = B.table(["metric", "value"], rows, sortable=False, max_rows=300,
                    caption="scalars of metrics.json (lists and long curves are in the full file below)")
    full = json.dumps(run.metrics, indent=2, default=str)
    if len(full) > 400_000:
        full = full[:400_000] + "\n… (cut; the full file is metrics.json)"
    return table + B.details("metrics.json", f'<pre class="gc-json">{B.escape(full)}</pre>')


def _results_section(run: Run) -> str:
    cols: list[str] = []
    for r in run.results:
        for k, v in r.items():
            if k not in cols and (isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) < 60)):
                cols.append(k)
    rows = [[r.get(k) if not isinstance(r.get(k), (dict, list)) else None for k in cols] for r in run.results]
    return B.table(cols, rows, caption=f"{len(rows)} finished item(s) in results.jsonl; click a header to sort")


def _gallery_section(run: Run) -> str | None:
    files = [f for f in run.files("**/*") if f.lower().endswith((".png", ".gif", ".jpg", ".jpeg"))]
    files = [f for f in files if f not in run.used]
    if not files:
        return None
    shown, skipped = [], 0
    for f in files:
        size = run.path(f).stat().st_size
        if len(shown) >= _MAX_GALLERY_IMAGES or size > _MAX_GALLERY_BYTES:
            skipped += 1
            continue
        mime = B._MIME.get(Path(f).suffix.lower(), "image/png")
        shown.append(B.image(run.read_bytes(f), f, mime=mime))
    out = '<div class="gc-row">' + "".join(shown) + "</div>"
    if skipped:
        out += B.note(f"{skipped} more image(s) not inlined (more than {_MAX_GALLERY_IMAGES}, or over "
                      f"{_MAX_GALLERY_BYTES // 1024 // 1024} MB each): open them from the folder", "info")
    return out


def _reason(title: str, exc: BaseException) -> str:
    """``could not render: <reason>`` for a failed section, also warned about on stderr."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
    print(f"geocert report: warning: section {title!r} could not render: {reason}", file=sys.stderr)
    return f"could not render: {reason}"


def _failed(title: str, exc: BaseException) -> str:
    return B.note(_reason(title, exc), "error")


def _hook(run: Run) -> Callable[[Run], Any] | None:
    if not run.hook:
        return None
    from geocert.plugins import _load_value

    return _load_value(run.hook)


def build_report(run_dir: str | Path) -> str:
    """The HTML of ``run_dir``'s report (nothing written). A failing section becomes a visible note."""
    t0 = time.perf_counter()
    run = load_run(run_dir)
    plugin_sections: list[tuple[str, str]] = []
    guarantee: str | None = None
    try:
        hook = _hook(run)
        produced = list(hook(run) or []) if hook is not None else []
    except Exception as exc:
        plugin_sections.append((f"{run.plugin} sections", _failed(f"{run.plugin} sections", exc)))
        produced = []
        if os.environ.get("GEOCERT_REPORT_DEBUG"):  # plugin authors: the full traceback of their hook
            traceback.print_exc()
    for s in produced:
        if isinstance(s, Section):
            try:
                body = s.body() if callable(s.body) else s.body
                if not isinstance(body, str):
                    raise TypeError(f"the section's body is a {type(body).__name__}, not HTML text")
            except Exception as exc:
                if s.role == "guarantee":  # shown among the header's notes
                    run.notes.append(f"the guarantee {_reason('guarantee', exc)}")
                    continue
                body = _failed(str(s.title), exc)
            if s.role == "guarantee":
                guarantee = body
            else:
                plugin_sections.append((str(s.title), body))
        else:
            plugin_sections.append(("(bad section)", _failed("(bad section)", TypeError(
                f"the report hook returned a {type(s).__name__}, not a geocert.report.Section"))))
    if guarantee is None:
        guarantee = guarantee_sentence(run.metrics)

    sections: list[tuple[str, str]] = []

    def add(title: str, build: Callable[[], str | None]) -> None:
        try:
            body = build()
        except Exception as exc:
            body = _failed(title, exc)
        if body is not None:
            sections.append((title, body))

    add("Run", lambda: _header_section(run, guarantee))
    sections.extend(plugin_sections)
    if run.results and "results.jsonl" not in run.used:
        add("Per-item results", lambda: _results_section(run))
    add("Metrics", lambda: _metrics_section(run))
    add("Other figures", lambda: _gallery_section(run))

    has_plot = any("gc-plot-spec" in b for _, b in sections)
    if has_plot and plotly_js() is None:
        sections.insert(1, ("Note", B.note(PLOTLY_MISSING, "warn")))
    anchors = []
    for i, (title, body) in enumerate(sections):
        slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-") or "section"
        anchors.append((f"s{i}-{slug}", title, body))
    title = f"geocert {run.command or run.config.get('command_config') or 'run'} — {run.dir.name}"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"report built {when} from the files in {run.dir}"
    build_s = time.perf_counter() - t0
    footer = (f"Built by geocert.report in {build_s:.2f} s from config.json, metrics.json, results.jsonl and the "
              f"artefacts of this folder; rebuild with <code>geocert report {B.escape(run.dir)}</code>. "
              "Everything is inline: the page needs no network.")
    page = assemble(title, subtitle, anchors, footer, with_plotly=has_plot)
    size = len(page.encode("utf-8"))
    if size > MAX_PAGE_BYTES:
        msg = f"the page is {size / 1e6:.1f} MB, over the {MAX_PAGE_BYTES / 1e6:.0f} MB cap"
        print(f"geocert report: warning: {msg}", file=sys.stderr)
        page = page.replace("<main>", f"<main>{B.note(msg, 'warn')}", 1)
    return page


def write_report(run_dir: str | Path) -> Path:
    """Build ``run_dir/report.html`` from the files in ``run_dir`` and write it atomically.

    Call it after a command has written metrics.json (the run layer does), or at any time on an old run or
    a dataset run in progress (``geocert report DIR``). Odd content never raises: a section that fails is
    shown as a "could not render" note and warned about on stderr. Raises :class:`InputError` only when
    ``run_dir`` is not a folder.
    """
    from geocert.io import atomic_write

    run_dir = Path(run_dir)
    page = build_report(run_dir)
    target = run_dir / REPORT_NAME
    with atomic_write(target, "w", encoding="utf-8") as fh:
        fh.write(page)
    return target
