"""Hostile input for every command of every discovered plugin (a new plugin is covered by declaring smoke runs).

The property, for each case: the command exits 2 with exactly one line on stderr, ``geocert <cmd>: error: …``,
no traceback, and nothing in --output (no folder, no staging leftovers) — or, where the value is legitimately
accepted, it finishes its tiny smoke run and writes metrics.json. An interrupted resumable run finishes on
rerun with the same result as an uninterrupted one.

Options are read from each command's --help (what a user sees), so nested and inherited options are covered.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from geocert.cli import main as cli
from geocert.plugins import discover

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    PLUGINS = discover()

SMOKE = {cmd: args for p in PLUGINS.values() for cmd, args in p.smoke.items()}
COMMANDS = sorted(SMOKE)
SKIP_OPTIONS = {"--seed"}  # any integer is a valid seed


def _help(command: str) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cli([command, "--help"])
    return buf.getvalue()


def _numeric_options(command: str) -> list[tuple[str, str]]:
    found = re.findall(r"^\s+(--[\w.-]+)(?:,\s*--[\w.-]+)*\s+(INT|FLOAT)\b", _help(command), flags=re.M)
    return [(opt, kind) for opt, kind in dict.fromkeys(found) if opt not in SKIP_OPTIONS]


def _has_positional(command: str) -> bool:
    usage = _help(command).splitlines()[0]
    return bool(re.search(r"\[(PATH|STR)\]", usage))


def _argv(command: str, out: Path | str, tmp: Path) -> list[str]:
    return [command, *(a.replace("{out}", str(out)).replace("{tmp}", str(tmp)) for a in SMOKE[command])]


def _one_error_line(command: str, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln.lower()]
    assert "Traceback" not in err, err[-2000:]
    assert len(lines) == 1, f"expected one error line, got:\n{err[-2000:]}"
    assert lines[0].startswith(f"geocert {command}: error: "), lines[0]
    return lines[0]


def _nothing_written(out: Path, tmp: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), f"{out} holds {sorted(p.name for p in out.iterdir())}"
    assert not [p.name for p in tmp.iterdir() if p.name.startswith(".")], "staging left behind"


@pytest.mark.parametrize("command", COMMANDS)
def test_output_at_an_existing_file(command, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    assert cli(_argv(command, taken, tmp_path)) == 2
    line = _one_error_line(command, capsys.readouterr().err)
    assert str(taken) in line
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize("command", COMMANDS)
def test_output_on_a_read_only_file_system(command, tmp_path, capsys):
    assert cli(_argv(command, "/proc/geocert-fuzz/out", tmp_path)) == 2
    assert "/proc/geocert-fuzz/out" in _one_error_line(command, capsys.readouterr().err)


CASES = [(c, opt, kind, value) for c in COMMANDS for opt, kind in _numeric_options(c)
         for value in (("-1", "nan", "inf") if kind == "FLOAT" else ("-1", "nan"))]


@pytest.mark.parametrize(("command", "option", "kind", "value"), CASES,
                         ids=[f"{c}{o}={v}" for c, o, _, v in CASES])
def test_numeric_option_values(command, option, kind, value, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli([*_argv(command, out, tmp_path), option, value])
    err = capsys.readouterr().err
    if rc == 0:  # accepted: then it is a finished, complete run
        assert (out / "metrics.json").is_file(), f"{option} {value} accepted but no metrics.json"
        return
    assert rc == 2, f"{command} {option} {value}: exit {rc}\n{err[-2000:]}"
    _one_error_line(command, err)
    _nothing_written(out, tmp_path)


def _hostile_files(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    files = {"missing": tmp / "missing.txt", "empty": tmp / "empty.txt"}
    files["empty"].write_bytes(b"")
    for ext in ("txt", "png", "npy", "ply", "obj", "json"):
        f = tmp / f"garbage.{ext}"
        f.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        files[f"garbage.{ext}"] = f
    files["truncated.png"] = tmp / "truncated.png"
    import imageio.v3 as iio

    iio.imwrite(files["truncated.png"], np.zeros((32, 32, 3), np.uint8))
    files["truncated.png"].write_bytes(files["truncated.png"].read_bytes()[:60])
    files["nan.txt"] = tmp / "nan.txt"
    files["nan.txt"].write_text("0 0 0\nnan 1 1\ninf 0 0\n")
    return files


POSITIONAL = [c for c in COMMANDS if _has_positional(c)]


@pytest.mark.parametrize("command", POSITIONAL)
def test_hostile_input_files(command, tmp_path, capsys):
    files = _hostile_files(tmp_path)
    for kind, path in files.items():
        out = tmp_path / f"out-{kind}"
        rc = cli([_argv(command, out, tmp_path)[0], str(path), *_argv(command, out, tmp_path)[1:]])
        err = capsys.readouterr().err
        assert rc == 2, f"{command} on {kind}: exit {rc}\n{err[-2000:]}"
        line = _one_error_line(command, err)
        assert path.name in line, f"{kind}: the error does not name the file: {line}"
        assert "pip install" not in line and "allow_pickle" not in line, line  # no library hints leak
        _nothing_written(out, tmp_path)


def test_interrupted_dataset_run_resumes_to_the_same_result(tmp_path):
    """SIGINT mid-run (after the first finished shape), then rerun: the same labels as an uninterrupted run."""
    # a one-epoch model of the default architecture and size (`--model auto` would train the default: minutes)
    model = tmp_path / "model"
    train = ["train-pc", "--output", str(model), "--epochs", "1", "--max-train-shapes", "16", "--eval-shapes", "4",
             "--calibrate", "off"]
    trained = subprocess.run([sys.executable, "-m", "geocert.cli", *train], capture_output=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    # ~1.2 s per shape on this machine: the signal lands long before the last of the 6 shapes
    args = ["certify-pc", "--model", str(model / "model.pt"), "--num-shapes", "6", "--num-points", "512",
            "--n0", "4", "--n", "2000", "--tau", "0.6", "--alpha", "0.1", "--batch-size", "20"]
    cmd = [sys.executable, "-m", "geocert.cli", *args]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert subprocess.run([*cmd, "--output", str(whole)], capture_output=True, timeout=300).returncode == 0
    # SIGINT back to its default in the child: a shell starts background jobs (CI under nohup …&) with SIGINT
    # ignored, the child inherits that, and Python then installs no KeyboardInterrupt handler at all
    proc = subprocess.Popen([*cmd, "--output", str(cut)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = cut / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (results.is_file() and results.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]  # (0 would mean the run outpaced the signal: nothing tested)
    assert "interrupted (finished results are kept; rerun to resume)" in err and "Traceback" not in err
    assert not (cut / "metrics.json").exists()
    done = len(results.read_text().splitlines())
    assert 1 <= done < 6
    assert subprocess.run([*cmd, "--output", str(cut)], capture_output=True, timeout=300).returncode == 0
    names = [json.loads(ln)["name"] for ln in results.read_text().splitlines()]
    assert len(names) == len(set(names)) == 6
    for f in (whole / "shapes").glob("*.npz"):
        a, b = np.load(f), np.load(cut / "shapes" / f.name)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (whole, cut))
    assert ma["certified_accuracy"] == mb["certified_accuracy"]
