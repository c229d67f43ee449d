"""The run layer: one output folder per command, the same everywhere.

A command's ``main()`` opens a :class:`Run` once its inputs are validated::

    run = open_run(self, output=self.output, seed=self.seed, threads=self.threads, device=self.device)
    ...                                  # the plugin's work, writing through run.path() / run.save_*()
    run.finish(metrics)                  # metrics.json last, then report.html

What the run layer guarantees:

- ``--output`` is checked before any work: an existing *file*, or a place where nothing can be created
  (read-only folder or file system), is a one-line :class:`ParameterError`.
- ``config.json`` holds the resolved config as plain data, the geocert and plugin versions, the plugin and
  command, the seed, the device and threads used, and ``extra`` facts (checkpoint hashes, data paths).
- **Non-resumable** runs are staged in a hidden sibling folder and published at :meth:`Run.finish`
  (file by file, ``metrics.json`` last), so a failed or interrupted run leaves nothing in ``--output``.
- **Resumable** runs (dataset certification, long training) write into ``--output`` directly; a folder that
  holds the results of a different configuration (``result_key``) is refused unless ``--overwrite``.
- Nothing is written before the first file of a run (``config.json`` comes with it).
- Files are written atomically (:mod:`geocert.io`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geocert.errors import ParameterError

__all__ = ["Run", "open_run", "preflight", "check_output", "active_run", "abort_active", "find_command"]

_ACTIVE: list[Run] = []


def active_run() -> Run | None:
    """The run opened last in this process and not yet finished (the CLI asks it whether a run resumes)."""
    return _ACTIVE[-1] if _ACTIVE else None


def abort_active() -> list[Run]:
    """Abort every open run (the CLI calls this when a command fails or is interrupted); returns them."""
    runs = list(_ACTIVE)
    for run in reversed(runs):
        run.abort()
    return runs


def find_command(config_type: type) -> tuple[Any, str] | tuple[None, None]:
    """(plugin, command name) whose command is ``config_type``, from the registry; (None, None) if none."""
    import warnings

    from geocert.plugins import discover

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plugins = discover()
    for plugin in plugins.values():
        for name, cfg in plugin.commands.items():
            if cfg is config_type:
                return plugin, name
    return None, None


def check_output(output: str | os.PathLike, option: str = "--output") -> Path:
    """Refuse an output folder that cannot be used, before any work: one line naming ``option``.

    An existing non-folder, or a folder (or the nearest existing parent) where no file can be created, is a
    :class:`ParameterError`. The check creates and removes one probe file; it creates no folder."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{option} {out}: exists and is not a folder")
    probe_dir = out
    while not probe_dir.exists():
        parent = probe_dir.parent
        if parent == probe_dir:
            break
        probe_dir = parent
    if probe_dir.exists() and not probe_dir.is_dir():
        raise ParameterError(f"{option} {out}: {probe_dir} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".geocert-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ParameterError(f"{option} {out}: cannot write in {probe_dir} ({exc.strerror or exc})") from None
    return out


def preflight(config: Any, *, output: str | os.PathLike | None = None) -> Any:
    """Check the options every command shares, before any slow work (loading data, training a default
    model): ``--output`` (:func:`check_output`), ``--threads``, ``--device``. Returns the resolved device.
    :func:`open_run` checks them again; calling this first just makes a bad value fail fast."""
    from geocert.pipeline.environment import resolve_device, resolve_threads

    check_output(output if output is not None else config.output)
    if hasattr(config, "threads"):
        resolve_threads(config.threads)
    return resolve_device(getattr(config, "device", "cpu"))


@dataclasses.dataclass
class Run:
    """An open output folder (see the module docstring). Create it with :func:`open_run`."""

    config: Any
    output: Path
    plugin: str | None
    plugin_version: str | None
    command: str | None
    seed: int | None
    device: Any
    threads: int
    resumable: bool
    result_key: Mapping[str, Any] | None
    extra: dict
    _dir: Path | None
    started: float = dataclasses.field(default_factory=time.perf_counter)
    _config_written: bool = False
    _finished: bool = False

    @property
    def dir(self) -> Path:
        """Where files go now: ``output`` (resumable runs) or a hidden staging folder beside it, created on
        the first write and published at :meth:`finish`."""
        if self._dir is None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.", suffix=".staging",
                                              dir=self.output.parent))
        return self._dir

    # ------------------------------------------------------------------ paths and writers
    def path(self, name: str | os.PathLike) -> Path:
        """``dir/name`` with its parent folders created; ``config.json`` is written before the first file."""
        self._ensure_config()
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        from geocert.io import write_json

        return write_json(self.path(name), obj)

    def save_image(self, name: str, image: Any) -> Path:
        from geocert.io import write_image

        return write_image(self.path(name), image)

    def save_figure(self, name: str, fig: Any, dpi: int | None = None) -> Path:
        """Save a matplotlib figure atomically (format from the suffix) and close it."""
        import io

        import matplotlib.pyplot as plt

        from geocert.io import atomic_write

        buf = io.BytesIO()
        fig.savefig(buf, format=Path(name).suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        with atomic_write(self.path(name), "wb") as fh:
            fh.write(buf.getvalue())
        return self.dir / name

    def append_result(self, record: Mapping[str, Any], name: str = "results.jsonl") -> None:
        from geocert.io import append_jsonl

        append_jsonl(self.path(name), record)

    def update_extra(self, **facts: Any) -> None:
        """Add facts to ``config.json`` (rewritten if already there)."""
        self.extra.update(facts)
        if self._config_written:
            self._write_config()

    # ------------------------------------------------------------------ lifecycle
    def _write_config(self) -> None:
        from geocert.io import write_config

        write_config(self.dir, self.config, plugin=self.plugin, plugin_version=self.plugin_version, seed=self.seed,
                     command=self.command, device=str(self.device) if self.device is not None else None,
                     threads=self.threads, result_key=self.result_key, **self.extra)
        self._config_written = True

    def _ensure_config(self) -> None:
        if not self._config_written:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._write_config()

    @property
    def has_written(self) -> bool:
        """Whether anything was written yet (``config.json`` comes with the first file)."""
        return self._config_written

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def finish(self, metrics: Mapping[str, Any] | None = None, *, report: bool = True) -> Path:
        """Write ``metrics.json`` (last of the run's files), publish a staged run, then write ``report.html``.

        Returns the output folder."""
        from geocert.io import write_json

        self._ensure_config()
        if metrics is not None:
            write_json(self.dir / "metrics.json", metrics)
        if self.dir != self.output:
            _publish(self.dir, self.output)
        self._finished = True
        self._close()
        if report:
            write_report_safely(self.output)
        return self.output

    def abort(self) -> None:
        """Drop a staged run's files (resumable runs keep what they finished)."""
        if self._dir is not None and self._dir != self.output:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(ValueError):
            _ACTIVE.remove(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._finished:
            self.abort()


def write_report_safely(output: Path) -> None:
    """``report.html`` from the folder's files, when the report module is there; never fails the run."""
    try:
        from geocert.report import write_report
    except ImportError:
        return
    try:
        write_report(output)
    except Exception as exc:  # a broken page must not turn a finished run into a failed one
        print(f"geocert: warning: report.html not written ({type(exc).__name__}: {exc})", file=sys.stderr)


def _publish(staging: Path, output: Path) -> None:
    """Move every file of ``staging`` into ``output`` (replacing same-named files), ``metrics.json`` last."""
    output.mkdir(parents=True, exist_ok=True)
    files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.name == "metrics.json")
    for src in files:
        dst = output / src.relative_to(staging)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir():
            shutil.rmtree(dst)
        os.replace(src, dst)
    shutil.rmtree(staging, ignore_errors=True)


def _clear_run_folder(out: Path) -> None:
    """``--overwrite`` of a resumable run: empty a folder that geocert wrote (it holds config.json)."""
    if not out.is_dir():
        return
    if not (out / "config.json").is_file() and any(out.iterdir()):
        raise ParameterError(f"--output {out}: not a geocert output folder (no config.json); refusing to empty it "
                             "for --overwrite, choose another --output")
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def open_run(
    config: Any,
    *,
    output: str | os.PathLike | None = None,
    seed: int | None = None,
    threads: int | None = None,
    device: Any = None,
    resumable: bool = False,
    result_key: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    plugin: Any = None,
    command: str | None = None,
    overwrite_flag: str = "--overwrite",
    **extra: Any,
) -> Run:
    """Open the output folder of a command (after its inputs are validated, before its work starts).

    Args:
        config: the command's config dataclass (saved as plain data in ``config.json``).
        output: the folder (default ``config.output``). Checked with :func:`check_output`.
        seed: the run seed (default ``config.seed`` if present).
        threads: ``--threads`` (0 = auto) handed to torch (default ``config.threads`` if present, else 0).
        device: ``--device`` resolved with :func:`geocert.pipeline.resolve_device` (default ``config.device``
            if present, else CPU); the resolved ``torch.device`` is ``run.device``.
        resumable: write into ``output`` directly and keep finished work across runs (see ``result_key``).
        result_key: what identifies the results of a resumable run; a folder holding results of another key
            is refused unless ``overwrite`` (which empties it).
        plugin / command: identity for ``config.json`` (default: looked up in the registry by config type).
        overwrite_flag: how the user spells --overwrite for this run (e.g. ``--train.overwrite`` for a nested
            training), for the refusal message.
        extra: more facts for ``config.json``.
    """
    from geocert.io import read_json, to_plain
    from geocert.pipeline.environment import apply_threads, resolve_device

    get = lambda name, default=None: getattr(config, name, default)  # noqa: E731
    out = check_output(output if output is not None else get("output"))
    seed = get("seed") if seed is None else seed
    dev = resolve_device(get("device", "cpu") if device is None else device)
    n_threads = apply_threads(get("threads", 0) if threads is None else threads)
    overwrite = bool(overwrite or get("overwrite", False))
    if plugin is None or command is None:
        found_plugin, found_cmd = find_command(type(config))
        plugin = plugin if plugin is not None else found_plugin
        command = command if command is not None else found_cmd
    plugin_name = getattr(plugin, "name", plugin)
    plugin_version = getattr(plugin, "version", None)
    key = to_plain(result_key) if result_key is not None else None

    if resumable:
        cfg_file = out / "config.json"
        if overwrite:
            _clear_run_folder(out)
        elif cfg_file.is_file():
            old = read_json(cfg_file)
            old_key = old.get("result_key") if isinstance(old, dict) else None
            if old_key != key:
                old_key = old_key if isinstance(old_key, dict) else {}
                new_key = key if isinstance(key, dict) else {}
                diff = sorted(k for k in set(old_key) | set(new_key) if old_key.get(k) != new_key.get(k))
                raise ParameterError(f"--output {out}: holds results of a different run (differs in: "
                                     f"{', '.join(diff) or 'format'}); pass {overwrite_flag} or choose another --output")
        run_dir: Path | None = out
    else:
        run_dir = None  # staged: created on the first write
    run = Run(config=config, output=out, plugin=plugin_name, plugin_version=plugin_version, command=command,
              seed=seed, device=dev, threads=n_threads, resumable=resumable, result_key=key, extra=dict(extra),
              _dir=run_dir)
    _ACTIVE.append(run)
    return run
