"""The VaDE loss computed by Pyro against independent plain-torch computations.

* the collapsed bound E_q[log p(x|z) + log sum_c pi_c N(z|mu_c, sigma_c^2) - log q(z|x)],
  written out by hand, agrees with ``TraceEnum_ELBO`` on average over draws;
* it is never below the paper's mean-field bound (vade.txt eq. 12 with gamma from eq. 16)
  beyond Monte Carlo error (eq. 15: they differ by E_q KL(q(c|x) || p(c|z)) >= 0).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from pyro.infer import TraceEnum_ELBO

from pyro_mixvae.models import VaDE

DRAWS = 4000


def _model(likelihood, seed=0):
    torch.manual_seed(seed)
    m = VaDE((6,), 3, likelihood, hidden=(16,), latent_dim=2)
    with torch.no_grad():  # well separated, unequal components so that the bounds differ
        m.mu_c.copy_(torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]]))
        m.log_var_c.copy_(torch.log(torch.tensor([[0.5, 1.0], [1.0, 0.3], [2.0, 0.7]])))
        m.pi_logits.copy_(torch.log(torch.tensor([0.5, 0.3, 0.2])))
        if m.decoder.log_var is not None:  # gaussian-shared: unequal variances per value
            m.decoder.log_var.copy_(torch.linspace(-1.0, 1.0, 6))
    return m.eval()


def _data(likelihood):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 6, generator=g)
    return x if likelihood == "bernoulli" else 3 * x - 1


def _log_lik(m, x, z):
    """log p(x | z) written out: binary cross-entropy, or the Gaussian density with the decoder's
    variance (from the network, or its one parameter per value for gaussian-shared)."""
    if m.likelihood_name == "gaussian-shared":
        loc = m.decoder.body(z.reshape(-1, z.shape[-1])).reshape(z.shape[:-1] + x.shape[-1:])
        log_var = m.decoder.log_var.clamp(-10, 10)
        return (-0.5 * (math.log(2 * math.pi) + log_var + (x - loc) ** 2 / log_var.exp())).sum(-1)
    out = m.decoder(z)
    if m.likelihood_name == "bernoulli":
        return (x * F.logsigmoid(out) + (1 - x) * F.logsigmoid(-out)).sum(-1)
    loc, log_var = out[..., 0, :], out[..., 1, :].clamp(-10, 10)
    return (-0.5 * (math.log(2 * math.pi) + log_var + (x - loc) ** 2 / log_var.exp())).sum(-1)


def _log_normal(z, loc, var):
    return (-0.5 * (math.log(2 * math.pi) + torch.log(var) + (z - loc) ** 2 / var)).sum(-1)


@torch.no_grad()
def _torch_collapsed(m, x, draws):
    """Per-point draws of log p(x|z) + log sum_c pi_c N(z|mu_c, sigma_c^2) - log q(z|x), z ~ q."""
    loc, scale = m.encoder(x)
    z = loc + scale * torch.randn((draws,) + loc.shape)
    pi = torch.softmax(m.pi_logits, -1)
    mix = torch.logsumexp(torch.log(pi) + _log_normal(z[..., None, :], m.mu_c, m.log_var_c.exp()), -1)
    return _log_lik(m, x, z) + mix - _log_normal(z, loc, scale ** 2)


@torch.no_grad()
def _eq12(m, x, draws):
    """VaDE eq. 12 per point, gamma from eq. 16 at the encoder mean; the reconstruction by Monte Carlo."""
    mu_t, scale = m.encoder(x)
    var_t = scale ** 2
    pi = torch.softmax(m.pi_logits, -1)
    var_c = m.log_var_c.exp()
    log_gamma = torch.log(pi) + _log_normal(mu_t[:, None, :], m.mu_c, var_c)
    gamma = torch.softmax(log_gamma, -1)
    recon = _log_lik(m, x, mu_t + scale * torch.randn((draws,) + mu_t.shape))
    quad = (torch.log(var_c) + var_t[:, None, :] / var_c + (mu_t[:, None, :] - m.mu_c) ** 2 / var_c).sum(-1)
    return (recon.mean(0) - 0.5 * (gamma * quad).sum(-1) + (gamma * torch.log(pi / gamma)).sum(-1)
            + 0.5 * (1 + torch.log(var_t)).sum(-1)), recon.std(0) / math.sqrt(draws)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-shared"])
def test_pyro_loss_matches_plain_torch_collapsed_bound(likelihood):
    m, x = _model(likelihood), _data(likelihood)
    torch.manual_seed(2)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro_draws = torch.tensor([-elbo.loss(m.model, m.guide, x) for _ in range(DRAWS // 8)])
    ours = _torch_collapsed(m, x, DRAWS).sum(-1)  # summed over the 5 points, like Pyro's loss
    diff = pyro_draws.mean() - ours.mean()
    se = math.sqrt(pyro_draws.var() / len(pyro_draws) + ours.var() / len(ours))
    assert abs(diff) < 4 * se + 1e-4, (float(diff), se)


def test_minibatch_scaling_is_n_over_b():
    m, x = _model("bernoulli"), _data("bernoulli")
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    torch.manual_seed(3)
    full = elbo.differentiable_loss(m.model, m.guide, x)
    torch.manual_seed(3)
    scaled = elbo.differentiable_loss(m.model, m.guide, x, 50)
    assert torch.allclose(scaled, full * 50 / len(x))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_collapsed_bound_never_below_mean_field_bound(likelihood):
    m, x = _model(likelihood), _data(likelihood)
    torch.manual_seed(4)
    collapsed = _torch_collapsed(m, x, DRAWS)
    mf, mf_se = _eq12(m, x, DRAWS)
    se = torch.sqrt(collapsed.var(0) / DRAWS + mf_se ** 2)
    assert torch.all(collapsed.mean(0) >= mf - 4 * se), (collapsed.mean(0), mf, se)
    # and the Pyro loss, per point, obeys the same ordering
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=DRAWS, vectorize_particles=True)
    pyro_total = -elbo.loss(m.model, m.guide, x)
    assert pyro_total >= mf.sum() - 4 * float(se.pow(2).sum().sqrt())
