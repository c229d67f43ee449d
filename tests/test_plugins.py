"""Plugin discovery with fake entry points, and the CLI built from them."""

import dataclasses
import subprocess
import sys
import time

import pytest

from geocert import API_VERSION
from geocert.plugins import Plugin, PluginError, discover


@dataclasses.dataclass(frozen=True)
class HelloConfig:
    """Say hello."""

    name: str = "world"
    """Who to greet."""

    def main(self):
        print(f"hello {self.name}")


@dataclasses.dataclass(frozen=True)
class FailConfig:
    """Fail with a user error."""

    def main(self):
        from geocert.errors import ParameterError

        raise ParameterError("sigma must be > 0, got -1.0")


GOOD = Plugin(name="hello", description="greets", commands={"hello": HelloConfig})
FAILING = Plugin(name="failing", description="fails", commands={"fail-now": FailConfig})


@dataclasses.dataclass
class FakeEP:
    name: str
    obj: object

    def load(self):
        if isinstance(self.obj, Exception):
            raise self.obj
        return self.obj


def test_good_plugin_is_found():
    assert discover(strict=True, sources=[FakeEP("hello", GOOD)]) == {"hello": GOOD}


@pytest.mark.parametrize("sources,match", [
    ([FakeEP("hello", object())], "not a geocert.plugins.Plugin"),
    ([FakeEP("hello", GOOD), FakeEP("hello", GOOD)], "duplicate plugin name"),
    ([FakeEP("hello", GOOD), FakeEP("other", Plugin(name="other", description="", commands={"hello": HelloConfig}))],
     "already provided"),
    ([FakeEP("boom", ImportError("no module named torchx"))], "failed to import"),
    ([FakeEP("hello", dataclasses.replace(GOOD, api_version=API_VERSION + 1))], "plugin API"),
    ([FakeEP("other-name", GOOD)], "exposes a plugin named"),
    ([FakeEP("hello", Plugin(name="hello", description="", commands={"plugins": HelloConfig}))], "already provided"),
])
def test_broken_plugins_raise_when_strict_and_are_skipped_otherwise(sources, match):
    with pytest.raises(PluginError, match=match):
        discover(strict=True, sources=sources)
    with pytest.warns(RuntimeWarning, match=match):
        found = discover(strict=False, sources=sources)
    assert len(found) <= 1  # only the first of a duplicate pair survives


def test_plugin_contract_is_checked_at_construction():
    with pytest.raises(PluginError, match="kebab-case"):
        Plugin(name="Bad_Name", description="")
    with pytest.raises(PluginError, match="dataclass"):
        Plugin(name="x", description="", commands={"run": dict})
    with pytest.raises(PluginError, match="unknown command"):
        Plugin(name="x", description="", commands={"hello": HelloConfig}, smoke={"nope": ()})


def _geocert(*args, env_plugins=None):
    import os

    env = dict(os.environ)
    if env_plugins:
        env["GEOCERT_PLUGINS"] = env_plugins
    return subprocess.run([sys.executable, "-m", "geocert.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_env_var_plugin_runs_through_the_cli():
    r = _geocert("hello", "--name", "geocert", env_plugins="hello=tests.test_plugins:GOOD")
    assert r.returncode == 0, r.stderr
    assert "hello geocert" in r.stdout


def test_user_error_is_one_line_and_exit_2():
    r = _geocert("fail-now", env_plugins="failing=tests.test_plugins:FAILING")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("geocert: warning:")]
    assert lines == ["geocert fail-now: error: sigma must be > 0, got -1.0"]


def test_help_lists_every_plugin_command_quickly():
    from geocert.cli import build_commands

    commands = build_commands()
    t0 = time.perf_counter()
    r = _geocert("--help")
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0
    for name in commands:
        assert name in r.stdout
    # generous bound (shared machine): the contract is < 2 s on a quiet one; torch must not be imported
    assert elapsed < 10
    r = subprocess.run([sys.executable, "-c", "import sys, geocert.cli as c; c.build_commands(); "
                        "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", "a plugin imports torch at module level: geocert --help gets slow"


def test_plugins_command_lists_installed_plugins():
    r = _geocert("plugins")
    assert r.returncode == 0
    for name in discover():
        assert name in r.stdout
