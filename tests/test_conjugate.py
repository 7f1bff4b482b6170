"""Conjugate natural-gradient updates (factorial-mixture-prior.txt eq. 5-7, 13-14, App. C-D).

The references are written here in numpy from the standard variational Bayes treatment of a
Gaussian mixture (Bishop, PRML Sect. 10.2), adapted to a diagonal Normal-Gamma per dimension
and to inputs known only through q(z_n) = N(z_loc_n, diag z_var_n):

* responsibilities (PRML 10.46, 10.64-10.66): log rho_nk = E[log pi_k] + 1/2 E[log |Lambda_k|]
  - D/2 log 2pi - 1/2 E[(z - mu_k)^T Lambda_k (z - mu_k)], the last being
  sum_d (1/s_kd + a_kd/b_kd ((z_loc_nd - m_kd)^2 + z_var_nd));
* global update (PRML 10.51-10.63, per dimension): N_k, the weighted mean zbar_k and scatter
  S_k (with the input variances added), s = s0 + N_k, m = (s0 m0 + N_k zbar_k)/s, a = a0 + N_k/2,
  b = b0 + (N_k S_k + s0 N_k/(s0 + N_k) (zbar_k - m0)^2)/2, c = c0 + N_k;
* the bound (PRML 10.70-10.77): E[log p(Z, R, xi)] - E[log q(R) q(xi)] + H[q(Z)], each
  expectation written out from the densities.
"""
import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, gammaln

from pyro_mixvae.errors import ConfigError
from pyro_mixvae.infer.conjugate import (ConjugateMixture, MixtureStats, step_size, sufficient_statistics)

T = torch.float64
LOG_2PI = math.log(2 * math.pi)
PRIORS = {"paper": dict(m0=0.0, s0=1.0, a0=0.01, b0=0.01, c0=1.0),
          "other": dict(m0=0.3, s0=2.0, a0=1.5, b0=0.7, c0=0.5)}


# -- references, numpy ---------------------------------------------------------------------------------
def data(n=60, d=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-3.0, 0.0], [2.0, 2.5], [2.0, -2.0]])[:, :d]
    y = np.arange(n) % len(centres)
    z_loc = centres[y] + 0.7 * rng.standard_normal((n, d))
    z_var = rng.uniform(0.01, 0.3, (n, d))
    return z_loc, z_var


def params(mix):
    return {k: getattr(mix, k).detach().numpy().copy() for k in ("m", "s", "a", "b", "c")}


def e_log_pi(c):
    return digamma(c) - digamma(c.sum())


def vb_responsibilities(q, z_loc, z_var):
    e_log_det = (digamma(q["a"]) - np.log(q["b"])).sum(-1)                                   # (K,)
    e_quad = (1.0 / q["s"] + q["a"] / q["b"] * ((z_loc[:, None] - q["m"]) ** 2 + z_var[:, None])).sum(-1)
    log_rho = e_log_pi(q["c"]) + 0.5 * e_log_det - 0.5 * z_loc.shape[1] * LOG_2PI - 0.5 * e_quad
    log_rho -= log_rho.max(1, keepdims=True)
    r = np.exp(log_rho)
    return r / r.sum(1, keepdims=True)


def vb_update(gamma, z_loc, z_var, prior):
    m0, s0, a0, b0, c0 = (prior[k] for k in ("m0", "s0", "a0", "b0", "c0"))
    n_k = gamma.sum(0)                                                                        # (K,)
    zbar = gamma.T @ z_loc / n_k[:, None]                                                     # (K, D)
    scatter = (gamma[:, :, None] * ((z_loc[:, None] - zbar) ** 2 + z_var[:, None])).sum(0) / n_k[:, None]
    nk = np.broadcast_to(n_k[:, None], zbar.shape)                                          # (K, D)
    s = s0 + nk
    m = (s0 * m0 + nk * zbar) / s
    a = a0 + 0.5 * nk
    b = b0 + 0.5 * (nk * scatter + s0 * nk / (s0 + nk) * (zbar - m0) ** 2)
    return {"m": m, "s": s, "a": a, "b": b, "c": c0 + n_k}


def log_normal_gamma_expectation(q, m0, s0, a0, b0):
    """E_q[log NormalGamma(mu, alpha; m0, s0, a0, b0)] per (k, d), from the density's terms."""
    e_log_alpha, e_alpha = digamma(q["a"]) - np.log(q["b"]), q["a"] / q["b"]
    e_alpha_sq = 1.0 / q["s"] + e_alpha * (q["m"] - m0) ** 2                                 # E[alpha (mu - m0)^2]
    return (a0 * np.log(b0) - gammaln(a0) + (a0 - 1) * e_log_alpha - b0 * e_alpha
            + 0.5 * (np.log(s0) - LOG_2PI + e_log_alpha) - 0.5 * s0 * e_alpha_sq)


def log_dirichlet_expectation(c_q, c_p):
    """E_{Dir(c_q)}[log Dir(pi; c_p)]."""
    c_p = np.broadcast_to(c_p, c_q.shape)
    return gammaln(c_p.sum()) - gammaln(c_p).sum() + ((c_p - 1) * e_log_pi(c_q)).sum()


def vb_bound(gamma, q, z_loc, z_var, prior):
    """L(q(R), q(xi)) of the GMM with Gaussian-uncertain inputs, all terms written out (PRML 10.70-10.77)."""
    e_log_alpha, e_alpha = digamma(q["a"]) - np.log(q["b"]), q["a"] / q["b"]
    e_quad = 1.0 / q["s"] + e_alpha * ((z_loc[:, None] - q["m"]) ** 2 + z_var[:, None])     # (N, K, D)
    log_lik = (gamma * (0.5 * (e_log_alpha - LOG_2PI - e_quad)).sum(-1)).sum()
    log_r = (gamma * e_log_pi(q["c"])).sum()
    log_p_pi = log_dirichlet_expectation(q["c"], prior["c0"])
    log_p_ng = log_normal_gamma_expectation(q, *(prior[k] for k in ("m0", "s0", "a0", "b0"))).sum()
    ent_r = -(gamma * np.log(np.where(gamma > 0, gamma, 1.0))).sum()
    ent_pi = -log_dirichlet_expectation(q["c"], q["c"])
    ent_ng = -(log_normal_gamma_expectation(q, q["m"], q["s"], q["a"], q["b"])).sum()
    ent_z = 0.5 * (LOG_2PI + np.log(z_var) + 1.0).sum()
    return log_lik + log_r + log_p_pi + log_p_ng + ent_r + ent_pi + ent_ng + ent_z


def natural(q):
    """eq. 12, written here: [a - 1/2, -(b + s m^2/2), s m, -s/2]."""
    return np.stack([q["a"] - 0.5, -(q["b"] + 0.5 * q["s"] * q["m"] ** 2), q["s"] * q["m"], -0.5 * q["s"]], -1)


def assert_params(mix, ref, rtol=1e-9):
    got = params(mix)
    for k in ("m", "s", "a", "b", "c"):
        np.testing.assert_allclose(got[k], np.broadcast_to(ref[k], got[k].shape), rtol=rtol, atol=1e-10, err_msg=k)


def make(prior="paper", k=4, d=2, seed=0, **kw):
    return ConjugateMixture(k, d, dtype=T, generator=torch.Generator().manual_seed(seed), **PRIORS[prior], **kw)


# -- tests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_full_batch_rho_one_is_coordinate_ascent_vb(prior):
    z_loc, z_var = data()
    zl, zv = torch.tensor(z_loc), torch.tensor(z_var)
    mix = make(prior)
    gamma = np.full((len(z_loc), mix.n_components), 1.0 / mix.n_components)
    bound = vb_bound(gamma, params(mix), z_loc, z_var, PRIORS[prior])
    for it in range(25):
        # E-step, eq. 5-6
        g = mix.responsibilities(zl, zv)
        np.testing.assert_allclose(g.numpy(), vb_responsibilities(params(mix), z_loc, z_var), rtol=1e-9, atol=1e-12)
        gamma = g.numpy()
        new = vb_bound(gamma, params(mix), z_loc, z_var, PRIORS[prior])
        assert new >= bound - 1e-6, (it, "responsibilities", new, bound)
        bound = new
        # global step, eq. 13 with N / |B| = 1 and rho = 1
        mix.update(sufficient_statistics(g, zl, zv), num_data=len(z_loc), rho=1.0)
        assert_params(mix, vb_update(gamma, z_loc, z_var, PRIORS[prior]))
        new = vb_bound(gamma, params(mix), z_loc, z_var, PRIORS[prior])
        assert new >= bound - 1e-6, (it, "globals", new, bound)
        bound = new
    assert int(mix.tau) == 25
    # the clusters were found: three components carry the points
    assert np.sort(mix.c.numpy() - PRIORS[prior]["c0"])[-3:].sum() > 59


@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_bound_terms_match_the_written_out_bound(prior):
    """-sum_n (KL[z_n] + KL[r_n]) - KL(q(pi)||p(pi)) - sum KL(q(mu,alpha)||p(mu,alpha)) is the VB bound (App. C)."""
    z_loc, z_var = data(seed=1)
    zl, zv = torch.tensor(z_loc), torch.tensor(z_var)
    mix = make(prior, seed=3)
    for _ in range(3):
        mix.step(zl, zv, num_data=len(z_loc), rho=0.7)
    gamma = mix.responsibilities(zl, zv)
    glob = mix.global_kl()
    ours = -(mix.kl_z(gamma, zl, zv).sum() + mix.kl_r(gamma).sum() + glob["pi"] + glob["normal_gamma"])
    np.testing.assert_allclose(float(ours), vb_bound(gamma.numpy(), params(mix), z_loc, z_var, PRIORS[prior]),
                               rtol=1e-10)


def test_minibatch_update_is_scaled_to_the_data_size():
    z_loc, z_var = data(seed=2)
    batch = np.arange(0, 60, 3)                                       # 20 of N = 60 points
    zl, zv = torch.tensor(z_loc[batch]), torch.tensor(z_var[batch])
    mix = make("other")
    g = mix.responsibilities(zl, zv)
    mix.update(mix.statistics(g, zl, zv), num_data=60, rho=1.0)
    # N/|B| = 3 copies of the batch, i.e. the batch's responsibilities weighted by 3
    assert_params(mix, vb_update(3.0 * g.numpy(), z_loc[batch], z_var[batch], PRIORS["other"]))


def test_statistics_add_across_batches():
    z_loc, z_var = (torch.tensor(x) for x in data(seed=3))
    mix_a, mix_b = make(seed=5), make(seed=5)
    g = mix_a.responsibilities(z_loc, z_var)
    whole = sufficient_statistics(g, z_loc, z_var)
    parts = (sufficient_statistics(g[:25], z_loc[:25], z_var[:25])
             + sufficient_statistics(g[25:], z_loc[25:], z_var[25:]))
    assert isinstance(parts, MixtureStats) and float(parts.num_points) == 60
    for x, y in zip(whole.tensors(), parts.tensors()):
        torch.testing.assert_close(x, y)
    mix_a.update(whole, 60, rho=1.0)
    mix_b.update(MixtureStats(*[t.clone() for t in parts.tensors()]), 60, rho=1.0)
    for k in ("m", "s", "a", "b", "c"):
        torch.testing.assert_close(getattr(mix_a, k), getattr(mix_b, k))


@pytest.mark.parametrize("rho", [0.05, 0.3, 0.9])
def test_rho_below_one_interpolates_natural_parameters(rho):
    z_loc, z_var = data(seed=4)
    zl, zv = torch.tensor(z_loc), torch.tensor(z_var)
    mix = make("other", seed=1)
    mix.step(zl, zv, 60, rho=0.5)                                     # somewhere away from the prior
    before = params(mix)
    g = mix.responsibilities(zl, zv)
    assert mix.update(mix.statistics(g, zl, zv), 60, rho=rho) == rho
    star = vb_update(g.numpy(), z_loc, z_var, PRIORS["other"])
    lam = (1 - rho) * natural(before) + rho * natural(star)
    s = -2 * lam[..., 3]
    m = lam[..., 2] / s
    expected = {"m": m, "s": s, "a": lam[..., 0] + 0.5, "b": -lam[..., 1] - 0.5 * s * m ** 2,
                "c": (1 - rho) * before["c"] + rho * star["c"]}
    assert_params(mix, expected)


def test_schedule_and_step_counter():
    assert step_size(1, tau0=0.0, kappa=1.0) == 1.0
    assert step_size(5, tau0=2000.0, kappa=0.7) == pytest.approx(2005.0 ** -0.7, rel=1e-12)
    mix = make(tau0=10.0, kappa=0.6)
    z_loc, z_var = (torch.tensor(x) for x in data())
    for tau in (1, 2, 3):
        g = mix.responsibilities(z_loc, z_var)
        assert mix.update(mix.statistics(g, z_loc, z_var), 60) == pytest.approx((10.0 + tau) ** -0.6, rel=1e-12)
        assert int(mix.tau) == tau


@pytest.mark.parametrize("kappa", [0.5, 0.3, 0.0, -0.7, 1.01, 2.0, float("nan")])
def test_kappa_outside_half_open_interval_is_refused(kappa):
    with pytest.raises(ConfigError):
        step_size(1, tau0=10.0, kappa=kappa)
    with pytest.raises(ConfigError):
        ConjugateMixture(3, 2, kappa=kappa)


def test_other_bad_settings_are_refused():
    for bad in (dict(tau0=-1.0), dict(s0=0.0), dict(a0=-1.0), dict(c0=0.0), dict(b0=float("inf"))):
        with pytest.raises(ConfigError):
            ConjugateMixture(3, 2, **bad)
    with pytest.raises(ConfigError):
        ConjugateMixture(0, 2)
    mix = make()
    z_loc, z_var = (torch.tensor(x) for x in data())
    stats = mix.statistics(mix.responsibilities(z_loc, z_var), z_loc, z_var)
    for rho in (0.0, 1.5):
        with pytest.raises(ConfigError):
            mix.update(stats, 60, rho=rho)


def test_buffers_not_parameters_and_state_dict_round_trip():
    z_loc, z_var = (torch.tensor(x) for x in data())
    mix = make("other", seed=0, tau0=5.0, kappa=0.8)
    for _ in range(4):
        mix.step(z_loc, z_var, 60)
    assert list(mix.parameters()) == []
    state = mix.state_dict()
    assert {"m", "s", "a", "b", "c", "tau", "m0", "s0", "a0", "b0", "c0"} <= set(state)
    fresh = make("paper", seed=9, tau0=5.0, kappa=0.8)
    fresh.load_state_dict(state)
    for k, v in state.items():
        assert torch.equal(getattr(fresh, k), v), k
    assert int(fresh.tau) == 4
    torch.testing.assert_close(fresh.responsibilities(z_loc, z_var), mix.responsibilities(z_loc, z_var))
    assert fresh.step(z_loc, z_var, 60) is not None and mix.step(z_loc, z_var, 60) is not None
    for k in ("m", "s", "a", "b", "c", "tau"):
        assert torch.equal(getattr(fresh, k), getattr(mix, k)), k


def test_responsibility_logits_are_differentiable_in_the_encoding():
    """The logits of g in eq. 8 carry gradients to q(z); the buffers never do."""
    z_loc = torch.tensor(data()[0], requires_grad=True)
    z_var = torch.full_like(z_loc, 0.1, requires_grad=True)
    mix = make()
    logits = mix.responsibility_logits(z_loc, z_var)
    assert logits.shape == (60, 4)
    torch.log_softmax(logits, -1)[:, 0].sum().backward()
    assert z_loc.grad is not None and torch.isfinite(z_loc.grad).all() and (z_loc.grad != 0).any()
    assert z_var.grad is not None
    assert all(not b.requires_grad for b in mix.buffers())


def test_kl_r_with_hard_assignments_is_finite():
    mix = make()
    gamma = torch.eye(4, dtype=T)[[0, 1, 1, 3]]                      # clamped labels (Sect. 2.5)
    kl = mix.kl_r(gamma)
    expected = -e_log_pi(mix.c.numpy())[[0, 1, 1, 3]]
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-12)
