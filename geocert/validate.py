"""Parameter checks shared by every command; each raises :class:`ParameterError` with one clear line."""

from __future__ import annotations

import math

from geocert.errors import ParameterError

__all__ = ["option_name", "check_sigma", "check_tau", "check_alpha", "check_samples", "check_positive_int", "check_correction"]

CORRECTIONS = ("none", "bonferroni", "holm")


def option_name(name: str) -> str:
    """``batch_size`` / ``batch-size`` / ``--batch-size`` → ``--batch-size``: options as the user types them."""
    return "--" + str(name).lstrip("-").replace("_", "-")


def _finite(name: str, value: float) -> float:
    name = option_name(name)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ParameterError(f"{name} must be finite, got {value}")
    return value


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """σ > 0 and finite."""
    sigma = _finite(name, sigma)
    if sigma <= 0:
        raise ParameterError(f"{option_name(name)} must be > 0, got {sigma}")
    return sigma


def check_tau(tau: float) -> float:
    """τ ∈ [0.5, 1)."""
    tau = _finite("tau", tau)
    if not 0.5 <= tau < 1.0:
        raise ParameterError(f"--tau must be in [0.5, 1), got {tau}")
    return tau


def check_alpha(alpha: float) -> float:
    """α ∈ (0, 1)."""
    alpha = _finite("alpha", alpha)
    if not 0.0 < alpha < 1.0:
        raise ParameterError(f"--alpha must be in (0, 1), got {alpha}")
    return alpha


def check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ParameterError(f"{option_name(name)} must be a positive integer, got {value!r}")
    return int(value)


def check_samples(n0: int, n: int) -> tuple[int, int]:
    """n0 ≥ 1 selection samples, n ≥ 1 estimation samples, n0 ≤ n."""
    n0 = check_positive_int(n0, "n0")
    n = check_positive_int(n, "n")
    if n0 > n:
        raise ParameterError(f"--n0 must be <= --n (selection samples cannot exceed estimation samples), got n0={n0} > n={n}")
    return n0, n


def check_correction(correction: str, k: int = 1) -> tuple[str, int]:
    """correction ∈ {none, bonferroni, holm}; k ≥ 1 (k > 1 gives k-FWER control)."""
    c = str(correction).lower().replace("-", "_")
    if c not in CORRECTIONS:
        raise ParameterError(f"--correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    k = check_positive_int(k, "k")
    return c, k
