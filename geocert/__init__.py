"""geocert: randomized smoothing for 3D vision.

The core is pure and light: ``geocert.smoothing`` (Monte-Carlo sampling, exact Gaussian blur, RS-SDF),
``geocert.stats`` (Clopper–Pearson, binomial tests, FWER control), ``geocert.certify`` (per-component
certification with abstention), ``geocert.metrics`` and ``geocert.plugins`` (the entry-point registry).
Submodules are imported lazily so that ``import geocert`` (and ``geocert --help``) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
API_VERSION = 1

_SUBMODULES = ("smoothing", "stats", "certify", "metrics", "plugins", "cli", "io", "errors", "validate", "pipeline")

__all__ = ["__version__", "API_VERSION", "GeocertError", *_SUBMODULES]

from geocert.errors import GeocertError  # noqa: E402  (light, no torch)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"geocert.{name}")
    raise AttributeError(f"module 'geocert' has no attribute {name!r}")
