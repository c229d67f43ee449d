"""Where a run executes: the device, the CPU threads and the cache root, each decided in one place.

- ``--device cpu|cuda|cuda:N|auto``: :func:`resolve_device` (auto = CUDA when present, else CPU).
- ``--threads N``: N ≥ 1 torch CPU threads; ``0`` = auto (the CPUs this process may use minus the rounded
  1-minute load average, at least 1). The same meaning in every command.
- ``$GEOCERT_CACHE`` (default ``~/.cache/geocert``): generated scenes and default models, :func:`cache_root`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geocert.errors import ParameterError

__all__ = ["resolve_device", "resolve_threads", "apply_threads", "cache_root", "CACHE_ENV"]

CACHE_ENV = "GEOCERT_CACHE"


def resolve_device(spec: Any = "cpu") -> Any:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` → a ``torch.device``; a one-line :class:`ParameterError`
    (naming ``--device``) when the spelling is wrong or CUDA is asked for and absent."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    name = str(spec).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ParameterError(f"--device must be cpu, cuda, cuda:N or auto, got {spec!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(f"--device must be cpu, cuda, cuda:N or auto, got {spec!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return dev


def resolve_threads(threads: int) -> int:
    """``threads`` ≥ 1 as given; ``0`` = auto: usable CPUs minus the rounded 1-minute load average (≥ 1)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ParameterError(f"--threads must be 0 (auto) or a positive integer, got {threads!r}")
    if threads > 0:
        return threads
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, cpus - busy)


def apply_threads(threads: int) -> int:
    """Resolve ``threads`` and hand it to torch; returns the count used."""
    import torch

    n = resolve_threads(threads)
    torch.set_num_threads(n)
    return n


def cache_root(*parts: str) -> Path:
    """``$GEOCERT_CACHE`` (or ``~/.cache/geocert``) joined with ``parts`` (not created)."""
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "geocert"
    return root.joinpath(*parts)
