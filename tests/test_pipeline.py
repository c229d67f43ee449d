"""The run layer and the dataset runner (geocert.pipeline)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

from geocert import stats
from geocert.certify import certified_radius, certify_curve
from geocert.errors import ParameterError
from geocert.pipeline import (
    CertifySettings,
    DatasetTask,
    Sample,
    certify_dataset,
    item_seed,
    open_run,
    resolve_device,
    resolve_threads,
)
from geocert.pipeline.models import ModelError, is_torchscript, labels_from_output, load_model
from geocert.pipeline.progress import Progress


@dataclasses.dataclass(frozen=True)
class _Cfg:
    output: Path
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    overwrite: bool = False


# ---------------------------------------------------------------------------------------------- run layer


def test_output_at_an_existing_file_is_refused_before_work(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(ParameterError, match="exists and is not a folder"):
        open_run(_Cfg(f))
    with pytest.raises(ParameterError, match="is a file, not a folder"):
        open_run(_Cfg(f / "sub"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; see the read-only mount test")
def test_output_in_a_read_only_folder_is_refused(tmp_path):  # pragma: no cover - non-root only
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(ParameterError, match="cannot write"):
        open_run(_Cfg(ro / "out"))


def test_output_on_a_read_only_file_system_is_refused(tmp_path):
    ro = Path("/proc/geocert-out")  # /proc refuses new files for root too
    with pytest.raises(ParameterError, match="--output /proc/geocert-out: cannot write in /proc"):
        open_run(_Cfg(ro))


def test_staged_run_publishes_at_finish_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    run = open_run(_Cfg(out))
    run.write_json("a.json", {"x": 1})
    run.save_image("img.png", np.zeros((4, 4, 3), np.uint8))
    assert not out.exists()  # staged
    run.finish({"score": 1.0})
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "config.json", "img.png", "metrics.json",
                                                             "report.html"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 0 and cfg["device"] == "cpu" and cfg["threads"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging folder gone
    failed = tmp_path / "failed"
    run = open_run(_Cfg(failed))
    run.write_json("a.json", {"x": 1})
    run.abort()
    assert not failed.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_nothing_is_written_before_the_first_file(tmp_path):
    out = tmp_path / "deep" / "out"
    run = open_run(_Cfg(out), resumable=True, result_key={"a": 1})
    assert not out.exists()
    run.write_json("x.json", {})
    assert (out / "config.json").is_file()


def test_resumable_run_refuses_another_configuration(tmp_path):
    out = tmp_path / "out"
    open_run(_Cfg(out), resumable=True, result_key={"n": 10}).write_json("r.json", {})
    open_run(_Cfg(out), resumable=True, result_key={"n": 10})  # same key: fine
    with pytest.raises(ParameterError, match=r"differs in: n\)"):
        open_run(_Cfg(out), resumable=True, result_key={"n": 20})
    open_run(_Cfg(out), resumable=True, result_key={"n": 20}, overwrite=True)
    assert not (out / "r.json").exists()  # --overwrite emptied the folder


def test_overwrite_refuses_to_empty_a_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("important")
    with pytest.raises(ParameterError, match="not a geocert output folder"):
        open_run(_Cfg(out), resumable=True, overwrite=True)
    assert (out / "thesis.tex").is_file()


def test_device_and_threads_resolution(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("AUTO").type in ("cpu", "cuda")
    for bad in ("tpu", "cuda:x", "mps"):
        with pytest.raises(ParameterError, match="--device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_threads(3) == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (100.0, 0, 0))
    assert resolve_threads(0) == 1  # auto: never below one
    for bad in (-1, 1.5, True):
        with pytest.raises(ParameterError, match="--threads"):
            resolve_threads(bad)


def test_progress_writes_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    with Progress(4, "work", "items", stream=buf, interval=0.0) as bar:
        for _ in range(4):
            bar.update(1)
    lines = buf.getvalue().splitlines()
    assert lines[-1].startswith("work: 4/4 items (100%)") and "\r" not in buf.getvalue() and "\x1b" not in buf.getvalue()


# ---------------------------------------------------------------------------------------------- models


class _Logits(torch.nn.Module):
    def forward(self, x):
        return torch.stack([x.sum(-1), -x.sum(-1)], dim=-1)


def test_load_model_torchscript_factory_and_errors(tmp_path, monkeypatch):
    ts = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(_Logits()), str(ts))
    assert is_torchscript(ts)
    plain = tmp_path / "plain.pt"
    torch.save({"a": 1}, plain)
    assert not is_torchscript(plain)
    loaded = load_model(ts)
    assert loaded.kind == "torchscript" and loaded.model(torch.ones(1, 3)).shape == (1, 2)
    (tmp_path / "my_models.py").write_text("import torch\nclass M(torch.nn.Module):\n"
                                           "    def forward(self, x):\n        return x\n\ndef make():\n    return M()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model("my_models:make").kind == "factory"
    with pytest.raises(Exception, match="plain.pt: not a TorchScript file"):
        load_model(plain)
    with pytest.raises(Exception, match="has no attribute 'nope'"):
        load_model("my_models:nope")
    with pytest.raises(Exception, match="model file not found"):
        load_model(tmp_path / "missing.pt")
    native = load_model(plain, native=lambda p: ("model", {"k": 1}))
    assert native.kind == "checkpoint" and native.meta == {"k": 1}


def test_labels_from_output_contract():
    logits = torch.randn(2, 5, 3)
    assert torch.equal(labels_from_output(logits, batch=2, components=(5,), num_classes=3, source="m"),
                       logits.argmax(-1))
    chw = torch.randn(2, 3, 4, 4)
    assert torch.equal(labels_from_output(chw, batch=2, components=(4, 4), num_classes=3, source="m", class_axis=1),
                       chw.argmax(1))
    lab = torch.tensor([[0, 2, 1, 1, 0], [2, 2, 2, 2, 2]])
    assert torch.equal(labels_from_output(lab, batch=2, components=(5,), num_classes=3, source="m"), lab)
    with pytest.raises(ModelError, match=r"m: the model must return logits \[2, 5, 3\] or integer labels \[2, 5\]"):
        labels_from_output(torch.randn(2, 5, 4), batch=2, components=(5,), num_classes=3, source="m")
    with pytest.raises(ModelError, match="NaN"):
        labels_from_output(torch.full((2, 5, 3), float("nan")), batch=2, components=(5,), num_classes=3, source="m")
    with pytest.raises(ModelError, match="outside 0..2"):
        labels_from_output(lab + 1, batch=2, components=(5,), num_classes=3, source="m")


# ---------------------------------------------------------------------------------------------- runner


@dataclasses.dataclass
class OracleTask(DatasetTask):
    """Items of m points on a line; label 1 where x + noise > 0: P(label 1) = Φ(x/σ) exactly."""

    m: int = 200
    count: int = 4
    num_classes: int = 2
    item_dir: str = "items"

    def item_names(self):
        return [f"item-{i:02d}" for i in range(self.count)]

    def load_model(self, device):
        return "oracle"

    def load_item(self, name):
        rng = np.random.default_rng(int(name[-2:]))
        x = torch.from_numpy(rng.uniform(-1, 1, self.m).astype(np.float32))
        return Sample(x=x, target=(x > 0).long())

    def base_model(self, model, sample, device):
        return (lambda batch: (batch > 0).long()), sample.x.to(device)


def _settings(**kw) -> CertifySettings:
    base = dict(sigma=0.3, n0=10, n=300, tau=0.75, alpha=0.01, batch_size=100, seed=0)
    base.update(kw)
    return CertifySettings(**base)


def test_runner_certificates_hold_and_resume(tmp_path):
    out = tmp_path / "run"
    task, settings = OracleTask(), _settings()
    run = open_run(_Cfg(out), resumable=True, result_key=settings.key())
    m = certify_dataset(run, task, settings, progress=False)
    run.finish(m)
    assert m["num_items"] == 4 and m["num_components"] == 800
    assert m["radius"] == pytest.approx(0.3 * norm.ppf(0.75))
    for name in task.item_names():
        z = np.load(out / "items" / f"{name}.npz")
        x = task.load_item(name).x.numpy().astype(np.float64)
        p = np.where(z["certified"] == 1, norm.cdf(x / 0.3), norm.cdf(-x / 0.3))
        assert not ((z["certified"] != -1) & (p <= 0.75)).any()  # no false certificate (w.p. ≥ 1 − α)
        assert (z["certified"][np.abs(x) > 0.3 * 4] != -1).all()  # sure points are certified
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    # resume after losing the last item: only that one is certified again, with the same labels
    before = np.load(out / "items" / "item-03.npz")["certified"]
    (out / "results.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # truncated last line
    run = open_run(_Cfg(out), resumable=True, result_key=settings.key())
    m2 = certify_dataset(run, task, settings, progress=False)
    records = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]  # all complete
    assert [r["name"] for r in records].count("item-03") == 1
    np.testing.assert_array_equal(np.load(out / "items" / "item-03.npz")["certified"], before)
    assert m2["certified_accuracy"] == m["certified_accuracy"]


def test_item_seed_depends_on_name_and_seed_only():
    assert item_seed(0, "a") == item_seed(0, "a") != item_seed(1, "a")
    assert item_seed(0, "a") != item_seed(0, "b")
    assert 0 <= item_seed(12345, "x" * 100) < 2**63 - 1


def test_runner_is_order_independent(tmp_path):
    """Certifying items in another order (as another executor would) gives the same labels per item."""
    task, settings = OracleTask(count=3), _settings(n=100)
    a, b = tmp_path / "a", tmp_path / "b"
    for out, names in ((a, None), (b, list(reversed(task.item_names())))):
        run = open_run(_Cfg(out), resumable=True)
        certify_dataset(run, task, settings, names=names, progress=False)
    for name in task.item_names():
        za, zb = np.load(a / "items" / f"{name}.npz"), np.load(b / "items" / f"{name}.npz")
        for key in ("certified", "top_counts", "pvalues"):
            np.testing.assert_array_equal(za[key], zb[key])


def test_model_failure_is_one_line_naming_the_item(tmp_path):
    task = OracleTask(count=2)

    class Failing(OracleTask):
        def base_model(self, model, sample, device):
            def f(batch):
                raise RuntimeError("CUDA out of memory\nmore text")

            return f, sample.x

    run = open_run(_Cfg(tmp_path / "o"), resumable=True)
    with pytest.raises(ModelError, match=r"item item-00: the model failed \(RuntimeError: CUDA out of memory more"):
        certify_dataset(run, Failing(count=task.count), _settings(), progress=False)


def test_settings_validation_names_options():
    with pytest.raises(ParameterError, match="--n0 must be < --n"):
        _settings(n0=300).validate()
    with pytest.raises(ParameterError, match="curve-taus"):
        _settings(curve_taus=(0.3,)).validate()
    with pytest.raises(ParameterError, match="batch-size"):
        _settings(batch_size=0).validate()


def test_certify_curve_matches_per_item_loops():
    rng = np.random.default_rng(0)
    n, alpha = 200, 0.05
    tops = [rng.binomial(n, rng.uniform(0.5, 1.0, m)) for m in (30, 50)]
    classes = [rng.integers(0, 3, len(t)) for t in tops]
    targets = [np.where(rng.random(len(t)) < 0.8, c, (c + 1) % 3) for t, c in zip(tops, classes, strict=True)]
    targets[1][:5] = -1  # unlabelled components count in the family, not in the accuracy
    curve = certify_curve(tops, classes, targets, n=n, sigma=0.5, alpha=alpha, taus=(0.6, 0.8),
                          corrections=("bonferroni", "holm"), ks=(1, 3))
    assert len(curve) == 8
    labelled = sum(int((t >= 0).sum()) for t in targets)
    for c in curve:
        ok = cert = 0
        for t, cl, tg in zip(tops, classes, targets, strict=True):
            rej = stats.fwer_reject_reference(list(stats.binomial_pvalues(t, n, c["tau"])), alpha,
                                              c["correction"], c["k"])
            for r, a, b in zip(rej, cl, tg, strict=True):
                if b >= 0:
                    cert += bool(r)
                    ok += bool(r) and a == b
        assert c["certified_fraction"] == pytest.approx(cert / labelled)
        assert c["certified_accuracy"] == pytest.approx(ok / labelled)
        assert c["radius"] == pytest.approx(certified_radius(0.5, c["tau"]))


def test_refusal_names_the_flag_as_the_user_spells_it(tmp_path):
    out = tmp_path / "out"
    open_run(_Cfg(out), resumable=True, result_key={"n": 1}).write_json("r.json", {})
    with pytest.raises(ParameterError, match="pass --train.overwrite or choose another --output"):
        open_run(_Cfg(out), resumable=True, result_key={"n": 2}, overwrite_flag="--train.overwrite")
