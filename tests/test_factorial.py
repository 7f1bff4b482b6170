"""The factorial mixture prior model: its Pyro program, clamping, training hooks, CLI and estimator.

The conjugate mathematics (Normal-Gamma, eq. 5-7, 10, 13, App. C-D) is tested against independent
computations in test_distributions.py and test_conjugate.py; here the model built on it.
"""
import json

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats as st
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from conftest import TINY
from pyro_mixvae import FactorialMixtureVAE as FactorialEstimator
from pyro_mixvae.cli import main
from pyro_mixvae.errors import ConfigError
from pyro_mixvae.infer import TrainConfig, fit
from pyro_mixvae.runner import fit_in_directory
from pyro_mixvae.models import FactorialMixtureVAE, VaDE


def small(**kw):
    settings = dict(factors=1, components=(3,), dim=2, hidden=(16,))
    settings.update(kw)
    return FactorialMixtureVAE((8,), 3, "bernoulli", **settings)


def test_one_factor_with_globals_at_point_values_is_vades_loss():
    torch.manual_seed(0)
    x = torch.rand(7, 8).round()
    fac = small()
    vade = VaDE((8,), 3, "bernoulli", hidden=(16,), latent_dim=2)
    vade.encoder.load_state_dict(fac.encoder.state_dict())
    vade.decoder.load_state_dict(fac.decoder.state_dict())
    pi = torch.tensor([0.2, 0.5, 0.3])
    mu = torch.tensor([[-1.0, 0.5], [0.3, 0.2], [1.2, -0.7]])
    alpha = torch.tensor([[2.0, 0.5], [1.0, 4.0], [0.7, 1.5]])
    with torch.no_grad():
        vade.pi_logits.copy_(pi.log())
        vade.mu_c.copy_(mu)
        vade.log_var_c.copy_(-alpha.log())
    held = poutine.condition(fac.model, data={"pi_0": pi, "xi_0": torch.stack([mu, alpha], -1)})

    def guide(x, num_data=None):  # q(z|x) of the factorial guide without its global sites
        with pyro.plate("data", len(x)):
            loc, scale = fac.encoder(x)
            pyro.sample("z_0", dist.Normal(loc, scale).to_event(1))

    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(3)
    loss_fac = float(elbo.loss(held, guide, x))
    pyro.set_rng_seed(3)
    loss_vade = float(elbo.loss(vade.model, vade.guide, x))
    # conditioning adds the log densities of the held globals, computed here with scipy
    log_prior = st.dirichlet.logpdf(np.array([0.2, 0.5, 0.3]), np.ones(3))
    prec = 1.0 * alpha.numpy().astype(np.float64)  # mu ~ N(m0 = 0, (s0 alpha)^-1), s0 = 1
    log_prior += (st.norm.logpdf(mu.numpy(), 0.0, 1 / np.sqrt(prec))
                  + st.gamma.logpdf(alpha.numpy(), a=0.01, scale=1 / 0.01)).sum()
    assert loss_fac == pytest.approx(loss_vade - log_prior, rel=1e-5, abs=1e-3)


def test_clamped_labels_give_the_labels_as_responsibilities_and_the_model_conditions_on_them():
    torch.manual_seed(0)
    m = small(factors=2, components=(3, 2))
    x = torch.rand(5, 8).round()
    labels = torch.tensor([[2, -1], [-1, 1], [0, 0], [-1, -1], [1, 1]])
    g0, g1 = m.clamped_responsibilities(x, labels)
    assert torch.equal(g0[[0, 2, 4]], torch.eye(3)[[2, 0, 1]])
    assert torch.equal(g1[[1, 2, 4]], torch.eye(2)[[1, 0, 1]])
    free = m.factor_responsibilities(x)
    assert torch.allclose(g0[[1, 3]], free[0][[1, 3]]) and torch.allclose(g1[[0, 3]], free[1][[0, 3]])
    # in the model, a labelled point's r is a point mass: its enumerated log-probabilities are 0 at the label
    tr = poutine.trace(poutine.enum(m.model, first_available_dim=-2)).get_trace(x, None, labels)
    logits = tr.nodes["r_0"]["fn"].logits
    assert torch.all(logits[0].argmax(-1) == 2) and logits[0, 2] == 0 and logits[0, 0] < -1e20
    assert torch.allclose(logits[1], torch.log(tr.nodes["pi_0"]["value"]))


def test_cross_entropy_of_eq8_is_added_and_reaches_the_encoder():
    torch.manual_seed(0)
    x = torch.rand(6, 8).round()
    labels = torch.tensor([[0], [1], [2], [-1], [-1], [-1]])
    m = small(delta=5.0)
    m0 = small(delta=0.0)
    m0.load_state_dict(m.state_dict())
    # eq. 8 is the objective's (m.make_elbo(): an auxiliary program), not the generative model's
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(0)
    with_ce = m.make_elbo().differentiable_loss(m.model, m.guide, x, None, labels)
    pyro.set_rng_seed(0)
    plain = elbo.differentiable_loss(m.model, m.guide, x, None, labels)
    pyro.set_rng_seed(0)
    without = m0.make_elbo().differentiable_loss(m0.model, m0.guide, x, None, labels)
    assert float(plain) == float(without)  # the model itself holds no cross-entropy
    # eq. 8's term alone: delta * sum over the labelled points of -log g_y, g the softmax of eq. 5-6
    loc, scale = m.encoder(x)
    g = torch.log_softmax(m.mixtures[0].responsibility_logits(loc, scale ** 2), -1)
    ce = -(g[[0, 1, 2], [0, 1, 2]]).sum()
    assert float(with_ce - without) == pytest.approx(5.0 * float(ce), rel=1e-4)
    assert float(torch.autograd.grad(with_ce - without, m.encoder.loc.weight)[0].abs().sum()) > 0


def test_conjugate_step_is_a_natural_gradient_step_and_training_moves_the_globals():
    torch.manual_seed(0)
    x = torch.rand(60, 8).round()
    m = small()
    before = m.mixtures[0].c.clone()
    hist = fit(m, x, config=TrainConfig(epochs=2, pretrain_epochs=1, batch_size=20, seed=0), progress=False)
    mix = m.mixtures[0]
    assert int(mix.tau) == 2 * 3  # one update per minibatch, the initialisation not counted
    assert not torch.allclose(mix.c, before)
    # the pseudo-counts hold about N points beyond the prior (each update's lambda* is scaled to N)
    assert float((mix.c - mix.c0).sum()) == pytest.approx(60, rel=0.05)
    assert "elbo" in hist.records[-1]


def test_resume_restores_the_conjugate_buffers_exactly(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(40, 8).round()
    cfg = dict(pretrain_epochs=1, batch_size=20, seed=0)
    pyro.set_rng_seed(0)
    a = small()
    fit_in_directory(a, x, None, tmp_path / "a", config=TrainConfig(epochs=4, **cfg), progress=False)
    pyro.set_rng_seed(0)
    b = small()
    fit_in_directory(b, x, None, tmp_path / "b", config=TrainConfig(epochs=2, **cfg), progress=False)
    pyro.set_rng_seed(5)
    c = small()
    fit_in_directory(c, x, None, tmp_path / "b", config=TrainConfig(epochs=4, **cfg), resume=True, progress=False)
    for (name, va), vc in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(va, vc), name


def test_student_t_sampling_and_generation_grid():
    torch.manual_seed(0)
    m = small(factors=2, components=(3, 2))
    xs, ks = m.sample(6, ks=[2, None])
    assert xs.shape == (6, 8) and ks.shape == (6, 2) and torch.all(ks[:, 0] == 2)
    with pytest.raises(ConfigError):
        m.sample(2, ks=[3, 0])


def test_estimator_predicts_one_assignment_per_factor_and_takes_partial_labels(blobs_npz):
    d = np.load(blobs_npz)
    x, y = d["x"], d["y"]
    labels = np.full((len(x), 2), -1)
    labels[::3, 0] = y[::3]
    est = FactorialEstimator(3, factors=2, components=(3, 2), dim=2, hidden=(16,), epochs=2, pretrain_epochs=2,
                             delta=1.0).fit(x, labels=labels)
    pred = est.predict_factors(x)
    assert pred.shape == (len(x), 2) and pred[:, 0].max() < 3 and pred[:, 1].max() < 2
    proba = est.predict_proba_factors(x)
    assert [p.shape for p in proba] == [(len(x), 3), (len(x), 2)]
    with pytest.raises(Exception):
        FactorialEstimator(3, factors=2, components=(3, 2), dim=2, hidden=(16,), epochs=1,
                           pretrain_epochs=0).fit(x, labels=np.full((len(x), 3), -1))


def test_cli_fit_with_labels_and_metrics(tmp_path, blobs_npz):
    d = np.load(blobs_npz)
    labels = np.full(len(d["x"]), -1)
    labels[:30] = d["y"][:30]
    np.save(tmp_path / "labels.npy", labels)
    out = tmp_path / "run"
    rc = main(["fit", "factorial", "--data", str(blobs_npz), "--epochs", "2", "--pretrain-epochs", "1", "--quiet",
               "--out", str(out), "--labels", str(tmp_path / "labels.npy"), "--set", "dim=2", "--set", "delta=1",
               "--set", "hidden=16"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("predictive_bound", "predictive_recon", "predictive_kl_z", "predictive_kl_r", "effective_components"):
        assert key in metrics
    assert metrics["predictive_bound"] == pytest.approx(
        metrics["predictive_recon"] - metrics["predictive_kl_z"] - metrics["predictive_kl_r"])


@pytest.mark.parametrize("bad", [
    ["--set", "factors=2", "--set", "components=3,2,2"],
    ["--set", "dim=0"],
    ["--set", "kappa=0.4"],
    ["--set", "kappa=1.2"],
    ["--labels", "WRONG_SHAPE"],
    ["--labels", "OUT_OF_RANGE"],
])
def test_cli_refuses_bad_factorial_settings(tmp_path, blobs_npz, capsys, bad):
    n = len(np.load(blobs_npz)["x"])
    np.save(tmp_path / "shape.npy", np.zeros((n + 1,), dtype=int))
    np.save(tmp_path / "range.npy", np.full((n,), 7))
    bad = [{"WRONG_SHAPE": str(tmp_path / "shape.npy"), "OUT_OF_RANGE": str(tmp_path / "range.npy")}.get(b, b)
           for b in bad]
    rc = main(["fit", "factorial", "--data", str(blobs_npz), "--out", str(tmp_path / "r"), "--quiet", *bad, *TINY[:2]])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("mixvae: error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()
