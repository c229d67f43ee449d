"""Executors run the items of a dataset certification: ``local`` (this process) and ``ray`` (a Ray cluster).

An executor has one method, ``run(task, settings, names, device) -> iterator of ItemResult``: it certifies
every named item with :func:`geocert.pipeline.dataset.run_item_checked` and yields each result as it
finishes, in any order. The driver writes what it yields; the per-item seed depends only on the run seed and
the item's name, so every executor gives the same labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from geocert.errors import ParameterError

__all__ = ["LocalExecutor", "get_executor", "EXECUTORS"]


class LocalExecutor:
    """Items one after another in this process; the model is loaded once."""

    def __init__(self, progress: bool = False):
        self.progress = progress

    def run(self, task: Any, settings: Any, names: Sequence[str], device: Any) -> Iterator[Any]:
        from geocert.pipeline.dataset import run_item_checked

        if not names:
            return
        model = task.load_model(device)
        for name in names:
            yield run_item_checked(task, model, name, settings, device, progress=self.progress)


def _ray_executor(**options: Any) -> Any:
    try:
        from geocert.pipeline.ray_executor import RayExecutor
    except ImportError as exc:
        raise ParameterError(f"--executor ray needs the ray extra: pip install 'geocert[ray]' ({exc})") from None
    return RayExecutor(**options)


EXECUTORS = {"local": lambda **options: LocalExecutor(), "ray": _ray_executor}


def get_executor(name: str, **options: Any) -> Any:
    """An executor by name (``local`` or ``ray``); ``options`` go to its constructor."""
    if name not in EXECUTORS:
        raise ParameterError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return EXECUTORS[name](**options)
