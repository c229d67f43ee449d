"""Option groups that commands inherit, so every dataset command (a third-party plugin's too) gets them.

``class CertifyThingConfig(CertifyOptions): ...`` gets every certification option (σ, n0, n, τ, α, correction,
k, batch size, seed, device, threads, --overwrite) and, through :class:`ExecutorOptions`, ``--executor``, ``--ray-address``, ``--workers`` and
``--gpus-per-worker``; :func:`executor_from` builds the executor they describe.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

__all__ = ["ExecutorOptions", "CertifyOptions", "executor_from"]


@dataclasses.dataclass(frozen=True)
class ExecutorOptions:
    """Where the items of a dataset run are certified."""

    executor: Literal["local", "ray"] = "local"
    """local: in this process; ray: on Ray workers (pip install 'geocert[ray]'); same labels either way."""
    ray_address: str | None = None
    """--executor ray: unset starts a local Ray instance; `auto` or HOST:PORT joins an existing cluster."""
    workers: int = 0
    """--executor ray: number of worker actors (0 = one per CPU of the Ray cluster, or per GPU with
    --gpus-per-worker)."""
    gpus_per_worker: float = 0.0
    """--executor ray: GPUs reserved per worker (0 = CPU workers; fractions share a GPU)."""


def executor_from(cfg: Any) -> Any:
    """The executor a config's :class:`ExecutorOptions` describe (``local`` when the config has none)."""
    from geocert.errors import ParameterError
    from geocert.pipeline.executors import get_executor

    name = getattr(cfg, "executor", "local")
    workers = getattr(cfg, "workers", 0)
    gpus = getattr(cfg, "gpus_per_worker", 0.0)
    # checked whatever the executor, so a bad value is never silently ignored
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ParameterError(f"--workers must be 0 (auto) or a positive integer, got {workers!r}")
    if not (isinstance(gpus, (int, float)) and math.isfinite(gpus) and gpus >= 0):
        raise ParameterError(f"--gpus-per-worker must be a finite number >= 0, got {gpus!r}")
    if name == "local":
        return get_executor("local")
    return get_executor(name, address=getattr(cfg, "ray_address", None), workers=workers, gpus_per_worker=gpus)


@dataclasses.dataclass(frozen=True)
class CertifyOptions(ExecutorOptions):
    """The options of a dataset certification command (SegCertify); a plugin's config inherits them and adds
    its data and model fields (redeclare a field to change its default)."""

    sigma: float = 0.25
    """Noise std σ, in the units of the input."""
    n0: int = 10
    """Selection samples (choose each component's top class); must be < n."""
    n: int = 1000
    """Estimation samples (test each component's top class)."""
    tau: float = 0.75
    """Threshold τ ∈ [0.5, 1): certify when P(top class) > τ; radius R = σ·Φ⁻¹(τ)."""
    alpha: float = 0.001
    """Family-wise error level α per item."""
    correction: Literal["none", "bonferroni", "holm"] = "holm"
    """Multiple-testing correction over the components of an item."""
    k: int = 1
    """k-FWER: allow up to k−1 false certificates per item with probability ≥ 1−α (k = 1: FWER)."""
    batch_size: int = 64
    """Noisy inputs per forward pass."""
    seed: int = 0
    """Run seed; each item's noise seed depends on it and the item's name only."""
    curve_taus: tuple[float, ...] = (0.55, 0.65, 0.75, 0.85, 0.9, 0.95, 0.99)
    """Thresholds of the certified-accuracy-vs-radius and Bonferroni-vs-Holm plots (same samples)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto (CUDA when present). Noise is drawn on this device."""
    threads: int = 1
    """torch CPU threads (0 = auto: free cores)."""
    overwrite: bool = False
    """Discard results already in --output instead of resuming."""

    def certify_settings(self, **overrides: Any) -> Any:
        """The validated :class:`geocert.pipeline.dataset.CertifySettings` of these options."""
        from geocert.pipeline.dataset import CertifySettings

        fields = dict(sigma=self.sigma, n0=self.n0, n=self.n, tau=self.tau, alpha=self.alpha,
                      correction=self.correction, k=self.k, batch_size=self.batch_size, seed=self.seed,
                      curve_taus=tuple(self.curve_taus))
        fields.update(overrides)
        return CertifySettings(**fields).validate()
