"""The plugin registry: plugins are found through the ``geocert.plugins`` entry-point group.

A plugin is a package exposing one object ``PLUGIN: geocert.plugins.Plugin`` and registering it as::

    [project.entry-points."geocert.plugins"]
    my-plugin = "my_package:PLUGIN"

``commands`` maps a CLI command name (kebab-case) to a config dataclass whose ``main()`` runs the command.
Keep the plugin's top-level module light (import torch inside ``main()``) so ``geocert --help`` is fast.

For a plugin under development that is not installed, set ``GEOCERT_PLUGINS="name=module:attr,..."``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

from geocert import API_VERSION
from geocert.errors import GeocertError

__all__ = ["Plugin", "PluginError", "discover", "ENTRY_POINT_GROUP", "ENV_VAR", "API_VERSION"]

ENTRY_POINT_GROUP = "geocert.plugins"
ENV_VAR = "GEOCERT_PLUGINS"
BUILTIN_COMMANDS = ("plugins", "report")
"""Commands of geocert itself, which no plugin may take."""
_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class PluginError(GeocertError):
    """A plugin that breaks the contract (wrong type, duplicate name or command, version mismatch)."""


@dataclasses.dataclass(frozen=True)
class Plugin:
    """What a plugin exposes as ``PLUGIN``."""

    name: str
    """Kebab-case name, equal to the entry-point name."""
    description: str
    """One line shown by ``geocert plugins``."""
    commands: Mapping[str, type] = dataclasses.field(default_factory=dict)
    """CLI command name → config dataclass with a ``.main()`` method."""
    api_version: int = API_VERSION
    """The geocert plugin API version this plugin was written for."""
    version: str = "0"
    """The plugin's own version (shown by ``geocert plugins``)."""
    smoke: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Optional: command → CLI arguments of a tiny run (seconds) on a bundled scene. ``{out}`` is replaced
    by a fresh output folder. geocert's test suite runs every discovered plugin's smoke commands and checks
    that each writes ``config.json`` and ``metrics.json`` there."""
    report: str | None = None
    """Optional: ``"module:function"`` of the report hook, imported only when a report is built (so this
    module stays light). ``function(run: geocert.report.Run) -> list[geocert.report.Section]`` returns the
    plugin's sections of ``report.html`` (see docs/report.md)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _KEBAB.match(self.name):
            raise PluginError(f"plugin name must be kebab-case, got {self.name!r}")
        for cmd, cfg in self.commands.items():
            if not _KEBAB.match(cmd):
                raise PluginError(f"plugin {self.name!r}: command name must be kebab-case, got {cmd!r}")
            if not (dataclasses.is_dataclass(cfg) and isinstance(cfg, type)):
                raise PluginError(f"plugin {self.name!r}: command {cmd!r} must map to a dataclass type")
            if not callable(getattr(cfg, "main", None)):
                raise PluginError(f"plugin {self.name!r}: config {cfg.__name__} of {cmd!r} has no main() method")
        if self.report is not None and (not isinstance(self.report, str)
                                        or not re.match(r"^[\w.]+:[\w.]+$", self.report)):
            raise PluginError(f"plugin {self.name!r}: report must be 'module:function', got {self.report!r}")
        for cmd in self.smoke:
            if cmd not in self.commands:
                raise PluginError(f"plugin {self.name!r}: smoke run names unknown command {cmd!r}")


@dataclasses.dataclass(frozen=True)
class _Source:
    """An entry-point-like object: a name and a loader."""

    name: str
    value: str
    load: Callable[[], Any]
    dist: str | None = None


def _entry_points() -> list[_Source]:
    sources = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None)
        sources.append(_Source(ep.name, ep.value, ep.load, dist))
    return sources


def _env_sources(spec: str) -> list[_Source]:
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if "=" not in item or ":" not in item:
            raise PluginError(f"{ENV_VAR}: entries must look like name=module:attr, got {item!r}")
        name, value = (s.strip() for s in item.split("=", 1))
        out.append(_Source(name, value, lambda value=value: _load_value(value), None))
    return out


def _load_value(value: str) -> Any:
    import importlib

    module, _, attr = value.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def discover(strict: bool = False, sources: Iterable[Any] | None = None) -> dict[str, Plugin]:
    """Find plugins registered under the ``geocert.plugins`` entry-point group.

    Args:
        strict: raise :class:`PluginError` on the first broken plugin instead of warning and skipping it.
        sources: entry-point-like objects (``.name``, ``.load()``) to use instead of the installed ones
            (tests pass fakes here). The ``GEOCERT_PLUGINS`` environment variable adds more.

    Returns:
        plugin name → :class:`Plugin`, in a stable (sorted) order. A plugin that fails to import, is not a
        ``Plugin``, has the wrong ``api_version``, a name differing from its entry point, or a name or
        command already taken, is rejected.
    """
    srcs = list(_entry_points() if sources is None else sources)
    env = os.environ.get(ENV_VAR, "")
    if env:
        srcs.extend(_env_sources(env))

    found: dict[str, Plugin] = {}
    owners: dict[str, str] = {}  # command -> plugin name

    def reject(msg: str) -> None:
        if strict:
            raise PluginError(msg)
        warnings.warn(f"skipping plugin: {msg}", RuntimeWarning, stacklevel=3)

    for src in sorted(srcs, key=lambda s: s.name):
        try:
            obj = src.load()
        except Exception as exc:  # a broken plugin must not take the CLI down
            reject(f"{src.name!r} failed to import: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(obj, Plugin):
            reject(f"{src.name!r} is a {type(obj).__name__}, not a geocert.plugins.Plugin")
            continue
        if obj.api_version != API_VERSION:
            reject(f"{src.name!r} was written for plugin API {obj.api_version}, this geocert has {API_VERSION}")
            continue
        if obj.name != src.name:
            reject(f"entry point {src.name!r} exposes a plugin named {obj.name!r}")
            continue
        if obj.name in found:
            reject(f"duplicate plugin name {obj.name!r}")
            continue
        clash = [c for c in obj.commands if c in owners or c in BUILTIN_COMMANDS]
        if clash:
            other = owners.get(clash[0], "geocert")
            reject(f"plugin {obj.name!r}: command {clash[0]!r} is already provided by {other!r}")
            continue
        for c in obj.commands:
            owners[c] = obj.name
        found[obj.name] = obj
    return found
