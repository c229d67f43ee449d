"""Every discovered plugin is tested without anyone remembering to: each declares smoke runs (tiny configs
on a bundled scene) that must exit 0 and write config.json and metrics.json into their output folder."""

import json
import warnings

import pytest

from geocert.plugins import discover

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    PLUGINS = discover()

IN_REPO = ("rs-sdf", "pointcloud", "connected2d", "imageseg")
RUNS = [(p.name, cmd, args) for p in PLUGINS.values() for cmd, args in p.smoke.items()]


def test_in_repo_plugins_are_discovered_with_smoke_runs():
    for name in IN_REPO:
        assert name in PLUGINS, f"plugin {name} is not discovered"
        assert PLUGINS[name].smoke, f"plugin {name} declares no smoke runs"


@pytest.mark.parametrize("plugin,command,args", RUNS, ids=[f"{p}:{c}" for p, c, _ in RUNS])
def test_smoke_run_writes_config_and_metrics(plugin, command, args, smoke_run):
    r, out, base = smoke_run(command, args)  # shared with the report browser tests (one run per session)
    assert r.returncode == 0, f"{command} failed:\n{r.stderr[-3000:]}"
    config = json.loads((out / "config.json").read_text())
    assert config["geocert_version"] and config["config"]
    assert config["plugin"] == plugin and config["command"] == command  # identity from the run layer
    metrics = json.loads((out / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    assert [p.name for p in base.iterdir() if p.name.startswith(".")] == [], "staging folder left behind"
    assert (out / "report.html").stat().st_size > 0
