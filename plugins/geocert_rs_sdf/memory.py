"""Up-front memory estimates: a run whose arrays cannot fit is refused before any work with one line that
names the option to change (``geocert sdf --resolution 100000`` would otherwise die allocating 910 TiB).

The per-voxel and per-sample costs are the growth of the peak resident memory measured on this code
(``/usr/bin/time -v`` between two sizes, see docs/rs_sdf.md), rounded up; the per-pixel and marching-cubes
costs are counted from the arrays held. The limit is the memory the system reports available
(``MemAvailable``), or the total when unknown.
"""

from __future__ import annotations

import os

from geocert.errors import ParameterError

__all__ = ["available_memory", "check_fits", "format_bytes", "SDF_BYTES_PER_VOXEL", "NERF_BYTES_PER_VOXEL",
           "NERF_BYTES_PER_SAMPLE", "NERF_BYTES_PER_PIXEL", "MESH_BYTES_PER_VOXEL"]

SDF_BYTES_PER_VOXEL = 80
"""``geocert sdf``: occupancy, blur copies, distance transforms and the band statistics, per grid voxel
(measured: 56)."""
NERF_BYTES_PER_VOXEL = 64
"""Training: occupancy logits, their blur, gradients and Adam moments, the skip bitfield, per grid voxel
(measured: 50)."""
NERF_BYTES_PER_SAMPLE = 224
"""Training: per density sample of a step's rays (points, densities, weights and their gradients; measured:
205)."""
NERF_BYTES_PER_PIXEL = 48
"""A loaded or rendered pixel: RGB(A) images, ray directions and view indices, rendered frames."""
MESH_BYTES_PER_VOXEL = 48
"""Marching cubes over a res³ grid: the points, the sampled SDF and the marching-cubes work arrays."""


def available_memory() -> int:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of /proc/meminfo, else the physical
    memory (``os.sysconf``), else 2⁶³ (no limit known)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 2**63


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_fits(needed: float, option: str, what: str, available: int | None = None) -> None:
    """Refuse (one-line :class:`ParameterError` naming ``option``) when ``needed`` bytes exceed the available
    memory. ``option`` is what the user typed, e.g. ``--resolution 100000``; ``what`` says what is that big."""
    have = available_memory() if available is None else available
    if needed > have:
        name = option.split()[0]
        raise ParameterError(f"{option}: needs about {format_bytes(needed)} of memory ({what}), more than the "
                             f"{format_bytes(have)} available; lower {name}")
