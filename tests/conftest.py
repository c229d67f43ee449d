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
