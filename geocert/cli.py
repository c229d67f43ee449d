"""The ``geocert`` command: one level of subcommands gathered from the installed plugins.

Each command is a config dataclass (fields with docstrings → ``--help``) with a ``main()`` method.
User errors (:class:`geocert.GeocertError`, missing files) are printed as one line on stderr and exit 2.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

from geocert import __version__
from geocert.errors import GeocertError

__all__ = ["main", "PluginsConfig", "build_commands"]


@dataclasses.dataclass(frozen=True)
class PluginsConfig:
    """List the installed geocert plugins, their versions and their commands."""

    strict: bool = False
    """Fail on a broken plugin instead of skipping it with a warning."""

    def main(self) -> None:
        from geocert.plugins import discover

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already reported once by main()
            plugins = discover(strict=self.strict)
        print(f"geocert {__version__}")
        if not plugins:
            print("  (no plugins found)")
        for p in plugins.values():
            cmds = ", ".join(sorted(p.commands)) or "-"
            print(f"  {p.name:<14} {p.version:<8} api {p.api_version}  commands: {cmds}")
            print(f"  {'':<14} {p.description}")


def build_commands(strict: bool = False) -> dict[str, type]:
    """command name → config dataclass, from every discovered plugin plus the built-in ``plugins``."""
    from geocert.plugins import discover

    commands: dict[str, type] = {"plugins": PluginsConfig}
    for plugin in discover(strict=strict).values():
        commands.update(plugin.commands)
    return commands


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``geocert`` console script. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        print(f"geocert {__version__}")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        commands = build_commands()
    for w in caught:  # one line each, not a traceback-style source dump
        print(f"geocert: warning: {w.message}", file=sys.stderr)
    import tyro

    try:
        config = tyro.extras.subcommand_cli_from_dict(
            dict(sorted(commands.items())),
            prog="geocert",
            description=f"geocert {__version__}: randomized smoothing for 3D vision.",
            args=argv,
        )
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        result = config.main()
    except GeocertError as exc:
        print(f"geocert {_cmd_name(argv)}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        name = getattr(exc, "filename", None)
        msg = f"{name}: {exc.strerror}" if name and exc.strerror else _one_line(exc)
        print(f"geocert {_cmd_name(argv)}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geocert {_cmd_name(argv)}: interrupted (completed results are kept; rerun to resume)", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0


def _cmd_name(argv: list[str]) -> str:
    return next((a for a in argv if not a.startswith("-")), "")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
