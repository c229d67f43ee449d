"""The ``ray`` executor: certify the items of a dataset run on Ray actors (``pip install 'geocert[ray]'``).

``--executor ray`` on any dataset command (see :class:`geocert.pipeline.options.ExecutorOptions`)::

    geocert certify-pc --executor ray --workers 2                    # a local Ray instance, 2 CPU workers
    ray start --head                                                  # or join a cluster:
    geocert certify-pc --executor ray --ray-address auto --gpus-per-worker 1

How it runs:

- **Cluster.** ``address`` unset starts a private local Ray instance with ``workers`` CPUs (shut down at the
  end); ``auto`` or ``HOST:PORT`` joins an existing cluster, which is left running.
  A process already connected to Ray (``ray.init`` before the run) keeps its connection.
- **Workers** are actors reserving one CPU (and ``gpus_per_worker`` GPUs). Each receives the pickled
  :class:`~geocert.pipeline.dataset.DatasetTask` once, loads the model once (on its first item; on its
  assigned GPU when ``gpus_per_worker > 0``, else on the CPU with one torch thread) and certifies one item at
  a time with :func:`~geocert.pipeline.dataset.run_item_checked`. The driver hands the next item to whichever
  worker is free and yields each :class:`~geocert.pipeline.dataset.ItemResult` as it finishes (any order);
  :func:`~geocert.pipeline.dataset.certify_dataset` writes it. The noise seed of an item depends on the run
  seed and its name only, so the labels equal the local executor's for any number of workers.
- **Faults.** A worker whose process dies (killed, out of memory, node lost) is replaced and its item is
  certified again on a live worker, up to ``max_attempts`` times per item; the item is yielded once. An error
  raised by the task or the model on a worker (a :class:`~geocert.errors.GeocertError` such as the one-line
  ``ModelError`` naming the item) is raised again on the driver with the same type and message, and the
  run stops. Whenever the run ends (finished, failed, interrupted, or the caller closes the iterator) the
  workers are killed, and a Ray instance the executor started is shut down.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

from geocert.errors import GeocertError, ParameterError

__all__ = ["RayExecutor"]


class _Worker:
    """One Ray actor: the task, the device and (after the first item) the loaded model."""

    def __init__(self, device: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.task: Any = None
        self.model: Any = None

    def certify(self, task_ref: list, name: str, settings: Any) -> Any:
        """Certify one item. The task comes as ``[ObjectRef]`` (not resolved by Ray) and is fetched and the
        model loaded on the first call, inside a method, so that their errors reach the driver as raised."""
        import ray

        from geocert.pipeline.dataset import run_item_checked

        if self.task is None:
            try:
                self.task = ray.get(task_ref[0])
            except Exception as exc:  # noqa: BLE001 - typically the plugin is not installed on this worker
                raise GeocertError(f"a Ray worker cannot load the dataset task ({_first_line(exc)}); every "
                                   "worker needs geocert and the plugin installed (docs/ray.md)") from None
        if self.model is None:
            self.model = self.task.load_model(self.device)
        return run_item_checked(self.task, self.model, name, settings, self.device)


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError(f"--ray-address must be auto or HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A one-line error at once when nothing listens at ``HOST:PORT`` (Ray itself retries for minutes)."""
    import socket

    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ParameterError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                             "start one with `ray start --head` or check the address") from None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(exc).__name__


class RayExecutor:
    """Certify items on Ray actors (see the module docstring).

    Args:
        address: ``None`` starts a local Ray instance; ``auto`` or ``HOST:PORT`` joins a running cluster.
        workers: worker actors (0 = one per CPU of the cluster, or per ``gpus_per_worker`` GPUs; never more
            than there are items).
        gpus_per_worker: GPUs each worker reserves (0 = CPU workers; a fraction shares a GPU).
        max_attempts: how many times one item may be started on a worker that then dies before the run stops.
    """

    def __init__(self, address: str | None = None, workers: int = 0, gpus_per_worker: float = 0.0,
                 max_attempts: int = 3):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ParameterError(f"--workers must be 0 (auto) or a positive integer, got {workers!r}")
        if isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, (int, float)) \
                or not (math.isfinite(gpus_per_worker) and gpus_per_worker >= 0):
            raise ParameterError(f"--gpus-per-worker must be a finite number >= 0, got {gpus_per_worker!r}")
        self.address = str(address).strip() if address is not None else None
        if self.address not in (None, "auto", "local"):
            _host_port(self.address)
        self.workers = workers
        self.gpus_per_worker = float(gpus_per_worker)
        self.max_attempts = max(1, int(max_attempts))

    # ------------------------------------------------------------------ cluster
    def worker_device(self, device: Any) -> str:
        """The device each worker runs on: its assigned GPU with ``gpus_per_worker > 0``, else the CPU. Ray
        hides the GPUs from workers that reserve none, so ``--device cuda`` needs ``--gpus-per-worker``."""
        kind = getattr(device, "type", str(device).split(":")[0])
        if self.gpus_per_worker > 0:
            return "cuda"  # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPUs: cuda is the first of them
        if kind != "cpu":
            raise ParameterError(f"--executor ray with --device {device}: pass --gpus-per-worker (e.g. 1) so "
                                 "that each Ray worker reserves a GPU")
        return "cpu"

    def _connect(self) -> bool:
        """Start or join Ray; True when this call connected this process (and so must disconnect at the end:
        a local instance it started stops, a joined cluster keeps running)."""
        import ray

        if ray.is_initialized():
            return False
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        if self.address not in (None, "auto", "local"):
            _check_reachable(self.address)
        try:
            if self.address is None:
                ray.init(address="local", num_cpus=self.workers or None, **kw)
            else:
                ray.init(address=self.address, **kw)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            where = self.address or "a local instance"
            raise ParameterError(f"--ray-address: cannot connect to Ray at {where} ({_first_line(exc)})") from None
        return True

    def _num_workers(self, items: int) -> int:
        import ray

        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if self.gpus_per_worker > 0 and gpus < self.gpus_per_worker:
            raise ParameterError(f"--gpus-per-worker {self.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPUs")
        fit = int(cpus)
        if self.gpus_per_worker > 0:
            fit = min(fit, int(gpus / self.gpus_per_worker + 1e-9))
        if fit < 1:
            raise ParameterError(f"--executor ray: the Ray cluster has no free CPU for a worker ({cpus:g} CPUs)")
        if self.workers > fit:
            raise ParameterError(f"--workers {self.workers}: the Ray cluster fits {fit} workers ({cpus:g} CPUs, "
                                 f"{gpus:g} GPUs; each worker takes 1 CPU and {self.gpus_per_worker:g} GPUs)")
        return max(1, min(self.workers or fit, items))

    # ------------------------------------------------------------------ run
    def run(self, task: Any, settings: Any, names: Sequence[str], device: Any) -> Iterator[Any]:
        """Certify ``names`` on Ray workers; yield each item's result as it finishes (see the module docstring)."""
        if not names:
            return
        worker_device = self.worker_device(device)
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        started = self._connect()
        actors: list[Any] = []
        try:
            count = self._num_workers(len(names))
            worker_cls = ray.remote(_Worker).options(num_cpus=1, num_gpus=self.gpus_per_worker,
                                                     max_restarts=0, max_task_retries=0)
            task_ref = [ray.put(task)]
            spawn = lambda: worker_cls.remote(worker_device, 1)  # noqa: E731
            actors = [spawn() for _ in range(count)]
            idle = collections.deque(actors)
            queue = collections.deque(names)
            running: dict[Any, tuple[Any, str]] = {}
            attempts: collections.Counter[str] = collections.Counter()

            def dispatch() -> None:  # the next items to the free workers
                while queue and idle:
                    actor, name = idle.popleft(), queue.popleft()
                    attempts[name] += 1
                    running[actor.certify.remote(task_ref, name, settings)] = (actor, name)

            while queue or running:
                dispatch()
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, name = running.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except RayActorError as exc:  # the worker process died: replace it, certify the item again
                    if attempts[name] >= self.max_attempts:
                        raise GeocertError(f"item {name}: a Ray worker died on it {attempts[name]} times (last: "
                                           f"{_first_line(exc)})") from None
                    ray.kill(actor, no_restart=True)
                    actors.remove(actor)
                    actors.append(spawn())
                    idle.append(actors[-1])
                    queue.appendleft(name)
                    continue
                except RayTaskError as exc:  # raised by the task or the model: the same error as locally
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, Exception):
                        raise cause from None
                    raise
                idle.append(actor)
                dispatch()  # the worker goes on while the driver writes this result
                yield result
        finally:
            for actor in actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone, or Ray is shutting down
                    pass
            if started:
                ray.shutdown()
