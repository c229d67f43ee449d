"""Every discovered command's --help reads as written for people, and option errors name options as typed."""

from __future__ import annotations

import re

import pytest

from geocert.cli import build_commands, main, readable_help
from geocert.errors import ParameterError
from geocert.validate import check_positive_int, check_sigma, option_name

COMMANDS = sorted(build_commands())


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_python_none(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: geocert {command}")
    assert "{None}" not in out and not re.search(r"\(default:\s+None\)", out)


def test_readable_help_keeps_the_description_column():
    text = "  --ray-address {None}|STR  desc (default: None)\n  --model PATH              other\n"
    out = readable_help(text).splitlines()
    assert out[0].index("desc") == out[1].index("other") and out[0].endswith("(default: unset)")


def test_errors_name_options_as_typed():
    assert option_name("batch_size") == option_name("--batch-size") == "--batch-size"
    with pytest.raises(ParameterError, match=r"^--batch-size must be a positive integer"):
        check_positive_int(0, "batch_size")
    with pytest.raises(ParameterError, match=r"^--angle-sigma-deg must be > 0"):
        check_sigma(-1, "angle_sigma_deg")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "nan"], "--n: invalid literal for int()"),
        (["--bogus", "3"], "Unrecognized options: --bogus, 3"),
        (["--mode", "foo"], "invalid choice 'foo' for argument '--mode'"),
        (["--sigma"], "Missing value for argument '--sigma'"),
    ],
)
def test_parse_errors_are_one_line(args, message, capsys):
    assert main(["certify-pc", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geocert certify-pc: error: ") and message in err[0], err
