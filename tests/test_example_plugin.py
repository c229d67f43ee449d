"""The out-of-tree example plugin (docs/examples/geocert_voxels) loaded through GEOCERT_PLUGINS: a model
adapter and a loader get resume, config.json, metrics, plots and --device from the core."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geocert.cli import main as cli

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "geocert_voxels"


@pytest.fixture
def voxels(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("GEOCERT_PLUGINS", "voxels=geocert_voxels:PLUGIN")


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_example_plugin_gets_the_pipeline(voxels, tmp_path, capsys):
    out = tmp_path / "vox"
    args = ["certify-vox", "--output", str(out), "--n", "100", "--tau", "0.6"]
    assert cli(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["plugin"] == "voxels" and cfg["command"] == "certify-vox" and cfg["device"] == "cpu"
    assert cfg["plugin_version"] == "0.1.0" and cfg["seed"] == 0 and cfg["result_key"]["n"] == 100
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_items"] == 12 and m["num_components"] == 12
    assert m["certified_accuracy"] >= 0.5 and 0.0 <= m["abstain_rate"] <= 1.0
    assert {c["correction"] for c in m["curve"]} == {"none", "bonferroni", "holm"}
    for name in ("certified_accuracy_vs_radius.png", "bonferroni_vs_holm.png", "kfwer.png"):
        assert (out / name).stat().st_size > 1000
    records = _lines(out / "results.jsonl")
    assert len(records) == 12 and len({r["name"] for r in records}) == 12
    first = {p.name: np.load(p)["certified"] for p in (out / "grids").glob("*.npz")}
    # resume: nothing is certified again, the labels stay
    (out / "metrics.json").unlink()
    assert cli(args) == 0
    assert len(_lines(out / "results.jsonl")) == 12
    assert json.loads((out / "metrics.json").read_text())["certified_accuracy"] == m["certified_accuracy"]
    # another configuration in the same folder is refused, then accepted with --overwrite (same labels for
    # the same seed: recertified from scratch)
    capsys.readouterr()
    assert cli([*args, "--n", "120"]) == 2
    assert "holds results of a different run (differs in: n)" in capsys.readouterr().err
    assert cli([*args, "--overwrite"]) == 0
    again = {p.name: np.load(p)["certified"] for p in (out / "grids").glob("*.npz")}
    assert again.keys() == first.keys() and all(np.array_equal(again[k], first[k]) for k in first)


def test_example_plugin_bad_device_and_data(voxels, tmp_path, capsys):
    out = tmp_path / "vox"
    if not torch.cuda.is_available():
        assert cli(["certify-vox", "--output", str(out), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert cli(["certify-vox", "--output", str(out), "--device", "tpu"]) == 2
    assert "--device must be cpu, cuda, cuda:N or auto" in capsys.readouterr().err
    bad = tmp_path / "grids"
    bad.mkdir()
    np.save(bad / "a_sphere.npy", np.zeros((4, 4, 4)))
    assert cli(["certify-vox", "--data", str(bad), "--output", str(out)]) == 2
    assert "a_sphere.npy: expected" in capsys.readouterr().err
    assert not out.exists()
