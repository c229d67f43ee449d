"""Option groups that commands inherit, so every dataset command (a third-party plugin's too) gets them.

``class CertifyThingConfig(ExecutorOptions): ...`` adds ``--executor``, ``--ray-address``, ``--workers`` and
``--gpus-per-worker``; :func:`executor_from` builds the executor they describe.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = ["ExecutorOptions", "executor_from"]


@dataclasses.dataclass(frozen=True)
class ExecutorOptions:
    """Where the items of a dataset run are certified."""

    executor: Literal["local", "ray"] = "local"
    """local: in this process; ray: on Ray workers (pip install 'geocert[ray]'); same labels either way."""
    ray_address: str | None = None
    """--executor ray: unset starts a local Ray instance; `auto` or HOST:PORT joins an existing cluster."""
    workers: int = 0
    """--executor ray: number of worker actors (0 = one per CPU of the Ray cluster, or per GPU with
    --gpus-per-worker)."""
    gpus_per_worker: float = 0.0
    """--executor ray: GPUs reserved per worker (0 = CPU workers; fractions share a GPU)."""


def executor_from(cfg: Any) -> Any:
    """The executor a config's :class:`ExecutorOptions` describe (``local`` when the config has none)."""
    from geocert.errors import ParameterError
    from geocert.pipeline.executors import get_executor

    name = getattr(cfg, "executor", "local")
    if name == "local":
        return get_executor("local")
    workers = getattr(cfg, "workers", 0)
    gpus = getattr(cfg, "gpus_per_worker", 0.0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ParameterError(f"--workers must be 0 (auto) or a positive integer, got {workers!r}")
    if not (isinstance(gpus, (int, float)) and gpus >= 0 and gpus == gpus):
        raise ParameterError(f"--gpus-per-worker must be >= 0, got {gpus!r}")
    return get_executor(name, address=getattr(cfg, "ray_address", None), workers=workers, gpus_per_worker=gpus)
