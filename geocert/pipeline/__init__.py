"""The run layer and the dataset runner, shared by every command of every plugin.

- :mod:`geocert.pipeline.run`: :func:`open_run` / :class:`Run` (output folder, ``config.json``, staging,
  resume key, ``metrics.json`` last, ``report.html``).
- :mod:`geocert.pipeline.environment`: ``--device`` (:func:`resolve_device`), ``--threads``
  (:func:`resolve_threads`, 0 = auto), the cache root (:func:`cache_root`).
- :mod:`geocert.pipeline.progress`: progress bars on a terminal, plain lines in a log.
- :mod:`geocert.pipeline.models`: users' models (geocert checkpoint, TorchScript, ``module:factory``) and the
  output contract check.
- :mod:`geocert.pipeline.dataset`: :class:`DatasetTask`, :class:`CertifySettings`, :func:`certify_dataset`.
- :mod:`geocert.pipeline.executors`: ``local`` and ``ray``.

Submodules import lazily (torch only where needed).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Run": "run", "open_run": "run", "preflight": "run", "check_output": "run", "active_run": "run",
    "resolve_device": "environment", "resolve_threads": "environment", "apply_threads": "environment",
    "cache_root": "environment",
    "progress": "progress", "Progress": "progress",
    "load_model": "models", "labels_from_output": "models", "ModelError": "models", "LoadedModel": "models",
    "CertifySettings": "dataset", "DatasetTask": "dataset", "Sample": "dataset", "certify_dataset": "dataset",
    "item_seed": "dataset", "certify_item": "dataset", "safe_name": "dataset",
    "get_executor": "executors", "LocalExecutor": "executors",
    "ExecutorOptions": "options", "CertifyOptions": "options", "executor_from": "options",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"geocert.pipeline.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'geocert.pipeline' has no attribute {name!r}")
