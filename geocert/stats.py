"""Certification statistics, vectorized over all components.

Inputs may be numpy arrays, torch tensors or scalars; outputs are numpy arrays (float64 / bool) of the
broadcast shape. Every function has a slow ``*_reference`` twin in ``tests/`` or here.

The hypotheses: for component i with top class ĉ_i, H0_i: p_i ≤ τ against H1_i: p_i > τ, where p_i is the
probability that the base model outputs ĉ_i under noise. k_i of n samples agreed with ĉ_i.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from geocert.errors import ParameterError

__all__ = [
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "binomial_pvalues",
    "fwer_thresholds",
    "fwer_reject",
    "fwer_reject_reference",
    "max_certifiable_tau",
    "METHODS",
]

METHODS = ("none", "bonferroni", "holm")


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _check_kn(k: np.ndarray, n: np.ndarray) -> None:
    if np.any(n < 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= k <= n for every component")


def clopper_pearson_lower(k, n, alpha) -> np.ndarray:
    """One-sided (1 − α) Clopper–Pearson lower bound p̲ with P(p ≥ p̲) ≥ 1 − α.

    p̲ = Beta⁻¹(α; k, n − k + 1), and 0 when k = 0. Broadcasts over ``k``, ``n`` and ``alpha``.
    """
    k, n, alpha = (_np(v).astype(np.float64) for v in (k, n, alpha))
    _check_kn(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = special.betaincinv(np.maximum(k, 1.0), n - k + 1.0, alpha)
    return np.where(k == 0, 0.0, lo)


def clopper_pearson_upper(k, n, alpha) -> np.ndarray:
    """One-sided (1 − α) Clopper–Pearson upper bound p̄ with P(p ≤ p̄) ≥ 1 − α.

    p̄ = Beta⁻¹(1 − α; k + 1, n − k), and 1 when k = n.
    """
    k, n, alpha = (_np(v).astype(np.float64) for v in (k, n, alpha))
    _check_kn(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = special.betaincinv(k + 1.0, np.maximum(n - k, 1.0), 1.0 - alpha)
    return np.where(k == n, 1.0, hi)


def binomial_pvalues(k, n, tau) -> np.ndarray:
    """Exact one-sided binomial p-values for H0: p ≤ τ given k successes in n trials.

    p-value = P(Bin(n, τ) ≥ k) = I_τ(k, n − k + 1) (regularized incomplete beta), 1 when k = 0.
    Broadcasts over ``k``, ``n`` and ``tau``.
    """
    k, n, tau = (_np(v).astype(np.float64) for v in (k, n, tau))
    _check_kn(k, n)
    pv = special.betainc(np.maximum(k, 1.0), n - k + 1.0, tau)
    return np.where(k == 0, 1.0, pv)


def _check_method(method: str, k: int) -> str:
    method = str(method).lower()
    if method not in METHODS:
        raise ParameterError(f"correction must be one of {', '.join(METHODS)}, got {method!r}")
    if int(k) != k or k < 1:
        raise ParameterError(f"k must be a positive integer, got {k!r}")
    return method


def fwer_thresholds(m: int, alpha: float, method: str = "holm", k: int = 1) -> np.ndarray:
    """The per-rank rejection thresholds α_1 ≤ … ≤ α_m for ``m`` hypotheses (sorted p-values).

    - ``none``: α for every rank (no multiple-testing control: only each test's own level).
    - ``bonferroni``: kα/m for every rank (k = 1: classic Bonferroni; k > 1: Lehmann–Romano generalized
      Bonferroni, P(≥ k false rejections) ≤ α).
    - ``holm``: step-down; k = 1: α/(m − i + 1); k > 1 (Lehmann–Romano 2005): kα/m for i ≤ k and
      kα/(m + k − i) for i > k.
    """
    method = _check_method(method, k)
    i = np.arange(1, m + 1, dtype=np.float64)
    if method == "none":
        return np.full(m, float(alpha))
    kk = float(min(k, max(m, 1)))
    if method == "bonferroni":
        return np.full(m, kk * alpha / max(m, 1))
    return np.where(i <= kk, kk * alpha / max(m, 1), kk * alpha / (m + kk - i))


def fwer_reject(pvalues, alpha: float, method: str = "holm", k: int = 1) -> np.ndarray:
    """Which hypotheses to reject under FWER (k = 1) or k-FWER (k > 1) control at level α.

    Args:
        pvalues: array of p-values, any shape (all components of all classes at once).
        alpha: the error level α ∈ (0, 1).
        method: ``none``, ``bonferroni`` or ``holm`` (see :func:`fwer_thresholds`).
        k: k-FWER: the probability of ``k`` or more false rejections is at most α (k = 1: ordinary FWER).

    Returns:
        Boolean array of the shape of ``pvalues``; O(m log m) time (one sort) for Holm.
    """
    p = _np(pvalues).astype(np.float64)
    method = _check_method(method, k)
    shape, flat = p.shape, p.reshape(-1)
    m = flat.size
    if m == 0:
        return np.zeros(shape, dtype=bool)
    if method in ("none", "bonferroni"):
        return (flat <= fwer_thresholds(1 if method == "none" else m, alpha, method, k)[0]).reshape(shape)
    order = np.argsort(flat, kind="stable")
    ok = flat[order] <= fwer_thresholds(m, alpha, "holm", k)
    # step-down: reject the ranks before the first failure
    n_reject = m if ok.all() else int(np.argmin(ok))
    out = np.zeros(m, dtype=bool)
    out[order[:n_reject]] = True
    return out.reshape(shape)


def fwer_reject_reference(pvalues, alpha: float, method: str = "holm", k: int = 1) -> list[bool]:
    """Slow twin of :func:`fwer_reject`: plain Python over a list, straight from the textbook definitions."""
    p = [float(v) for v in _np(pvalues).reshape(-1)]
    m = len(p)
    if method == "none":
        return [v <= alpha for v in p]
    kk = min(k, m)
    if method == "bonferroni":
        return [v <= kk * alpha / m for v in p]
    ranked = sorted(range(m), key=lambda i: (p[i], i))
    reject = [False] * m
    for rank, i in enumerate(ranked, start=1):
        thr = kk * alpha / m if rank <= kk else kk * alpha / (m + kk - rank)
        if p[i] > thr:
            break
        reject[i] = True
    return reject


def max_certifiable_tau(n: int, alpha: float, m: int = 1, method: str = "holm", k: int = 1) -> float:
    """The largest τ that ``n`` samples can ever certify for at least one of ``m`` components.

    The smallest possible p-value is τⁿ (all n samples agree), and the loosest first-rank threshold is
    α (``none``) or kα/m (``bonferroni``, ``holm``), so certification needs τ ≤ threshold^(1/n).
    """
    method = _check_method(method, k)
    if n < 1 or m < 1:
        raise ParameterError(f"need n >= 1 and m >= 1, got n={n}, m={m}")
    thr = fwer_thresholds(1 if method == "none" else m, alpha, method, k)[0]
    return float(math.exp(math.log(min(thr, 1.0)) / n))
