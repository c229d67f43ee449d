"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class GeocertError(Exception):
    """A user-facing error: bad input file, out-of-range parameter, unreachable τ, ...

    The message should name the file or parameter and the problem in one line.
    """


class InputError(GeocertError, ValueError):
    """A malformed or unreadable input file (names the file)."""


class ParameterError(GeocertError, ValueError):
    """An out-of-range or inconsistent parameter (σ ≤ 0, τ ∉ [0.5, 1), n0 > n, ...)."""
