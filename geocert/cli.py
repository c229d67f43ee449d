"""The ``geocert`` command: one level of subcommands gathered from the installed plugins.

Each command is a config dataclass (fields with docstrings → ``--help``) with a ``main()`` method.
User errors (:class:`geocert.GeocertError`, missing files) are printed as one line on stderr and exit 2.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import warnings
from pathlib import Path

import tyro

from geocert import __version__
from geocert.errors import GeocertError

__all__ = ["main", "PluginsConfig", "ReportConfig", "build_commands"]


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


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Rebuild report.html of a run folder from the files in it (old runs, dataset runs in progress)."""

    output_dir: tyro.conf.Positional[Path]
    """The run's output folder (holding config.json, metrics.json, ...)."""

    def main(self) -> None:
        from geocert.report import write_report

        print(f"report: {write_report(self.output_dir)}")


def build_commands(strict: bool = False) -> dict[str, type]:
    """command name → config dataclass, from every discovered plugin plus the built-in ``plugins``."""
    return {name: cfg for name, (cfg, _) in _command_table(strict).items()}


def _command_table(strict: bool = False) -> dict[str, tuple[type, str]]:
    from geocert.plugins import discover

    table: dict[str, tuple[type, str]] = {"plugins": (PluginsConfig, "geocert"), "report": (ReportConfig, "geocert")}
    for plugin in discover(strict=strict).values():
        for name, cfg in plugin.commands.items():
            table[name] = (cfg, plugin.name)
    return table


def _summary(cfg: type) -> str:
    """The first sentence of a config's docstring (its first paragraph, joined), for the command list."""
    para = " ".join((cfg.__doc__ or "").strip().split("\n\n")[0].split())
    m = re.match(r"(.+?[.])(\s|$)", para)
    line = m.group(1) if m else para
    return line if len(line) <= 110 else line[:110].rsplit(" ", 1)[0] + " …"


def _print_help(table: dict[str, tuple[type, str]]) -> None:
    print("usage: geocert <command> [options]     (geocert <command> --help for its options)\n")
    print(f"geocert {__version__}: randomized smoothing for 3D vision.\n")
    print("commands:")
    width = max(len(n) for n in table)
    for plugin in sorted({p for _, p in table.values()}, key=lambda p: (p != "geocert", p)):
        for name in sorted(n for n, (_, p) in table.items() if p == plugin):
            print(f"  {name:<{width}}  {_summary(table[name][0])}  [{plugin}]")
    print("\n  --version     print the version and exit")


def readable_help(text: str) -> str:
    """tyro's help with optional values written for people: ``{None}|PATH`` → ``PATH``, ``(default: None)``
    → ``(default: unset)``; the description column keeps its place."""
    text = re.sub(r"\{None\}\|(\S+)( {2,})", lambda m: m.group(1) + m.group(2) + " " * 7, text)
    text = text.replace("{None}|", "")
    return re.sub(r"\(default:(\s+)None\)", r"(default:\1unset)", text)  # also when wrapped onto the next line


def parse_error_line(text: str) -> str:
    """The message of tyro's argument error in one line ("--epochs: invalid literal ..."), from its rich box
    (terminal) or its ASCII form (title line, rule, message, rule, help)."""
    blocks: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = raw.strip().strip("│|").strip()
        if not line:
            continue
        if line[0] in "╭╰┌└" or set(line) <= set("─-=━ "):
            if blocks[-1]:
                blocks.append([])
            continue
        blocks[-1].append(line)
    blocks = [b for b in blocks if b]
    if "╭" not in text and len(blocks) > 1:
        blocks = blocks[1:]  # the ASCII form's title line ("Value error")
    msg = " ".join(blocks[0]) if blocks else "invalid arguments"
    return re.sub(r"^Error parsing (--[\w.-]+): ", r"\1: ", msg)


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
        table = _command_table()
    for w in caught:  # one line each, not a traceback-style source dump
        print(f"geocert: warning: {w.message}", file=sys.stderr)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _print_help(table)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in table:
        import difflib

        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"geocert: error: unknown command {name!r}{hint}; see geocert --help", file=sys.stderr)
        return 2
    import contextlib
    import io

    wants_help = any(a in ("-h", "--help") for a in rest)
    buf, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(buf) if wants_help else contextlib.nullcontext(), \
                contextlib.redirect_stderr(err):
            config = tyro.cli(table[name][0], args=rest, prog=f"geocert {name}")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if wants_help:
            sys.stdout.write(readable_help(buf.getvalue()))
        if code and err.getvalue().strip():  # tyro's boxed parse error, as one line
            print(f"geocert {name}: error: {parse_error_line(err.getvalue())} (see geocert {name} --help)",
                  file=sys.stderr)
        return code
    if err.getvalue():
        sys.stderr.write(err.getvalue())
    from geocert.pipeline.run import abort_active

    try:
        result = config.main()
    except GeocertError as exc:
        abort_active()
        print(f"geocert {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        abort_active()
        fname = getattr(exc, "filename", None)
        msg = f"{fname}: {exc.strerror}" if fname and exc.strerror else _one_line(exc)
        print(f"geocert {name}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        runs = abort_active()
        if any(r.resumable and r.has_written for r in runs):
            msg = " (finished results are kept; rerun to resume)"
        elif runs:
            msg = " (nothing was written)"
        else:
            msg = ""
        print(f"geocert {name}: interrupted{msg}", file=sys.stderr)
        return 130
    except BaseException:
        abort_active()
        raise
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
