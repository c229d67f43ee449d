"""certify(): the guarantee, tested as a guarantee with oracle base models of known probabilities."""

import numpy as np
import pytest
import torch
from scipy.stats import binom

from geocert.certify import ABSTAIN, certify, certify_from_counts, predict
from geocert.errors import ParameterError
from geocert.smoothing import sample_counts


def oracle(probs: torch.Tensor, sigma: float):
    """A base model over x = zeros([m]) whose component i outputs class c with probability probs[i, c].

    It reads its own noise: u_i = Φ(ε_i / σ) is uniform, and the label is the class whose cumulative
    probability interval contains u_i. So the true top-class probabilities are exactly known, and the test
    also fails if samples in a batch share a noise draw.
    """
    cum = probs.cumsum(-1)

    def f(batch):
        u = 0.5 * torch.erfc(-batch / (sigma * 2**0.5))  # Φ(ε/σ), [B, m]
        return (u.unsqueeze(-1) > cum).sum(-1).clamp(max=probs.shape[-1] - 1)

    return f


TAU = 0.75
# per-component class probabilities: true top class 0 unless noted
PROBS = torch.tensor(
    [[0.74, 0.26, 0.0]] * 10        # just below τ: certifying class 0 here is a false certificate
    + [[0.75, 0.25, 0.0]] * 10      # exactly τ: H0 holds, so a certificate is false
    + [[0.60, 0.40, 0.0]] * 5
    + [[0.40, 0.45, 0.15]] * 5      # top class 1 with p ≤ τ: any certificate is false
    + [[0.98, 0.02, 0.0]] * 10      # clearly above τ: should be certified
    + [[0.01, 0.90, 0.09]] * 10,    # top class 1 above τ
    dtype=torch.float64,
)


def false_certificates(cert, probs, tau):
    lab = cert.labels
    ok = lab != ABSTAIN
    p_of_label = probs.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return int((ok & (p_of_label <= tau)).sum())


def run_trials(correction, k, trials, alpha, n=100, n0=5, end_to_end=False):
    """Certify ``trials`` independent inputs; returns false certificates and certified counts per trial.

    The fast path samples all trials at once (x = zeros([trials, m]), the oracle is per component) and runs
    the statistics per trial; ``end_to_end`` calls :func:`certify` once per trial instead."""
    sigma = 0.5
    f = oracle(PROBS, sigma)
    m = PROBS.shape[0]
    g = torch.Generator().manual_seed(1234 + k)
    kw = dict(sigma=sigma, tau=TAU, alpha=alpha, correction=correction, k=k)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread wake-ups would dominate
    try:
        certs = _certs(f, m, g, n0, n, trials, kw, end_to_end)
    finally:
        torch.set_num_threads(threads)
    falses = np.array([false_certificates(cert, PROBS, TAU) for cert in certs])
    certified = np.array([cert.num_certified for cert in certs])
    return falses, certified


def _certs(f, m, g, n0, n, trials, kw, end_to_end):
    sigma = kw["sigma"]
    if end_to_end:
        certs = [certify(f, torch.zeros(m, dtype=torch.float64), num_classes=3, n0=n0, n=n, batch_size=50,
                         generator=g, **kw) for _ in range(trials)]
    else:
        x = torch.zeros(trials, m, dtype=torch.float64)
        c0 = sample_counts(f, x, sigma=sigma, n=n0, num_classes=3, batch_size=n0, generator=g)
        c = sample_counts(f, x, sigma=sigma, n=n, num_classes=3, batch_size=50, generator=g)
        certs = [certify_from_counts(c0[t], c[t], **kw) for t in range(trials)]
    return certs


def within_alpha(bad_trials: int, trials: int, alpha: float) -> bool:
    # the number of bad trials is Bin(trials, q) with q ≤ α; reject q ≤ α only at the 1e-4 level
    return bad_trials <= binom.ppf(1 - 1e-4, trials, alpha)


@pytest.mark.parametrize("correction", ["bonferroni", "holm"])
def test_fwer_guarantee_holds_over_seeded_trials(correction):
    alpha, trials = 0.05, 2000
    falses, certified = run_trials(correction, 1, trials, alpha)
    assert within_alpha(int((falses >= 1).sum()), trials, alpha)
    assert certified.mean() > 15  # and it is not vacuous: the 20 clear components are mostly certified


def test_fwer_guarantee_end_to_end_through_certify():
    alpha, trials = 0.05, 2000
    falses, certified = run_trials("holm", 1, trials, alpha, end_to_end=True)
    assert within_alpha(int((falses >= 1).sum()), trials, alpha)
    assert certified.mean() > 15


def test_k_fwer_guarantee_holds_over_seeded_trials():
    alpha, trials, k = 0.05, 2000, 3
    falses, _ = run_trials("holm", k, trials, alpha)
    assert within_alpha(int((falses >= k).sum()), trials, alpha)


def test_uncorrected_testing_breaks_fwer():
    # the same harness must be able to fail: without correction, false certificates are frequent
    alpha, trials = 0.05, 300
    falses, _ = run_trials("none", 1, trials, alpha)
    assert (falses >= 1).mean() > 3 * alpha


def test_noise_differs_between_samples_of_a_batch():
    seen = []

    def spy(batch):
        seen.append(batch.clone())
        return torch.zeros(batch.shape[:2], dtype=torch.long)

    sample_counts(spy, torch.zeros(4, 3), sigma=1.0, n=20, num_classes=2, batch_size=8,
                  generator=torch.Generator().manual_seed(0))
    allb = torch.cat(seen)
    assert allb.shape == (20, 4, 3)
    flat = allb.reshape(20, -1)
    dists = torch.cdist(flat, flat) + torch.eye(20) * 1e9
    assert dists.min() > 0.1
    assert abs(float(allb.std()) - 1.0) < 0.15


def test_trial_count_equals_samples_counted():
    calls = []

    def spy(batch):
        calls.append(batch.shape[0])
        return (batch[..., 0] > 0).long()

    x = torch.tensor([[3.0], [-3.0], [0.0]])
    cert = certify(spy, x, num_classes=2, sigma=1.0, n0=7, n=93, tau=0.6, alpha=0.01, batch_size=10,
                   generator=torch.Generator().manual_seed(1))
    assert sum(calls) == 7 + 93
    assert cert.n == 93 and cert.n0 == 7
    # the p-values are those of exactly n trials
    from geocert.stats import binomial_pvalues
    np.testing.assert_allclose(cert.pvalues.numpy(), binomial_pvalues(cert.counts.numpy(), 93, 0.6))
    assert cert.labels[0] == 1 and cert.labels[1] == 0


def test_counts_stream_and_match_reference():
    from geocert.smoothing import sample_counts_reference

    f = oracle(PROBS[:12], 1.0)
    seen = []

    def spy(batch):
        seen.append(batch.clone())
        return f(batch)

    x = torch.zeros(12, dtype=torch.float64)
    a = sample_counts(spy, x, sigma=1.0, n=37, num_classes=3, batch_size=5, generator=torch.Generator().manual_seed(9))
    b = sample_counts_reference(f, torch.cat(seen), num_classes=3)
    assert a.dtype == torch.int64 and a.shape == (12, 3)
    assert torch.equal(a.sum(-1), torch.full((12,), 37))
    assert torch.equal(a, b)


def test_seeded_runs_are_reproducible():
    f = oracle(PROBS, 0.5)
    x = torch.zeros(PROBS.shape[0], dtype=torch.float64)
    kw = dict(num_classes=3, sigma=0.5, n0=5, n=100, tau=TAU, alpha=0.01)
    a = certify(f, x, generator=torch.Generator().manual_seed(5), **kw)
    b = certify(f, x, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.counts, b.counts)


def test_radius_and_cohen_radius():
    f = oracle(PROBS, 0.5)
    x = torch.zeros(PROBS.shape[0], dtype=torch.float64)
    cert = certify(f, x, num_classes=3, sigma=0.5, n0=5, n=2000, tau=TAU, alpha=0.01,
                   generator=torch.Generator().manual_seed(3))
    assert cert.radius == pytest.approx(0.5 * 0.6744897501960817)
    r = cert.cohen_radius()
    assert torch.all(r[cert.abstain] == 0)
    # lower bounds are valid: below the true top-class probability (0.98 → radius ≤ σΦ⁻¹(0.98))
    assert torch.all(r[30:40] <= 0.5 * 2.0537489)
    assert torch.all(r[30:40] > cert.radius)


@pytest.mark.parametrize("kw,match", [
    (dict(sigma=0.0), "sigma"), (dict(sigma=-1.0), "sigma"), (dict(tau=0.4), "tau"), (dict(tau=1.0), "tau"),
    (dict(alpha=0.0), "alpha"), (dict(alpha=1.0), "alpha"), (dict(n0=20, n=10), "n0"),
    (dict(correction="fdr"), "correction"), (dict(tau=0.99, n=100), "never be certified"),
])
def test_bad_parameters_raise_one_clear_error(kw, match):
    base = dict(num_classes=2, sigma=1.0, n0=5, n=100, tau=0.75, alpha=0.01)
    base.update(kw)
    with pytest.raises(ParameterError, match=match):
        certify(lambda b: (b[..., 0] > 0).long(), torch.zeros(3, 1), **base)


def test_certify_from_counts_rejects_unequal_totals():
    c0 = torch.tensor([[5, 0], [0, 5]])
    c = torch.tensor([[90, 10], [10, 80]])
    with pytest.raises(ValueError, match="same number"):
        certify_from_counts(c0, c, sigma=1.0, tau=0.75, alpha=0.01)


def test_model_output_is_checked():
    with pytest.raises(ValueError, match="outside"):
        sample_counts(lambda b: torch.full(b.shape[:1] + (3,), 5), torch.zeros(3), sigma=1.0, n=4, num_classes=2)
    with pytest.raises(TypeError, match="integer"):
        sample_counts(lambda b: b, torch.zeros(3), sigma=1.0, n=4, num_classes=2)


def test_predict_abstains_on_ties_and_answers_clear_cases():
    probs = torch.tensor([[0.5, 0.5], [0.99, 0.01]], dtype=torch.float64)
    out = predict(oracle(probs, 1.0), torch.zeros(2, dtype=torch.float64), num_classes=2, sigma=1.0, n=500,
                  alpha=0.001, generator=torch.Generator().manual_seed(0))
    assert out.tolist() == [ABSTAIN, 0]
