"""Test-session set-up: a private cache for generated default scenes, so tests never read a user's cache."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _geocert_cache(tmp_path_factory):
    if "GEOCERT_CACHE" in os.environ:
        yield os.environ["GEOCERT_CACHE"]
        return
    path = tmp_path_factory.mktemp("geocert-cache")
    os.environ["GEOCERT_CACHE"] = str(path)
    try:
        yield str(path)
    finally:
        os.environ.pop("GEOCERT_CACHE", None)


SMOKE_EXTRA = {"certify-seg": ("--max-images", "2")}
"""Extra arguments appended to a plugin's smoke run (two images, so that report sliders have somewhere to go)."""


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Run a plugin's smoke command once per session (into a path with spaces and non-ASCII) and share the
    result: ``smoke_run(command, args) -> (CompletedProcess, output folder, its parent folder)``."""
    import subprocess
    import sys

    done: dict = {}

    def run(command: str, args: tuple[str, ...]):
        key = (command, tuple(args))
        if key not in done:
            base = tmp_path_factory.mktemp(f"smoke-{command}")
            out = base / "out dir é"
            argv = [a.replace("{out}", str(out)).replace("{tmp}", str(base)) for a in args]
            argv += list(SMOKE_EXTRA.get(command, ()))
            env = dict(os.environ, OMP_NUM_THREADS="1")
            done[key] = (subprocess.run([sys.executable, "-m", "geocert.cli", command, *argv], capture_output=True,
                                        text=True, env=env, timeout=600), out, base)
        return done[key]

    return run
