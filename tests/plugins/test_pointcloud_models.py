"""certify-pc with users' own models: TorchScript files and package.module:factory, the output contract, and
the guarantee end to end through the CLI with an oracle whose smoothed probabilities are known exactly."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch
from geocert_pointcloud.data import CATEGORY_PARTS, NUM_PARTS
from scipy.stats import norm

from geocert.cli import main as cli

KNIFE = CATEGORY_PARTS["Knife"]  # (22, 23)
SIGMA = 0.25


class ThresholdModel(torch.nn.Module):
    """Blade (part 22) where the x coordinate is > 0, handle (23) elsewhere: under N(0, σ²I) noise a point at
    x is labelled blade with probability exactly Φ(x/σ)."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x = points[..., 0]
        logits = torch.zeros(points.shape[0], points.shape[1], 50, dtype=points.dtype, device=points.device)
        logits[..., 22] = x
        logits[..., 23] = -x
        return logits


class LocalPartsModel(torch.nn.Module):
    """The same rule with logits over the category's 2 parts only ([B, N, P])."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x = points[..., 0:1]
        return torch.cat([x, -x], dim=-1)


class BadShapeModel(torch.nn.Module):
    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.zeros(points.shape[0], 7)


class NaNModel(torch.nn.Module):
    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.full((points.shape[0], points.shape[1], 50), float("nan"))


class OutOfCategoryLabels(torch.nn.Module):
    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.full(points.shape[:2], 3, dtype=torch.long)  # an Airplane part, not a Knife part


def _script(model: torch.nn.Module, path) -> str:
    torch.jit.save(torch.jit.script(model), str(path))
    return str(path)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """An unlabelled cloud whose x coordinates cover [-1, 1] densely (many points near the boundary)."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, size=(2048, 3)).astype(np.float32)
    pts /= max(1.0, float(np.linalg.norm(pts, axis=1).max()))
    path = tmp_path_factory.mktemp("cloud") / "knife.npy"
    np.save(path, pts)
    return path


def _run(cloud, model, out, *extra, n="1000", tau="0.75"):
    return cli(["certify-pc", str(cloud), "--model", str(model), "--category", "Knife", "--output", str(out),
                "--num-points", "2048", "--n0", "10", "--n", n, "--tau", tau, "--alpha", "0.001",
                "--batch-size", "250", "--sigma", str(SIGMA), *extra])


def _check_guarantee(out, tau: float) -> tuple[int, int]:
    z = np.load(next((out / "shapes").glob("*.npz")))
    p_blade = norm.cdf(z["points"][:, 0].astype(np.float64) / SIGMA)
    p_cert = np.where(z["certified"] == 22, p_blade, 1.0 - p_blade)
    certified = z["certified"] != -1
    assert set(np.unique(z["certified"])) <= {-1, *KNIFE}
    false = int((certified & (p_cert <= tau)).sum())
    sure = np.maximum(p_blade, 1.0 - p_blade) >= 0.9999
    assert (z["certified"][sure] == np.where(p_blade[sure] > 0.5, 22, 23)).all()  # every sure point certified
    return false, int(certified.sum())


def test_torchscript_oracle_certifies_only_points_above_tau(cloud, tmp_path):
    model = _script(ThresholdModel(), tmp_path / "threshold.pt")
    for seed in range(3):
        out = tmp_path / f"ts{seed}"
        assert _run(cloud, model, out, "--seed", str(seed)) == 0
        false, certified = _check_guarantee(out, 0.75)
        assert false == 0 and certified > 1000
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["model_kind"] == "user" and cfg["command"] == "certify-pc"


def test_local_part_logits_and_factory(cloud, tmp_path, monkeypatch):
    mod = tmp_path / "mods" / "my_pc_models.py"
    mod.parent.mkdir()
    mod.write_text(textwrap.dedent("""
        import torch

        class Rule(torch.nn.Module):
            def forward(self, points):
                x = points[..., 0:1]
                return torch.cat([x, -x], dim=-1)

        def build():
            return Rule()
    """))
    monkeypatch.syspath_prepend(str(mod.parent))
    a, b = tmp_path / "local", tmp_path / "factory"
    assert _run(cloud, _script(LocalPartsModel(), tmp_path / "local.pt"), a, n="200", tau="0.6") == 0
    assert _run(cloud, "my_pc_models:build", b, n="200", tau="0.6") == 0
    za, zb = (np.load(next((o / "shapes").glob("*.npz"))) for o in (a, b))
    np.testing.assert_array_equal(za["certified"], zb["certified"])  # same rule, same seed: same labels
    assert _check_guarantee(a, 0.6)[0] == 0


@pytest.mark.parametrize(
    ("model_cls", "message"),
    [
        (BadShapeModel, "must return logits [B, N, 50]"),
        (NaNModel, "NaN or infinite logits"),
        (OutOfCategoryLabels, "outside the cloud's category parts"),
    ],
)
def test_contract_errors_are_one_line(cloud, tmp_path, capsys, model_cls, message):
    out = tmp_path / "bad"
    assert _run(cloud, _script(model_cls(), tmp_path / "m.pt"), out, n="100", tau="0.6") == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "warning" not in ln]
    assert len(err) == 1 and err[0].startswith("geocert certify-pc: error:") and message in err[0], err
    assert "m.pt" in err[0]
    assert not out.exists()  # the model is probed on the first cloud before anything is written


def test_bad_factory_and_missing_module(cloud, tmp_path, capsys):
    out = tmp_path / "bad"
    assert _run(cloud, "no_such_module_xyz:build", out, n="100", tau="0.6") == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
    assert not out.exists()


def test_threshold_model_probability_matches_phi():
    """The oracle's label frequency under noise is Φ(x/σ) (so the test above checks the right thing)."""
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.1, 0.0, 0.0]])
    noisy = x + SIGMA * torch.randn(20000, 1, 3, generator=g)
    lab = ThresholdModel()(noisy).argmax(-1)
    freq = float((lab == 22).double().mean())
    assert freq == pytest.approx(norm.cdf(0.1 / SIGMA), abs=4 * math.sqrt(0.25 / 20000))
    assert NUM_PARTS == 50
