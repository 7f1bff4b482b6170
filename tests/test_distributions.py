"""NormalGamma and the closed forms of factorial-mixture-prior.txt, against independent computations.

Reference values come from scipy's densities, numpy's samplers and Monte Carlo averages
(checked within 4 standard errors), never from the code under test.
"""
import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import digamma

from pyro_mixvae.distributions import (NormalGamma, dirichlet_expected_log, expected_log_normal, expected_statistics,
                                       kl_normal_gamma, mean_to_natural, natural_to_mean, student_t_predictive)

T = torch.float64


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=T)


def _params(rng, shape, a_low=0.5):
    return (rng.normal(0, 2, shape), rng.uniform(0.2, 5, shape), rng.uniform(a_low, 6, shape),
            rng.uniform(0.1, 4, shape))


def _scipy_log_prob(mu, alpha, m, s, a, b):
    """log N(mu; m, (s alpha)^-1) + log Gamma(alpha; shape a, rate b)."""
    return stats.norm.logpdf(mu, m, 1.0 / np.sqrt(s * alpha)) + stats.gamma.logpdf(alpha, a, scale=1.0 / b)


def _numpy_draws(rng, n, m, s, a, b):
    """(n,) + shape draws of (mu, alpha) ~ NormalGamma by numpy, independently of the torch code."""
    shape = (n,) + np.shape(m)
    alpha = rng.gamma(a, 1.0 / b, size=shape)
    mu = rng.normal(m, 1.0 / np.sqrt(s * alpha), size=shape)
    return mu, alpha


def _within(samples, value, k=4.0):
    """Monte Carlo mean over axis 0 within k standard errors of ``value`` (elementwise)."""
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    assert np.all(np.abs(mean - value) <= k * se + 1e-12), (mean, value, se)


def test_log_prob_matches_scipy_batched():
    rng = np.random.default_rng(0)
    m, s, a, b = _params(rng, (3, 4))
    mu = rng.normal(0, 2, (5, 3, 4))
    alpha = rng.gamma(2.0, 1.0, (5, 3, 4))
    ng = NormalGamma(_t(m), _t(s), _t(a), _t(b))
    assert ng.batch_shape == (3, 4) and ng.event_shape == (2,)
    value = torch.stack([_t(mu), _t(alpha)], dim=-1)                 # layout: (..., 2) = (mu, alpha)
    got = ng.log_prob(value)
    assert got.shape == (5, 3, 4)
    np.testing.assert_allclose(got.numpy(), _scipy_log_prob(mu, alpha, m, s, a, b), rtol=1e-10, atol=1e-10)


def test_parameters_broadcast_and_expand():
    ng = NormalGamma(torch.zeros(3, 1, dtype=T), torch.ones(4, dtype=T), 2.0, torch.tensor(1.0, dtype=T))
    assert ng.batch_shape == (3, 4)
    assert ng.sample((7,)).shape == (7, 3, 4, 2)
    big = ng.expand((2, 3, 4))
    assert big.batch_shape == (2, 3, 4) and big.rsample().shape == (2, 3, 4, 2)


def test_invalid_arguments_and_values_are_refused():
    with pytest.raises(ValueError):
        NormalGamma(0.0, -1.0, 1.0, 1.0, validate_args=True)
    ng = NormalGamma(_t([0.0]), _t([1.0]), _t([1.0]), _t([1.0]), validate_args=True)
    with pytest.raises(ValueError):
        ng.log_prob(_t([[0.0, -1.0]]))                               # alpha must be > 0


def test_natural_parameters_are_those_of_the_exponential_family():
    """log q(mu, alpha) - lambda . t(mu, alpha) is the same constant for every (mu, alpha) (eq. 12)."""
    rng = np.random.default_rng(1)
    m, s, a, b = _params(rng, (6,))
    lam = mean_to_natural(_t(m), _t(s), _t(a), _t(b)).numpy()
    mu, alpha = rng.normal(0, 3, (50, 6)), rng.gamma(1.5, 1.0, (50, 6))
    t = np.stack([np.log(alpha), alpha, alpha * mu, alpha * mu ** 2], -1)
    const = _scipy_log_prob(mu, alpha, m, s, a, b) - (lam * t).sum(-1)
    np.testing.assert_allclose(const, np.broadcast_to(const[:1], const.shape), rtol=1e-9, atol=1e-9)


def test_natural_mean_round_trip():
    rng = np.random.default_rng(2)
    m, s, a, b = (_t(p) for p in _params(rng, (4, 5)))
    back = natural_to_mean(mean_to_natural(m, s, a, b))
    for x, y in zip(back, (m, s, a, b)):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    lam = mean_to_natural(m, s, a, b)
    torch.testing.assert_close(NormalGamma.from_natural(lam).natural_params, lam, rtol=1e-12, atol=1e-12)


def test_expected_statistics_and_sampling_against_monte_carlo():
    rng = np.random.default_rng(3)
    m, s, a, b = np.array([0.5, -1.0]), np.array([2.0, 0.7]), np.array([3.0, 1.5]), np.array([1.5, 0.4])
    mu, alpha = _numpy_draws(rng, 200_000, m, s, a, b)
    t = np.stack([np.log(alpha), alpha, alpha * mu, alpha * mu ** 2], -1)
    _within(t, expected_statistics(_t(m), _t(s), _t(a), _t(b)).numpy())
    # the distribution's own sampler: mean (m, a/b), variance (b/(s(a-1)), a/b^2)
    torch.manual_seed(0)
    ng = NormalGamma(_t(m), _t(s), _t(a), _t(b))
    draws = ng.sample((200_000,)).numpy()
    _within(draws, np.stack([m, a / b], -1))
    _within((draws - np.stack([m, a / b], -1)) ** 2, ng.variance.numpy())
    # entropy = -E[log q], with log q from scipy
    _within(-_scipy_log_prob(mu, alpha, m, s, a, b), ng.entropy().numpy())


def test_rsample_is_reparameterised():
    params = [torch.tensor([0.3, 1.0], dtype=T, requires_grad=True) for _ in range(4)]
    m, s, a, b = params
    value = NormalGamma(m, s + 0.5, a + 1.0, b + 0.5).rsample((16,))
    value.sum().backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and (p.grad != 0).any()


@pytest.mark.parametrize("prior", [(0.0, 1.0, 0.01, 0.01), (0.4, 2.5, 1.7, 0.6)])
def test_kl_against_monte_carlo(prior):
    rng = np.random.default_rng(4)
    m, s = np.array([0.8, -0.5, 2.0]), np.array([3.0, 0.5, 10.0])
    a, b = np.array([2.5, 0.9, 30.0]), np.array([1.0, 0.3, 12.0])
    m0, s0, a0, b0 = prior
    mu, alpha = _numpy_draws(rng, 400_000, m, s, a, b)
    log_ratio = _scipy_log_prob(mu, alpha, m, s, a, b) - _scipy_log_prob(mu, alpha, m0, s0, a0, b0)
    q = NormalGamma(_t(m), _t(s), _t(a), _t(b))
    p = NormalGamma(*(_t(np.full(3, v)) for v in prior))
    kl = kl_normal_gamma(q, p)
    _within(log_ratio, kl.numpy())
    torch.testing.assert_close(torch.distributions.kl_divergence(q, p), kl)   # registered with torch
    torch.testing.assert_close(kl_normal_gamma(q, q), torch.zeros(3, dtype=T), rtol=0, atol=1e-12)


def test_expected_log_normal_eq6_against_monte_carlo():
    """E over q(mu, alpha) and q(z) = N(z_loc, z_var) of log N(z; mu, alpha^-1) (eq. 6)."""
    rng = np.random.default_rng(5)
    m, s = np.array([0.2, -1.0, 3.0]), np.array([1.5, 0.4, 8.0])
    a, b = np.array([2.0, 4.0, 1.2]), np.array([0.7, 3.0, 0.5])
    z_loc, z_var = np.array([1.0, -0.5, 2.5]), np.array([0.3, 2.0, 0.05])
    n = 400_000
    mu, alpha = _numpy_draws(rng, n, m, s, a, b)
    z = rng.normal(z_loc, np.sqrt(z_var), size=(n, 3))
    samples = stats.norm.logpdf(z, mu, 1.0 / np.sqrt(alpha))
    got = expected_log_normal(NormalGamma(_t(m), _t(s), _t(a), _t(b)), _t(z_loc), _t(z_var))
    _within(samples, got.numpy())
    # broadcasting (N, 1, D) against (K, D) gives (N, K, D), nothing summed
    ng = NormalGamma(_t(np.zeros((4, 3))), 1.0, 2.0, 1.0)
    assert expected_log_normal(ng, _t(np.zeros((5, 1, 3))), _t(np.ones((5, 1, 3)))).shape == (5, 4, 3)


def test_student_t_eq10_against_ancestral_sampling():
    """(mu, alpha) ~ q, then z ~ N(mu, 1/alpha): moments and distribution of z are those of eq. 10's Student-t."""
    rng = np.random.default_rng(6)
    m, s, a, b = np.array([1.0, -2.0]), np.array([0.5, 4.0]), np.array([4.0, 6.0]), np.array([2.0, 0.5])
    n = 400_000
    mu, alpha = _numpy_draws(rng, n, m, s, a, b)
    z = rng.normal(mu, 1.0 / np.sqrt(alpha))
    t = student_t_predictive(NormalGamma(_t(m), _t(s), _t(a), _t(b)))
    np.testing.assert_allclose(t.df.numpy(), 2 * a)
    _within(z, t.mean.numpy())
    _within((z - t.mean.numpy()) ** 2, t.variance.numpy())
    for d in range(2):   # and the whole distribution: Kolmogorov-Smirnov on a subsample
        pvalue = stats.kstest(z[:20_000, d], stats.t(float(t.df[d]), float(t.loc[d]), float(t.scale[d])).cdf).pvalue
        assert pvalue > 1e-3, pvalue


def test_dirichlet_expected_log_against_digamma_and_monte_carlo():
    rng = np.random.default_rng(7)
    c = np.array([[0.7, 2.0, 5.0], [3.0, 3.0, 0.4]])
    got = dirichlet_expected_log(_t(c)).numpy()
    np.testing.assert_allclose(got, digamma(c) - digamma(c.sum(-1, keepdims=True)), rtol=1e-12)
    _within(np.log(rng.dirichlet(c[0], size=200_000)), got[0])
