"""Per-component certification by randomized smoothing with abstention (SegCertify).

For each component i (pixel, point, ...) the smoothed classifier answers

    f̄_i(x) = c_i  if  P(f_i(x + ε) = c_i) > τ,  else abstain,   ε ~ N(0, σ²I),

and every non-abstained answer is constant for all ‖δ‖₂ ≤ R = σ·Φ⁻¹(τ). :func:`certify` draws ``n0`` samples
to pick each component's top class ĉ_i, then ``n`` fresh samples to count k_i agreements, tests
H0_i: p_i ≤ τ with the exact one-sided binomial test and controls the family-wise error with ``correction``.

**Guarantee.** With probability at least 1 − α (over the sampling), no component is certified with a class
whose true probability is ≤ τ (for k > 1: fewer than k such components). The n0 selection samples are
independent of the n test samples, so the test counts exactly the n samples it was given.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from geocert import stats
from geocert.errors import ParameterError
from geocert.smoothing import sample_counts
from geocert.validate import (
    check_alpha,
    check_correction,
    check_positive_int,
    check_samples,
    check_sigma,
    check_tau,
)

__all__ = [
    "ABSTAIN",
    "Certificate",
    "certify",
    "certify_from_counts",
    "certify_curve",
    "certified_radius",
    "predict",
    "check_tau_reachable",
]

ABSTAIN = -1


def certified_radius(sigma: float, tau: float) -> float:
    """R = σ·Φ⁻¹(τ): the ℓ2 radius within which every label certified at threshold τ holds."""
    return float(sigma * torch.special.ndtri(torch.tensor(float(tau), dtype=torch.float64)))


@dataclasses.dataclass
class Certificate:
    """The result of :func:`certify` for one input. Tensors have the components' shape ``[*components]``."""

    labels: torch.Tensor
    """Certified class per component (int64), ``ABSTAIN`` (−1) where not certified."""
    abstain: torch.Tensor
    """Bool mask of abstained components."""
    radius: float
    """The ℓ2 radius R = σ·Φ⁻¹(τ) within which every certified label holds."""
    pvalues: torch.Tensor
    """One-sided binomial p-values of H0: p ≤ τ (float64)."""
    lower_bounds: torch.Tensor
    """Simultaneous one-sided Clopper–Pearson lower bounds p̲ on each top-class probability (float64), at
    level α (``none``) or α/m (otherwise; Bonferroni across the m components)."""
    counts: torch.Tensor
    """How many of the n estimation samples agreed with the selected class (int64)."""
    top_classes: torch.Tensor
    """The class selected from the n0 samples (int64), certified or not."""
    n0: int
    n: int
    tau: float
    sigma: float
    alpha: float
    correction: str
    k: int
    timings: dict = dataclasses.field(default_factory=dict)
    """``sampling_s``, ``statistics_s``, ``total_s`` in seconds."""

    @property
    def num_certified(self) -> int:
        return int((~self.abstain).sum())

    @property
    def abstain_rate(self) -> float:
        return float(self.abstain.float().mean()) if self.abstain.numel() else 0.0

    def cohen_radius(self) -> torch.Tensor:
        """Per-component Cohen-style radius σ·Φ⁻¹(p̲), 0 where abstained or p̲ ≤ ½ (float64).

        It holds simultaneously for all components with probability ≥ 1 − α (the bounds are
        Bonferroni-corrected unless ``correction == 'none'``)."""
        lb = self.lower_bounds.clamp(max=1.0 - 1e-12)
        r = self.sigma * torch.special.ndtri(lb)
        return torch.where(self.abstain | (lb <= 0.5), torch.zeros_like(r), r)


def check_tau_reachable(tau: float, n: int, alpha: float, m: int, correction: str, k: int = 1) -> None:
    """Raise :class:`ParameterError` if τ is beyond what ``n`` samples can ever certify for ``m`` components."""
    tmax = stats.max_certifiable_tau(n, alpha, m, correction, k)
    if tau > tmax:
        need = math.ceil(math.log(stats.fwer_thresholds(1 if correction == "none" else m, alpha, correction, k)[0])
                         / math.log(tau))
        raise ParameterError(
            f"tau={tau} can never be certified with n={n} samples for {m} components at alpha={alpha} "
            f"({correction}): the largest reachable tau is {tmax:.4f}; use tau <= {tmax:.4f} or n >= {need}")


def certify_from_counts(
    counts0: torch.Tensor,
    counts: torch.Tensor,
    *,
    sigma: float,
    tau: float,
    alpha: float,
    correction: str = "holm",
    k: int = 1,
    n0: int | None = None,
) -> Certificate:
    """The statistics of :func:`certify` alone, from class counts.

    Args:
        counts0: ``[*components, C]`` selection counts (n0 samples); each component's top class is its argmax.
        counts: ``[*components, C]`` estimation counts from n *independent* samples; n is read from their sum,
            which must be the same for every component.
    """
    sigma, tau, alpha = check_sigma(sigma), check_tau(tau), check_alpha(alpha)
    correction, k = check_correction(correction, k)
    if counts0.shape != counts.shape or counts.ndim < 1:
        raise ValueError(f"counts0 and counts must both be [*components, C], got {tuple(counts0.shape)} and "
                         f"{tuple(counts.shape)}")
    t0 = time.perf_counter()
    totals = counts.sum(-1)
    n = int(totals.reshape(-1)[0]) if totals.numel() else 0
    if totals.numel() and not bool((totals == n).all()):
        raise ValueError("every component must have been counted over the same number of samples n")
    top = counts0.argmax(-1)
    k_top = counts.gather(-1, top.unsqueeze(-1)).squeeze(-1)
    m = int(top.numel())
    k_np = k_top.cpu().numpy()
    pvals = stats.binomial_pvalues(k_np, n, tau)
    reject = stats.fwer_reject(pvals, alpha, correction, k)
    alpha_cp = alpha if correction == "none" else alpha / max(m, 1)
    lower = stats.clopper_pearson_lower(k_np, n, alpha_cp)
    dev = counts.device
    reject_t = torch.from_numpy(reject).to(dev)
    labels = torch.where(reject_t, top, torch.full_like(top, ABSTAIN))
    return Certificate(
        labels=labels,
        abstain=~reject_t,
        radius=certified_radius(sigma, tau),
        pvalues=torch.from_numpy(np.asarray(pvals, dtype=np.float64)).to(dev),
        lower_bounds=torch.from_numpy(np.asarray(lower, dtype=np.float64)).to(dev),
        counts=k_top,
        top_classes=top,
        n0=int(n0 if n0 is not None else int(counts0.sum(-1).reshape(-1)[0]) if counts0.numel() else 0),
        n=n,
        tau=tau,
        sigma=sigma,
        alpha=alpha,
        correction=correction,
        k=k,
        timings={"statistics_s": time.perf_counter() - t0},
    )


def certify(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    num_classes: int,
    sigma: float,
    n0: int,
    n: int,
    tau: float,
    alpha: float,
    correction: str = "holm",
    k: int = 1,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Certificate:
    """Certify every component of ``f``'s output at ``x`` (SegCertify).

    Args:
        f: base model, batch ``[B, *x.shape]`` → integer labels ``[B, *components]`` in ``[0, num_classes)``.
        x: the clean input (image ``[3, H, W]``, points ``[N, 3]``, angle ``[1]``, ...).
        sigma: noise level σ > 0 in the units of ``x``.
        n0, n: selection and estimation sample counts (1 ≤ n0 ≤ n); they are drawn independently.
        tau: threshold τ ∈ [½, 1); the certified radius is R = σ·Φ⁻¹(τ).
        alpha: family-wise error level α ∈ (0, 1).
        correction: ``none``, ``bonferroni`` or ``holm``; ``k > 1`` gives k-FWER control.
        generator: explicit RNG for reproducible runs.

    Returns:
        :class:`Certificate`. Raises :class:`ParameterError` for out-of-range parameters, and when τ cannot
        be reached by n samples for the number of components (checked after one forward pass tells how many).
    """
    sigma, tau, alpha = check_sigma(sigma), check_tau(tau), check_alpha(alpha)
    n0, n = check_samples(n0, n)
    correction, k = check_correction(correction, k)
    num_classes = check_positive_int(num_classes, "num_classes")
    batch_size = check_positive_int(batch_size, "batch_size")
    t_start = time.perf_counter()
    counts0 = sample_counts(f, x, sigma=sigma, n=n0, num_classes=num_classes, batch_size=batch_size,
                            generator=generator, progress="selection (n0)" if progress else False)
    m = int(counts0[..., 0].numel())
    check_tau_reachable(tau, n, alpha, m, correction, k)
    counts = sample_counts(f, x, sigma=sigma, n=n, num_classes=num_classes, batch_size=batch_size,
                           generator=generator, progress="estimation (n)" if progress else False)
    t_sampled = time.perf_counter()
    cert = certify_from_counts(counts0, counts, sigma=sigma, tau=tau, alpha=alpha, correction=correction, k=k, n0=n0)
    t_end = time.perf_counter()
    cert.timings = {"sampling_s": t_sampled - t_start, "statistics_s": t_end - t_sampled, "total_s": t_end - t_start}
    return cert


def predict(f, x, *, num_classes: int, sigma: float, n: int, alpha: float, batch_size: int = 64,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Cohen's PREDICT per component: the top class if a two-sided binomial test of the top two counts
    rejects equality at level α (no multiple-testing correction), else ``ABSTAIN``. ``[*components]`` int64."""
    sigma, alpha = check_sigma(sigma), check_alpha(alpha)
    counts = sample_counts(f, x, sigma=sigma, n=n, num_classes=num_classes, batch_size=batch_size, generator=generator)
    if num_classes < 2:
        return torch.zeros(counts.shape[:-1], dtype=torch.int64, device=counts.device)
    top2 = counts.topk(2, dim=-1)
    na, nb = top2.values[..., 0].cpu().numpy(), top2.values[..., 1].cpu().numpy()
    # two-sided test of Bin(na + nb, 1/2): p = 2·P(X ≥ na)
    pv = np.minimum(1.0, 2.0 * stats.binomial_pvalues(na, na + nb, 0.5))
    ok = torch.from_numpy(pv <= alpha).to(counts.device)
    return torch.where(ok, top2.indices[..., 0], torch.full_like(top2.indices[..., 0], ABSTAIN))


def certify_curve(
    top_counts,
    top_classes,
    target,
    *,
    n: int,
    sigma: float,
    alpha: float,
    taus=(0.75,),
    corrections=("holm",),
    ks=(1,),
) -> list[dict]:
    """Certified accuracy at several thresholds τ, corrections and k from the *same* counts (statistics only).

    Args:
        top_counts: per item, ``[m_i]`` counts of the selected class among the n estimation samples.
        top_classes: per item, ``[m_i]`` the selected class (from the independent n0 samples).
        target: per item, ``[m_i]`` ground-truth labels; components with a negative target are left out of
            the accuracy (but still counted in each item's multiple-testing family).
        n: estimation samples per component. sigma: noise level (for the radius σ·Φ⁻¹(τ)).
        alpha: FWER level per item. taus / corrections / ks: the grid to evaluate.

    Returns:
        one dict per reachable (τ, correction, k): ``tau``, ``correction``, ``k``, ``radius``,
        ``certified_accuracy`` (correct and certified / labelled components) and ``certified_fraction``
        (certified / labelled components). Each point holds at level α on its own, not simultaneously
        across the grid. Combinations that n samples can never certify are left out.
    """
    tops = [np.asarray(c) for c in top_counts]
    classes = [np.asarray(c) for c in top_classes]
    targets = [np.asarray(t) for t in target]
    labelled = int(sum(int((t >= 0).sum()) for t in targets))
    m_max = max((len(c) for c in tops), default=1)
    out = []
    for kk in sorted(set(int(k) for k in ks)):
        for corr in corrections:
            corr, kk = check_correction(corr, kk)
            reach = stats.max_certifiable_tau(n, alpha, m_max, corr, kk)
            for tau in sorted(set(float(t) for t in taus)):
                if tau > reach:
                    continue
                cert_n = ok_n = 0
                for c, cls, t in zip(tops, classes, targets, strict=True):
                    rej = stats.fwer_reject(stats.binomial_pvalues(c, n, tau), alpha, corr, kk)
                    lab = t >= 0
                    cert_n += int((rej & lab).sum())
                    ok_n += int((rej & lab & (cls == t)).sum())
                out.append({"tau": tau, "correction": corr, "k": kk, "radius": certified_radius(sigma, tau),
                            "certified_accuracy": ok_n / labelled if labelled else None,
                            "certified_fraction": cert_n / labelled if labelled else None})
    return out
