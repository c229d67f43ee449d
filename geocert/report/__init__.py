"""One self-contained ``report.html`` per run, built only from the files of the run folder.

``write_report(run_dir)`` reads ``config.json``, ``metrics.json``, ``results.jsonl`` and the artefacts of a
run folder and writes ``run_dir/report.html`` atomically: a header (command, config, versions, seed, timings,
the guarantee in one sentence), the plugin's own sections, the metrics, and any figure not shown yet. Every
script, style, image and video is inline (plotly.js from the plotly wheel, once per page), so the page
opens from disk with no network and no server. ``geocert report DIR`` rebuilds it for old runs and for
dataset runs in progress.

A plugin adds sections through ``Plugin(report="my_plugin.report:sections")``: a function
``sections(run: Run) -> list[Section]`` that builds HTML with the helpers below. A section that raises is
shown as a "could not render: reason" note (and a warning on stderr); the page is still written.
"""

from geocert.report import _blocks
from geocert.report._blocks import *  # noqa: F403  (the page-building helpers)
from geocert.report._certify import certification_plots
from geocert.report._core import (
    MAX_PAGE_BYTES,
    REPORT_NAME,
    Run,
    Section,
    build_report,
    guarantee_sentence,
    load_run,
    write_report,
)

__all__ = [
    "write_report",
    "build_report",
    "load_run",
    "Run",
    "Section",
    "guarantee_sentence",
    "certification_plots",
    "REPORT_NAME",
    "MAX_PAGE_BYTES",
    *_blocks.__all__,
]
