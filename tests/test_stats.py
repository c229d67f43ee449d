"""geocert.stats against naive references, SciPy and statsmodels."""


import numpy as np
import pytest
from scipy.stats import beta, binomtest
from statsmodels.stats.multitest import multipletests

from geocert import stats
from geocert.errors import ParameterError


@pytest.fixture
def kn():
    rng = np.random.default_rng(1)
    n = rng.integers(1, 300, size=200)
    k = rng.integers(0, n + 1)
    return k, n


def test_clopper_pearson_matches_scipy_beta(kn):
    k, n = kn
    lo = stats.clopper_pearson_lower(k, n, 0.01)
    hi = stats.clopper_pearson_upper(k, n, 0.01)
    for i in range(len(k)):
        ref_lo = 0.0 if k[i] == 0 else beta.ppf(0.01, k[i], n[i] - k[i] + 1)
        ref_hi = 1.0 if k[i] == n[i] else beta.ppf(0.99, k[i] + 1, n[i] - k[i])
        assert lo[i] == pytest.approx(ref_lo, abs=1e-10)
        assert hi[i] == pytest.approx(ref_hi, abs=1e-10)
    assert np.all(lo <= k / n) and np.all(hi >= k / n)


def test_binomial_pvalues_match_binomtest(kn):
    k, n = kn
    pv = stats.binomial_pvalues(k, n, 0.75)
    for i in range(len(k)):
        ref = binomtest(int(k[i]), int(n[i]), 0.75, alternative="greater").pvalue
        assert pv[i] == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_clopper_pearson_covers_at_nominal_rate():
    rng = np.random.default_rng(2)
    p, n, alpha = 0.83, 50, 0.05
    k = rng.binomial(n, p, size=20000)
    miss = np.mean(stats.clopper_pearson_lower(k, n, alpha) > p)
    assert miss <= alpha  # exact bounds are conservative


def test_rejects_bad_counts():
    with pytest.raises(ValueError):
        stats.binomial_pvalues(5, 4, 0.5)


@pytest.mark.parametrize("method", ["bonferroni", "holm"])
def test_fwer_matches_statsmodels(method):
    rng = np.random.default_rng(3)
    p = rng.uniform(size=5000) ** 4
    ours = stats.fwer_reject(p, 0.05, method)
    ref = multipletests(p, 0.05, method=method)[0]
    assert 0 < ours.sum() < len(p)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("method", ["none", "bonferroni", "holm"])
@pytest.mark.parametrize("k", [1, 2, 5, 40])
def test_fwer_matches_reference(method, k):
    rng = np.random.default_rng(4 + k)
    p = rng.uniform(size=(30, 20)) ** 6
    ours = stats.fwer_reject(p, 0.05, method, k=k)
    assert ours.shape == p.shape
    np.testing.assert_array_equal(ours.reshape(-1), stats.fwer_reject_reference(p, 0.05, method, k=k))


def test_holm_dominates_bonferroni_and_k_relaxes():
    rng = np.random.default_rng(5)
    p = rng.uniform(size=10000) ** 8
    bonf = stats.fwer_reject(p, 0.01, "bonferroni")
    holm = stats.fwer_reject(p, 0.01, "holm")
    holm5 = stats.fwer_reject(p, 0.01, "holm", k=5)
    assert np.all(holm >= bonf) and holm.sum() > bonf.sum()
    assert np.all(holm5 >= holm) and holm5.sum() > holm.sum()


def test_fwer_bad_method():
    with pytest.raises(ParameterError):
        stats.fwer_reject([0.1], 0.05, "bh")
    with pytest.raises(ParameterError):
        stats.fwer_reject([0.1], 0.05, "holm", k=0)


@pytest.mark.parametrize("method,m", [("none", 1), ("bonferroni", 1000), ("holm", 10**6)])
def test_max_certifiable_tau_is_tight(method, m):
    n, alpha = 100, 0.001
    tmax = stats.max_certifiable_tau(n, alpha, m, method)
    thr = alpha if method == "none" else alpha / m
    assert tmax == pytest.approx(thr ** (1 / n))
    # all n samples agree: certifiable just below tmax, never just above
    assert stats.binomial_pvalues(n, n, tmax * 0.999) <= thr
    assert stats.binomial_pvalues(n, n, min(tmax * 1.001, 0.999999)) > thr
    assert 0.5 < tmax < 1


def test_holm_two_million_components_vectorized():
    k = np.random.default_rng(6).binomial(100, 0.9, size=2_097_152)
    rej = stats.fwer_reject(stats.binomial_pvalues(k, 100, 0.75), 0.001, "holm")
    assert rej.shape == k.shape and 0 < rej.mean() < 1
    # every component certified by Holm has a p-value no larger than any uncertified one
    pv = stats.binomial_pvalues(k, 100, 0.75)
    assert pv[rej].max() <= pv[~rej].min()
