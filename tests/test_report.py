"""geocert.report without a browser: pages built from synthetic run folders (fast, no torch), odd content,
plugin hooks that fail, runs in progress, the page cap and ``geocert report DIR``."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import numpy as np
import pytest

from geocert import report as R
from geocert.cli import main
from geocert.errors import InputError
from geocert.plugins import Plugin, PluginError, _load_value, discover
from geocert.report._page import plotly_js


def _config(plugin="pointcloud", command="certify-pc", cls="CertifyPcConfig", **params):
    return {"command": command, "command_config": cls, "plugin": plugin, "plugin_version": "9.9",
            "seed": 7, "geocert_version": "0.1.0", "python": "3.x", "config": {"sigma": 0.25, **params}}


def _pc_metrics(radius=0.0633):
    curve = [{"tau": t, "correction": c, "k": 1, "radius": 0.25 * t, "certified_accuracy": a,
              "certified_fraction": a + 0.01}
             for t, a0 in ((0.55, 0.6), (0.75, 0.4)) for c, a in (("none", a0), ("bonferroni", a0 - .1),
                                                                   ("holm", a0 - .05))]
    return {"alpha": 0.1, "tau": 0.6, "sigma": 0.25, "radius": radius, "correction": "holm", "k": 1, "n": 40,
            "radius_unit": "l2 (unit sphere)", "mode": "xyz", "certified_accuracy": 0.5,
            "timings": {"sampling_s": 1.5, "total_s": 2.0}, "curve": curve,
            "kfwer": [{"k": k, "tau": 0.6, "certified_accuracy": 0.3 + k / 1000, "certified_fraction": 0.4}
                      for k in (1, 5, 20)],
            "cohen_radius_curve": {"radius": [0.0, 0.05, 0.1], "certified_accuracy": [0.6, 0.5, 0.1]}}


def _write_run(tmp_path, *, shapes=(("02691156/a", 5000, 0.2), ("02691156/b", 300, 0.7), ("03642806/c", 300, 0.4)),
               metrics=None, config=None):
    run = tmp_path / "run"
    (run / "shapes").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config or _config()))
    if metrics is not False:
        (run / "metrics.json").write_text(json.dumps(metrics or _pc_metrics()))
    rng = np.random.default_rng(0)
    lines = []
    for name, npts, acc in shapes:
        lab = rng.integers(0, 4, npts)
        cert = np.where(rng.random(npts) < 0.5, lab, -1)
        np.savez(run / "shapes" / (name.replace("/", "_") + ".npz"), points=rng.normal(size=(npts, 3)), target=lab,
                 certified=cert, smoothed=lab, clean=lab, top_counts=rng.integers(0, 40, npts),
                 point_radius=np.where(cert >= 0, 0.1, 0.0))
        lines.append(json.dumps({"name": name, "category": "X", "certified_accuracy": acc, "abstain_rate": 0.5,
                                 "num_points": npts}))
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _specs(html: str) -> list[dict]:
    return [json.loads(s.replace("<\\/", "</")) for s in
            re.findall(r'<script type="application/json" class="gc-plot-spec" data-for="[^"]+">(.*?)</script>', html)]


def test_pointcloud_page_from_run_files(tmp_path):
    run = _write_run(tmp_path)
    out = R.write_report(run)
    assert out == run / "report.html"
    assert not list(run.glob(".*.tmp")), "temporary file left behind"
    html = out.read_text(encoding="utf-8")
    # header: command, versions, seed, timings and the guarantee with α, τ, σ and R filled in
    assert "geocert certify-pc" in html and "9.9" in html and "<dd>7</dd>" in html and "sampling_s" in html
    g = re.search(r'<p class="gc-guarantee">(.*?)</p>', html).group(1)
    assert "1 − α = 0.9" in g and "τ = 0.6" in g and "σ = 0.25" in g and "R = σ·Φ⁻¹(τ) = 0.0633" in g
    for title in ("Run", "Certified clouds (3D)", "Certified accuracy", "Per shape", "Metrics"):
        assert f'data-section="{title}"' in html
    # self-contained: plotly.js inline exactly once, nothing fetched
    assert html.count(plotly_js()[:300]) == 1
    ours = html.replace(plotly_js(), "")  # (plotly.js holds link texts; the browser test watches requests)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours)
    specs = _specs(html)
    clouds = [s for s in specs if s["items"][0]["data"] and s["items"][0]["data"][0]["type"] == "scatter3d"]
    assert len(clouds) == 1 and len(clouds[0]["items"]) == 3
    sizes = [len(it["data"][0]["x"]) for it in clouds[0]["items"]]
    assert sizes == [2048, 300, 300]  # the 5000-point cloud is subsampled for display ...
    assert "subsampled to 2048 points" in html  # ... and the page says so
    views = clouds[0]["items"][1]["views"]
    assert list(views) == ["certified", "smoothed", "clean", "ground truth"]
    cert = views["certified"][0]["marker.color"]
    assert min(cert) == -1 and views["certified"][0]["text"][cert.index(-1)] == "abstain"
    # the per-shape table starts sorted by certified accuracy, best first
    table = html[html.index('data-section="Per shape"'):]
    order = re.findall(r"<tr><td>(0\d+/\w)</td>", table)
    assert order == ["02691156/b", "03642806/c", "02691156/a"]
    # the static plots are replaced by the interactive ones, not repeated
    assert sum(1 for s in specs if s["items"][0]["data"][0]["type"] == "scatter") == 3


def test_a_failing_section_is_a_visible_note_and_a_warning(tmp_path, capsys):
    run = _write_run(tmp_path)
    np.savez(run / "shapes" / "02691156_a.npz", wrong=np.zeros(3))  # odd content: no points
    (run / "metrics.json").write_text(json.dumps({**_pc_metrics(), "curve": "not a list", "kfwer": [3, None]}))
    html = R.write_report(run).read_text(encoding="utf-8")
    clouds = html[html.index('data-section="Certified clouds (3D)"'):html.index('data-section="Certified accuracy"')]
    assert "could not render: ValueError" in clouds  # only this section fails; the others still show
    for title in ("Certified accuracy", "Per shape", "Metrics"):
        assert f'data-section="{title}"' in html
    assert html.count("could not render") == 1
    err = capsys.readouterr().err
    assert "geocert report: warning: section" in err and "could not render" in err


def test_in_progress_run_and_malformed_files(tmp_path):
    run = _write_run(tmp_path, metrics=False)
    html = R.build_report(run)
    assert "metrics.json is not written yet (a run in progress?): 3 finished item(s) shown" in html
    assert 'data-section="Per shape"' in html
    (run / "metrics.json").write_text("{not json")
    (run / "results.jsonl").write_text('{"name": "02691156/a", "certified_accuracy": 0.5}\n{"name": "trunc')
    html = R.build_report(run)
    assert "metrics.json could not be read (JSONDecodeError" in html
    assert html.count("<tr><td>02691156/a</td>") == 1  # the truncated last line of results.jsonl is dropped


def test_bare_folder_and_unknown_plugin(tmp_path):
    (tmp_path / "a.png").write_bytes(R.png_bytes(np.full((4, 5, 3), 200, np.uint8)))
    html = R.build_report(tmp_path)
    assert "config.json is missing" in html and "metrics.json is missing" in html
    assert 'alt="a.png"' in html and "data:image/png;base64," in html  # the gallery inlines leftover figures
    assert plotly_js()[:300] not in html  # no plot, no 4 MB library
    (tmp_path / "config.json").write_text(json.dumps(_config(plugin="not-installed")))
    assert "plugin &#x27;not-installed&#x27; is not installed" in R.build_report(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        R.write_report(tmp_path / "missing")


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch):
    """A third-party plugin ``fake-rep`` with a report hook whose behaviour the test sets."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "fakerep.py").write_text(textwrap.dedent('''
        import dataclasses
        from geocert.plugins import Plugin
        from geocert.report import Section, table

        MODE = {"mode": "ok"}

        @dataclasses.dataclass(frozen=True)
        class ThingConfig:
            """Certify a thing."""
            def main(self):
                return 0

        def sections(run):
            if MODE["mode"] == "raise":
                raise RuntimeError("boom")
            if MODE["mode"] == "junk":
                return ["not a section", Section("guarantee", lambda: 1 / 0, role="guarantee")]
            return [Section("Things", table(["thing", "<b>score</b>"], [["a", 0.5], ["b", 0.25]])),
                    Section("guarantee", "a custom guarantee", role="guarantee")]

        PLUGIN = Plugin(name="fake-rep", description="d", commands={"certify-thing": ThingConfig},
                        report="fakerep:sections")
    '''))
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setenv("GEOCERT_PLUGINS", "fake-rep=fakerep:PLUGIN")
    run = tmp_path / "run"
    run.mkdir()
    cfg = _config(plugin="fake-rep", command=None, cls="ThingConfig")
    del cfg["command"]
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "metrics.json").write_text(json.dumps({"score": 1.0}))
    yield run, sys.modules.get("fakerep") or _load_value("fakerep:MODE")
    sys.modules.pop("fakerep", None)


def test_third_party_hook(fake_plugin, capsys):
    run, _ = fake_plugin
    html = R.build_report(run)
    assert "geocert certify-thing" in html  # the command found from config.json's class name
    assert 'data-section="Things"' in html and "&lt;b&gt;score&lt;/b&gt;" in html  # escaped
    assert '<p class="gc-guarantee">a custom guarantee</p>' in html
    mode = _load_value("fakerep:MODE")
    mode["mode"] = "raise"
    html = R.build_report(run)
    assert "could not render: RuntimeError: boom" in html and 'data-section="Metrics"' in html
    mode["mode"] = "junk"
    html = R.build_report(run)
    assert "could not render: TypeError: the report hook returned a str" in html
    assert "the guarantee could not render: ZeroDivisionError" in html
    assert capsys.readouterr().err.count("geocert report: warning:") == 3


def test_page_over_the_cap_says_so(tmp_path, monkeypatch, capsys):
    import geocert.report._core as core

    run = _write_run(tmp_path)
    monkeypatch.setattr(core, "MAX_PAGE_BYTES", 1000)
    html = R.build_report(run)
    assert re.search(r"the page is \d+\.\d MB, over the 0 MB cap", html)
    assert "over the" in capsys.readouterr().err


def test_guarantee_sentence_fills_in_k_and_needs_the_numbers():
    m = {"alpha": 0.001, "tau": 0.75, "sigma": 0.5, "radius": 0.337, "correction": "holm", "k": 5}
    s = R.guarantee_sentence(m, component="pixel", unit="ℓ2")
    assert "1 − α = 0.999" in s and "for all but at most k − 1 = 4 of each item's certified pixels" in s
    assert "R = σ·Φ⁻¹(τ) = 0.337" in s and "σ = 0.5" in s
    assert R.guarantee_sentence({"alpha": 0.1}) is None


def test_blocks_escape_and_sort():
    t = R.table(["name", "v"], [["<x>", 1.0], ["y", None], ["z", 3.0]], sort_by="v")
    assert "&lt;x&gt;" in t and t.index("<td>z</td>") < t.index("&lt;x&gt;") < t.index("<td>y</td>")
    s = R.slider(["<p>a</p>", "<p>b</p>"], ["A", "B"], title="t")
    assert s.count('class="gc-frame"') == 2 and s.count(" hidden>") == 1
    p = R.plot([{"type": "scatter", "x": [1], "y": [float("nan")], "name": "</script>"}])
    assert "</script>" not in p.split('class="gc-plot-spec"')[1].split("</script>")[0] + "x"
    assert _specs(p)[0]["items"][0]["data"][0]["name"] == "</script>"
    with pytest.raises(ValueError):
        R.video(None, None)


def test_plugin_report_hooks(tmp_path):
    with pytest.raises(PluginError, match="module:function"):
        Plugin(name="x", description="d", report="no-colon-here")
    plugins = discover()
    for name in ("pointcloud", "imageseg", "rs-sdf", "connected2d"):
        assert callable(_load_value(plugins[name].report)), name


def test_cli_report_command(tmp_path, capsys):
    run = _write_run(tmp_path)
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file() and str(run / "report.html") in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geocert report: error:") and "not a folder" in err[0]


def test_broken_plugin_registry_still_gives_a_page(tmp_path, monkeypatch, capsys):
    run = _write_run(tmp_path)
    monkeypatch.setenv("GEOCERT_PLUGINS", "not-a-spec")
    html = R.build_report(run)
    assert 'data-section="Metrics"' in html and "plugin &#x27;pointcloud&#x27; is not installed" in html
    assert "plugins not loaded (PluginError" in capsys.readouterr().err


def test_rs_sdf_mesh_reader_and_decimation(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from geocert_rs_sdf import report as sdf_report

    from geocert.io import write_ply

    sphere = trimesh.creation.icosphere(subdivisions=5)  # 20,480 triangles
    write_ply(tmp_path / "mesh.ply", sphere.vertices, faces=sphere.faces)
    verts, faces = sdf_report._read_ply_triangles(tmp_path / "mesh.ply")
    np.testing.assert_allclose(verts, sphere.vertices, atol=1e-6)  # float32 on disk
    np.testing.assert_array_equal(faces, sphere.faces)
    v, f = sdf_report._decimate(verts, faces, 2000)
    assert 0 < len(f) <= 2000 and f.max() < len(v)
    assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))
    r = np.linalg.norm(v, axis=1)
    assert r.max() <= 1 + 1e-6 and r.min() > 0.9  # still the unit sphere, seen from afar (float32 on disk)
    m = trimesh.Trimesh(v, f, process=False)
    assert m.volume > 0.9 * sphere.volume  # the winding stays outward
    (tmp_path / "ascii.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    assert sdf_report._read_ply_triangles(tmp_path / "ascii.ply") is None  # other layouts: trimesh reads them
