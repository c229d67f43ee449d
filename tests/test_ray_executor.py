"""The Ray executor of the dataset runner (issue 10): same labels as the local executor, faults, resume.

All tests share one local Ray instance (2 CPUs) started by a module fixture; the executors join it. Run as a
script, this module is the driver of the driver-kill test (``python tests/test_ray_executor.py OUT ...``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from geocert.cli import main as cli
from geocert.errors import GeocertError, ParameterError
from geocert.io import read_jsonl
from geocert.pipeline.dataset import RESULTS, CertifySettings, DatasetTask, Sample, certify_dataset

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install 'geocert[ray]'")

from geocert.pipeline.executors import get_executor  # noqa: E402
from geocert.pipeline.models import ModelError  # noqa: E402
from geocert.pipeline.ray_executor import RayExecutor, _check_reachable  # noqa: E402
from geocert.pipeline.run import open_run  # noqa: E402

SETTINGS = CertifySettings(sigma=0.3, n0=8, n=160, tau=0.6, alpha=0.05, batch_size=80, seed=7)


@dataclasses.dataclass
class ToyTask(DatasetTask):
    """Random 3D points per item (from the item's name); the model is a fixed linear 3-class point
    classifier. ``exit_on`` items end their worker process on their first load (a marker file in ``marks``
    makes the retry succeed; with ``exit_always`` on every load); ``hold_on`` items write their worker's PID to ``marks`` and wait until
    ``<name>.release`` appears there; ``fail_on`` items make the model raise."""

    num_items: int = 6
    num_points: int = 40
    delay_s: float = 0.0
    marks: str = ""
    exit_on: tuple[str, ...] = ()
    exit_always: bool = False
    hold_on: tuple[str, ...] = ()
    fail_on: tuple[str, ...] = ()

    num_classes = 3
    item_dir = "items"
    what = "point"

    def item_names(self) -> list[str]:
        return [f"item-{i:02d}" for i in range(self.num_items)]

    def load_model(self, device):
        model = torch.nn.Linear(3, 3)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[1.0, 0.2, 0.0], [-0.5, 1.0, 0.3], [0.1, -0.8, 1.0]]))
            model.bias.zero_()
        return model.to(device).eval()

    def load_item(self, name: str) -> Sample:
        marks = Path(self.marks)
        if name in self.exit_on and (self.exit_always or not (marks / f"{name}.exited").exists()):
            (marks / f"{name}.exited").touch()
            os._exit(1)  # the worker process dies without a word, like an OOM kill
        if name in self.hold_on and not (marks / f"{name}.release").exists():
            (marks / f"{name}.pid").write_text(str(os.getpid()))
            while not (marks / f"{name}.release").exists():
                time.sleep(0.01)
        if self.delay_s:
            time.sleep(self.delay_s)
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        x = rng.normal(size=(self.num_points, 3)).astype(np.float32)
        target = np.argmax(x @ np.array([[1.0, -0.5, 0.1], [0.2, 1.0, -0.8], [0.0, 0.3, 1.0]]), axis=1)
        target[rng.random(self.num_points) < 0.1] = -1  # some unlabelled points
        return Sample(torch.from_numpy(x), torch.from_numpy(target), {"name": name})

    def base_model(self, model, sample, device):
        fail = sample.data["name"] in self.fail_on

        def f(batch):
            if fail:
                raise RuntimeError("the toy model broke\non two lines")
            return model(batch).argmax(-1)

        return f, sample.x.to(device)

    def result_key(self) -> dict:
        return {"toy": self.num_items, "points": self.num_points}


def certify(out: Path, task: ToyTask, executor, threads: int = 1) -> dict:
    run = open_run({"toy": True}, output=out, seed=SETTINGS.seed, threads=threads, device="cpu", resumable=True,
                   plugin="toy", command="certify-toy", result_key={**SETTINGS.key(), **task.result_key()})
    with run:
        metrics = certify_dataset(run, task, SETTINGS, executor=executor, progress=False)
        run.finish(metrics, report=False)
    return metrics


def item_arrays(out: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for path in sorted((out / "items").glob("*.npz")):
        with np.load(path) as z:
            found[path.stem] = {k: z[k] for k in z.files}
    return found


def result_names(out: Path) -> list[str]:
    return [json.loads(line)["name"] for line in (out / RESULTS).read_text().splitlines() if line.strip()]


def assert_same_items(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert sorted(a[name]) == sorted(b[name]), name
        for key in a[name]:
            assert a[name][key].dtype == b[name][key].dtype, (name, key)
            assert np.array_equal(a[name][key], b[name][key], equal_nan=True), (name, key)


def free_cpus_back(total: float) -> bool:
    """Wait (up to 60 s: a loaded machine is slow to reap actors) until every CPU of the test instance is free
    again, i.e. no worker is left."""
    for _ in range(1200):
        if ray.available_resources().get("CPU", 0) >= total:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def cluster():
    # this test module is not importable on the workers: send its task class by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local executor's results on the default toy data set (2 torch threads)."""
    out = tmp_path_factory.mktemp("local") / "run"
    metrics = certify(out, ToyTask(), "local", threads=2)
    return out, metrics


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_labels_equal_local_bit_for_bit(cluster, reference, tmp_path, workers):
    ref_out, ref_metrics = reference
    out = tmp_path / "run"
    metrics = certify(out, ToyTask(), RayExecutor(workers=workers))
    assert_same_items(item_arrays(out), item_arrays(ref_out))
    assert sorted(result_names(out)) == sorted(result_names(ref_out))
    for key in ("certified_accuracy", "smoothed_accuracy", "clean_accuracy", "abstain_rate", "curve", "kfwer"):
        assert metrics[key] == ref_metrics[key], key
    assert (out / "metrics.json").is_file()
    assert free_cpus_back(2.0)


def test_registry_builds_ray_executor():
    exe = get_executor("ray", address="auto", workers=2, gpus_per_worker=0.5)
    assert isinstance(exe, RayExecutor)
    assert (exe.address, exe.workers, exe.gpus_per_worker) == ("auto", 2, 0.5)
    assert exe.worker_device(torch.device("cpu")) == "cuda"  # the actor's own GPU


def test_bad_ray_address_is_one_line_at_once(tmp_path):
    for bad in ("", "nohost", "host:port", "host:0"):
        with pytest.raises(ParameterError, match="--ray-address must be auto or HOST:PORT"):
            RayExecutor(address=bad)
    with pytest.raises(ParameterError, match=r"--ray-address 127\.0\.0\.1:1: no Ray cluster answers there"):
        _check_reachable("127.0.0.1:1")  # nothing listens on port 1 (Ray itself would retry for minutes)


def test_ray_refuses_cuda_without_gpus_and_too_many_workers(cluster):
    with pytest.raises(ParameterError, match="--gpus-per-worker"):
        RayExecutor(workers=1).worker_device(torch.device("cuda", 0))
    task = ToyTask(num_items=3)
    with pytest.raises(ParameterError, match=r"--workers 5: the Ray cluster fits 2 workers"):
        list(RayExecutor(workers=5).run(task, SETTINGS, task.item_names(), torch.device("cpu")))


def test_killed_workers_retry_items_once_each(cluster, reference, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    task = ToyTask(marks=str(marks), exit_on=("item-01",), hold_on=("item-04",))

    def kill_held_worker():  # SIGKILL the worker holding item-04 from outside, then let the retry through
        pid_file = marks / "item-04.pid"
        deadline = time.monotonic() + 300  # generous: on a loaded machine Ray's workers start slowly
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                break
            time.sleep(0.01)
        (marks / "item-04.release").touch()

    killer = threading.Thread(target=kill_held_worker)
    killer.start()
    try:
        out = tmp_path / "run"
        certify(out, task, RayExecutor(workers=2))
    finally:
        (marks / "item-04.release").touch()
        killer.join()
    assert (marks / "item-01.exited").exists() and (marks / "item-04.pid").exists()  # both workers did die
    names = result_names(out)
    assert sorted(names) == task.item_names()  # each item exactly once
    assert_same_items(item_arrays(out), item_arrays(reference[0]))
    assert free_cpus_back(2.0)


def test_item_that_always_kills_its_worker_stops_the_run(cluster, tmp_path):
    task = ToyTask(num_items=1, marks=str(tmp_path), exit_on=("item-00",), exit_always=True)
    with pytest.raises(GeocertError, match=r"^item item-00: a Ray worker died on it 2 times \(last: "):
        list(RayExecutor(workers=1, max_attempts=2).run(task, SETTINGS, ["item-00"], torch.device("cpu")))
    assert free_cpus_back(2.0)


def test_model_failure_same_error_as_local(cluster, tmp_path):
    task = ToyTask(num_items=4, fail_on=("item-02",))
    errors = {}
    for label, executor in (("local", "local"), ("ray", RayExecutor(workers=2))):
        with pytest.raises(ModelError) as info:
            certify(tmp_path / label, task, executor)
        errors[label] = info.value
    assert type(errors["ray"]) is type(errors["local"]) is ModelError
    assert str(errors["ray"]) == str(errors["local"])
    assert str(errors["ray"]).startswith("item item-02: the model failed (RuntimeError: the toy model broke on two")
    assert "\n" not in str(errors["ray"])
    assert not (tmp_path / "ray" / "metrics.json").exists()
    assert "item-02" not in result_names(tmp_path / "ray")
    assert free_cpus_back(2.0)  # the workers were stopped


def test_worker_without_the_plugin_says_so_in_one_line(cluster, tmp_path, monkeypatch):
    (tmp_path / "driver_only_plugin.py").write_text(
        "from geocert.pipeline.dataset import DatasetTask\n\n\nclass OnlyHere(DatasetTask):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not on the (already started) workers
    task = importlib.import_module("driver_only_plugin").OnlyHere()
    with pytest.raises(GeocertError) as info:
        list(RayExecutor(workers=1).run(task, SETTINGS, ["item-00"], torch.device("cpu")))
    assert str(info.value).startswith("a Ray worker cannot load the dataset task (")
    assert "No module named 'driver_only_plugin'" in str(info.value) and "\n" not in str(info.value)
    assert free_cpus_back(2.0)


def test_own_local_instance_started_and_shut_down_also_on_error(cluster, tmp_path, monkeypatch):
    """Without --ray-address the executor starts a private local instance (CPUs = workers, no dashboard) and
    shuts it down however the run ends. ray.init / ray.shutdown are recorded (the run itself goes to the test
    instance, so no second instance is started here)."""
    calls = []
    answers = iter([False])  # "not connected" to the executor's first question only (Ray asks it too)
    monkeypatch.setattr(ray, "is_initialized", lambda: next(answers, True))
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown", {})))
    task = ToyTask(num_items=3, fail_on=("item-01",))
    with pytest.raises(ModelError, match="item item-01: the model failed"):
        list(RayExecutor(workers=1).run(task, SETTINGS, task.item_names(), torch.device("cpu")))
    assert [c[0] for c in calls] == ["init", "shutdown"]
    init = calls[0][1]
    assert init["address"] == "local" and init["num_cpus"] == 1
    assert init["include_dashboard"] is False and init["log_to_driver"] is False
    monkeypatch.undo()
    assert free_cpus_back(2.0)


def test_killed_driver_resumes_without_duplicates(cluster, reference, tmp_path):
    out = tmp_path / "run"
    script = [sys.executable, __file__, str(out), "--address", cluster, "--workers", "2", "--delay", "1.0"]
    first = subprocess.Popen(script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        results = out / RESULTS
        for _ in range(30000):  # kill the driver as soon as the first result is written (≤ 300 s)
            if results.exists() and results.read_text().count("\n") >= 1 or first.poll() is not None:
                break
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait()
    before = [r["name"] for r in read_jsonl(out / RESULTS)]  # a line cut by the kill is not a result
    assert 1 <= len(before) < ToyTask().num_items, first.stdout.read().decode()[-2000:]
    assert not (out / "metrics.json").exists()
    certify(out, ToyTask(), RayExecutor(workers=1))  # the rerun (any number of workers)
    after = result_names(out)
    assert after[: len(before)] == before  # finished items were skipped, not redone
    assert sorted(after) == ToyTask().item_names()  # nothing lost, nothing twice
    assert_same_items(item_arrays(out), item_arrays(reference[0]))
    assert (out / "metrics.json").is_file()
    assert free_cpus_back(2.0)  # the killed driver's workers are gone too


@pytest.fixture(scope="module")
def tiny_pc_model(tmp_path_factory) -> Path:
    """A train-pc model of the smoke size, on the default (procedural) data set."""
    out = tmp_path_factory.mktemp("train-pc") / "run"
    assert cli(["train-pc", "--output", str(out), "--epochs", "1", "--width", "8", "--num-points", "256",
                "--train-points", "64", "--max-train-shapes", "16", "--eval-shapes", "8"]) == 0
    return out / "model.pt"


def test_certify_pc_cli_on_ray_equals_local(cluster, tiny_pc_model, tmp_path):
    """``geocert certify-pc --executor ray --workers 2 --ray-address HOST:PORT`` (a fresh process joining the
    test instance) writes the same shapes/*.npz, bit for bit, as the local executor."""
    args = ["certify-pc", "--checkpoint", str(tiny_pc_model), "--num-shapes", "2", "--num-points", "256",
            "--n0", "4", "--n", "40", "--tau", "0.6", "--alpha", "0.1", "--batch-size", "40"]
    assert cli([*args, "--output", str(tmp_path / "local")]) == 0
    ray_run = subprocess.run([sys.executable, "-m", "geocert.cli", *args, "--output", str(tmp_path / "ray"),
                              "--executor", "ray", "--workers", "2", "--ray-address", cluster],
                             capture_output=True, text=True, timeout=240)
    assert ray_run.returncode == 0, ray_run.stderr[-3000:]
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert len(list((local / "shapes").glob("*.npz"))) == 2
    for name in ("shapes", "ply"):
        assert sorted(p.name for p in (on_ray / name).iterdir()) == sorted(p.name for p in (local / name).iterdir())
    for path in (local / "shapes").glob("*.npz"):
        with np.load(path) as a, np.load(on_ray / "shapes" / path.name) as b:
            assert_same_items({path.stem: {k: a[k] for k in a.files}}, {path.stem: {k: b[k] for k in b.files}})
    m_local, m_ray = (json.loads((d / "metrics.json").read_text()) for d in (local, on_ray))
    assert m_ray["certified_accuracy"] == m_local["certified_accuracy"] and m_ray["curve"] == m_local["curve"]
    assert json.loads((on_ray / "config.json").read_text())["config"]["executor"] == "ray"


def main(argv: list[str] | None = None) -> None:
    """The driver of the driver-kill test: certify the toy data set into OUT on Ray."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--address", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    certify(Path(args.out), ToyTask(delay_s=args.delay), RayExecutor(address=args.address, workers=args.workers))


if __name__ == "__main__":
    main()
