"""VaDE's Dirichlet prior on the mixture weights (``weight_concentration`` > 0), checked against scipy.

* the bound at one draw of (pi, z), replayed through ``TraceEnum_ELBO``, equals the sum written out with
  scipy's densities: log p(x|z) + log sum_c pi_c N(z | mu_c, sigma_c^2) - log q(z|x) per point, plus
  log Dir(pi; alpha0) - log Dir(pi; c) once;
* one conjugate step moves c to (1 - rho) c + rho (alpha0 + N / B sum_n gamma_n) with rho = (tau0 + 1)^-kappa
  and gamma eq. 16 under E_q[log pi] = psi(c) - psi(sum c), all recomputed with scipy;
* repeated coordinate-ascent steps (rho = 1 on all the data) reach the fixed point, where a component that holds no
  point keeps only the prior's alpha0 and is not counted (``effective_clusters``);
* stock ``pyro.infer.SVI`` with ``conjugate_step``, ``Predictive`` and the ArviZ export work on the model.
"""
import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, TraceEnum_ELBO
from scipy import special, stats

from pyro_mixvae.analysis import to_inference_data
from pyro_mixvae.infer.conjugate import DEFAULT_KAPPA, DEFAULT_TAU0
from pyro_mixvae.models import VaDE

ALPHA0 = 0.05


def _model(alpha0=ALPHA0, seed=0):
    torch.manual_seed(seed)
    m = VaDE((6,), 3, "bernoulli", hidden=(16,), latent_dim=2, weight_concentration=alpha0)
    with torch.no_grad():
        m.mu_c.copy_(torch.tensor([[-2.0, 0.0], [2.0, 0.5], [40.0, 40.0]]))  # the third far from every code
        m.log_var_c.copy_(torch.log(torch.tensor([[0.5, 1.0], [1.0, 0.3], [2.0, 0.7]])))
        m.weight_posterior.copy_(torch.tensor([30.0, 20.0, 10.0]))
    return m.eval()


def _data(n=8):
    return torch.rand(n, 6, generator=torch.Generator().manual_seed(1))


def _scipy_gamma(m, x):
    """eq. 16 with E_q[log pi]: softmax_c(psi(c_c) - psi(sum c) + log N(mu~(x) | mu_c, sigma_c^2)), in numpy."""
    with torch.no_grad():
        code = m.encoder(x)[0].double().numpy()
    c = m.weight_posterior.double().numpy()
    mu, sd = m.mu_c.detach().double().numpy(), np.exp(0.5 * m.log_var_c.detach().double().numpy())
    logits = special.digamma(c) - special.digamma(c.sum()) + \
        stats.norm.logpdf(code[:, None, :], mu[None], sd[None]).sum(-1)
    return special.softmax(logits, axis=1)


def test_bound_at_one_draw_matches_scipy():
    m, x = _model(), _data()
    pyro.set_rng_seed(3)
    draw = poutine.trace(m.guide).get_trace(x, len(x))
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(m.model, poutine.replay(m.guide, trace=draw), x, len(x))
    pi, z = draw.nodes["pi"]["value"].double().numpy(), draw.nodes["z"]["value"].detach()
    pi = pi / pi.sum()  # float32 draws sum to 1 within 1e-7; scipy asks for 1e-9
    with torch.no_grad():
        loc, scale = (t.double().numpy() for t in m.encoder(x))
        logits = m.decoder(z).double().numpy()
    xn, zn = x.double().numpy(), z.double().numpy()
    log_lik = (xn * -np.logaddexp(0, -logits) + (1 - xn) * -np.logaddexp(0, logits)).sum(-1)
    mu, sd = m.mu_c.detach().double().numpy(), np.exp(0.5 * m.log_var_c.detach().double().numpy())
    log_prior_z = special.logsumexp(np.log(pi) + stats.norm.logpdf(zn[:, None, :], mu[None], sd[None]).sum(-1), axis=1)
    log_q_z = stats.norm.logpdf(zn, loc, scale).sum(-1)
    c = m.weight_posterior.double().numpy()
    globals_ = stats.dirichlet.logpdf(pi, np.full(3, ALPHA0)) - stats.dirichlet.logpdf(pi, c)
    expected = -((log_lik + log_prior_z - log_q_z).sum() + globals_)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_one_conjugate_step_matches_the_closed_form():
    m, x = _model(), _data()
    num_data = 40  # the minibatch stands for 40 points: w = 5
    c_before = m.weight_posterior.double().numpy()
    target = ALPHA0 + num_data / len(x) * _scipy_gamma(m, x).sum(0)
    rho = (DEFAULT_TAU0 + 1) ** -DEFAULT_KAPPA
    m.conjugate_step(x, num_data)
    np.testing.assert_allclose(m.weight_posterior.double().numpy(), (1 - rho) * c_before + rho * target, rtol=1e-5)
    assert int(m.weight_steps) == 1


def test_repeated_steps_reach_the_fixed_point_and_empty_the_unused_component():
    m, x = _model(), _data(30)
    with torch.no_grad():  # components 0 and 1 on two distant codes, so that each holds points
        codes = m.encoder(x)[0]
        far = int(((codes - codes[0]) ** 2).sum(-1).argmax())
        m.mu_c[:2] = codes[[0, far]]
        m.log_var_c[:2] = torch.log(((codes[0] - codes[far]) ** 2).sum() / 100)
        m.weight_posterior.copy_(torch.tensor([15.0, 15.0, 10.0]))
    for _ in range(200):  # coordinate ascent: rho = 1 on all the data
        m.conjugate_step(x, len(x), rho=1.0)
    c = m.weight_posterior.double().numpy()
    np.testing.assert_allclose(c, ALPHA0 + _scipy_gamma(m, x).sum(0), rtol=1e-3, atol=1e-3)
    assert c[2] == pytest.approx(ALPHA0, abs=1e-3)  # the far component: no point, the prior's count alone
    assert m.effective_clusters() == int(((c - ALPHA0) > 1.0).sum()) == 2
    np.testing.assert_allclose(m.prior_components()[0][0].numpy(), c / c.sum(), rtol=1e-5)


def test_point_weights_unchanged_without_the_prior():
    m = VaDE((6,), 3, "bernoulli", hidden=(16,), latent_dim=2)
    assert hasattr(m, "pi_logits") and not hasattr(m, "weight_posterior")
    assert m.jit_compatible and m.effective_clusters() == 3
    assert "pi" not in poutine.trace(m.guide).get_trace(_data(), 8).nodes


def test_stock_svi_predictive_and_arviz():
    az = pytest.importorskip("arviz")
    m, x = _model(), _data(16)
    m.train()
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}), m.make_elbo())
    c0 = m.weight_posterior.clone()
    for _ in range(3):
        assert np.isfinite(svi.step(x, len(x)))
        m.conjugate_step(x, len(x))
    assert not torch.equal(m.weight_posterior, c0) and int(m.weight_steps) == 3
    m.eval()
    draws = Predictive(m.model, guide=m.guide, num_samples=5, return_sites=["pi"])(None, 4)["pi"]
    assert draws.shape[-1] == 3 and torch.allclose(draws.sum(-1), torch.ones(()), atol=1e-5)
    idata = to_inference_data(m, x.numpy(), num_samples=8, ppc_samples=2, local_points=4, iw_samples=0)
    assert idata.posterior["pi"].dims[-1] == "cluster"
    assert set(idata.constant_data.data_vars) >= {"mu_c", "sigma_c"} and "pi" not in idata.constant_data
    assert np.isfinite(az.summary(idata, var_names=["pi"])["mean"]).all()


def test_cli_fit_report_and_resume_with_the_prior(tmp_path, blobs_npz):
    az = pytest.importorskip("arviz")
    from pyro_mixvae.cli import main as mixvae

    run = tmp_path / "run"
    args = ["fit", "vade", "--data", str(blobs_npz), "--seed", "0", "--out", str(run), "--quiet", "--device", "cpu",
            "--pretrain-epochs", "1", "--set", "hidden=8", "--set", "latent_dim=2", "--set", "gmm_assign=diag",
            "--set", "weight_concentration=0.05", "-k", "6"]
    assert mixvae(args + ["--epochs", "1"]) == 0
    assert mixvae(args + ["--epochs", "2", "--resume"]) == 0
    metrics = __import__("json").loads((run / "metrics.json").read_text())
    assert 1 <= metrics["effective_clusters"] <= 6 and len(metrics["weights"]) == 6
    assert sum(metrics["weights"]) == pytest.approx(1.0, abs=1e-5)
    assert mixvae(["report", str(run)]) == 0
    idata = az.from_netcdf(run / "report" / "posterior.nc")
    assert idata.posterior["pi"].sizes["cluster"] == 6
