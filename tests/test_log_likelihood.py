"""The importance-weighted log p(x) against a closed form.

A VaDE with a linear-Gaussian decoder, x | z ~ N(A z + b, sigma_x^2 I), has the marginal

    p(x) = sum_c pi_c N(x | A mu_c + b, A diag(sigma_c^2) A^T + sigma_x^2 I),

a Gaussian mixture computed here with scipy, independently of Pyro. The weights are set by hand;
the encoder is a deliberately imperfect proposal, so the bound at S = 1 is well below log p(x).
"""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from torch import nn

from pyro_mixvae.evaluation import evaluate, importance_log_likelihood
from pyro_mixvae.models import VaDE

D, J, K = 4, 2, 3
SIGMA_X = 0.5


class LinearDecoder(nn.Module):
    """z -> [A z + b; log sigma_x^2], the output layout of the Gaussian likelihood head."""

    def __init__(self, A, b):
        super().__init__()
        self.A, self.b = A, b

    def forward(self, z):
        loc = z @ self.A.T + self.b
        return torch.stack([loc, torch.full_like(loc, 2 * np.log(SIGMA_X))], -2)


class LinearEncoder(nn.Module):
    """q(z | x) = N(0.8 A^+ (x - b), 0.7^2 I): off-centre and too wide for every component."""

    def __init__(self, A, b):
        super().__init__()
        self.P, self.b = torch.linalg.pinv(A), b

    def forward(self, x):
        loc = 0.8 * (x - self.b) @ self.P.T
        return loc, torch.full_like(loc, 0.7)


@pytest.fixture(scope="module")
def linear_vade():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(D, J, generator=g)
    b = torch.randn(D, generator=g)
    model = VaDE((D,), K, "gaussian", latent_dim=J, hidden=(4,))
    model.encoder, model.decoder = LinearEncoder(A, b), LinearDecoder(A, b)
    with torch.no_grad():
        model.pi_logits.copy_(torch.tensor([0.0, 0.5, -0.5]))
        model.mu_c.copy_(torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]]))
        model.log_var_c.copy_(torch.log(torch.tensor([[0.3, 0.5], [0.2, 0.2], [0.6, 0.3]])))
    x = _draw(model, A, b, 40)
    return model, x, _closed_form(model, A, b, x)


def _draw(model, A, b, n):
    rng = np.random.default_rng(1)
    pi = torch.softmax(model.pi_logits, 0).detach().numpy()
    c = rng.choice(K, n, p=pi)
    loc, scale = model.mu_c.detach().numpy(), np.exp(0.5 * model.log_var_c.detach().numpy())
    z = loc[c] + scale[c] * rng.standard_normal((n, J))
    x = z @ A.numpy().T + b.numpy() + SIGMA_X * rng.standard_normal((n, D))
    return torch.as_tensor(x, dtype=torch.float32)


def _closed_form(model, A, b, x):
    """log p(x_n) of the Gaussian mixture, per point (scipy)."""
    A, b = A.numpy().astype(np.float64), b.numpy().astype(np.float64)
    log_pi = torch.log_softmax(model.pi_logits, 0).detach().numpy()
    loc, var = model.mu_c.detach().numpy(), np.exp(model.log_var_c.detach().numpy())
    parts = [log_pi[c] + multivariate_normal(A @ loc[c] + b, A @ np.diag(var[c]) @ A.T + SIGMA_X ** 2 * np.eye(D))
             .logpdf(x.numpy().astype(np.float64)) for c in range(K)]
    return logsumexp(np.stack(parts), axis=0)


def test_iw_estimate_rises_towards_the_closed_form(linear_vade):
    model, x, exact = linear_vade
    means, errors = {}, {}
    for S in (1, 10, 100, 10000):
        est = importance_log_likelihood(model, x, num_samples=S, seed=S, chunk=2000)
        assert est.pointwise.shape == (1, len(x)) and np.allclose(est.pointwise[0], est.marginal)
        means[S], errors[S] = est.marginal.mean(), est.summary()["log_likelihood_mc_se"]
        if S >= 100:  # a lower bound in expectation: never above the truth by more than its Monte-Carlo error
            assert np.all(est.marginal <= exact + 4 * est.mc_se + 1e-3), S
    # the mean over points rises with S (up to the Monte-Carlo error of the mean) to the closed form
    assert means[1] < means[10] - 1 < means[100] - 1.2
    assert means[100] < means[10000] + 3 * errors[100]
    assert means[10000] <= exact.mean() + 3 * errors[10000]
    assert exact.mean() - means[1] > 5  # the proposal is poor: the test can tell S = 1 from the truth
    assert abs(exact.mean() - means[10000]) < 0.02
    assert np.all(np.abs(est.marginal - exact) < 4 * est.mc_se + 0.02)


def test_mc_error_matches_the_spread_over_seeds(linear_vade):
    model, x, _ = linear_vade
    runs = [importance_log_likelihood(model, x[:10], num_samples=50, seed=s) for s in range(30)]
    spread = np.std([r.marginal for r in runs], axis=0)
    predicted = np.mean([r.mc_se for r in runs], axis=0)
    assert np.all(predicted < 3 * spread) and np.all(predicted > spread / 3)


def test_evaluate_reports_the_held_out_value_with_its_standard_errors(linear_vade):
    model, x, exact = linear_vade
    out = evaluate(model, x, iw_samples=500)
    assert abs(out["log_likelihood"] - exact.mean()) < 4 * out["log_likelihood_mc_se"] + 0.02
    assert out["log_likelihood_se"] == pytest.approx(exact.std(ddof=1) / np.sqrt(len(x)), rel=0.05)
    assert out["iw_samples"] == 500 and out["log_likelihood"] > out["elbo"]
