"""The extra ELBO terms of ``MixtureELBO`` against independent hand computations.

A small fixed model with the site pattern c (enumerated), z | c, x | z and a guide whose z is
a point mass (``Delta``) makes every term a closed form: p(c|z) is written out by hand, and the
loss of ``MixtureELBO`` minus the plain ``TraceEnum_ELBO`` loss must equal the hand-computed
term, with the plate's N / B scale.
"""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_mixvae.errors import ConfigError
from pyro_mixvae.infer.elbo import MixtureELBO
from pyro_mixvae.models import GMVAE, VaDE
from pyro_mixvae.models.base import data_plate

N = 40  # the full data set the minibatch stands for: scale N / B


def _log_normal(z, loc, var):
    return (-0.5 * (math.log(2 * math.pi) + torch.log(var) + (z - loc) ** 2 / var)).sum(-1)


class Toy:
    """c ~ Cat(pi), z | c ~ N(mu_c, sigma_c^2), x | z ~ N(z, 1); guide: z = z0, optionally q(c|x)."""

    def __init__(self, mean_field=False):
        self.loc = torch.tensor([[-1.0, 0.0], [1.5, 0.5]], requires_grad=True)
        self.log_var = torch.tensor([[0.0, -0.5], [0.3, 0.2]], requires_grad=True)
        self.log_pi = torch.log(torch.tensor([0.3, 0.7]))
        self.z0 = torch.tensor([[-0.8, 0.1], [0.2, 0.3], [1.4, 0.6], [0.4, -0.2], [3.0, 1.0]])
        self.q_logits = torch.tensor([[2.0, -1.0], [0.0, 0.5], [-1.0, 1.0], [0.3, 0.3], [-3.0, 2.0]])
        self.mean_field = mean_field

    def model(self, x, num_data=None):
        with data_plate(x, num_data):
            c = pyro.sample("c", dist.Categorical(logits=self.log_pi), infer={"enumerate": "parallel"})
            z = pyro.sample("z", dist.Normal(self.loc[c], torch.exp(0.5 * self.log_var[c])).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(self, x, num_data=None):
        with data_plate(x, num_data):
            if self.mean_field:
                pyro.sample("c", dist.Categorical(logits=self.q_logits), infer={"enumerate": "parallel"})
            pyro.sample("z", dist.Delta(self.z0).to_event(1))

    # -- by hand ---------------------------------------------------------------------------------
    def posterior(self):
        """p(c | z0) (B, K) written out with Bayes' rule."""
        joint = self.log_pi + _log_normal(self.z0[:, None, :], self.loc, self.log_var.exp())
        return torch.softmax(joint, -1)

    def q(self):
        return torch.softmax(self.q_logits, -1) if self.mean_field else self.posterior()

    def entropy(self):
        p = self.posterior()
        return -(p * p.log()).sum(-1)

    def kl(self, p):
        return (p * (p.log() - self.log_pi)).sum(-1)


X = torch.tensor([[-1.0, 0.0], [0.0, 0.5], [1.0, 1.0], [0.5, 0.0], [2.5, 1.0]])
B = len(X)


def _losses(toy, **terms):
    plain = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(toy.model, toy.guide, X, N)
    elbo = MixtureELBO(max_plate_nesting=1, **terms)
    return elbo.differentiable_loss(toy.model, toy.guide, X, N), plain, elbo


@pytest.mark.parametrize("mean_field", [False, True])
def test_consistency_violation_is_alpha_times_the_scaled_entropy(mean_field):
    toy = Toy(mean_field)
    ours, plain, elbo = _losses(toy, alpha=2.5)
    expected = 2.5 * (N / B) * toy.entropy().sum()
    assert torch.allclose(ours - plain, expected, atol=1e-4), (float((ours - plain).detach()), float(expected))
    assert torch.allclose(elbo.last_terms["cv"], toy.entropy().mean())


@pytest.mark.parametrize("mean_field", [False, True])
def test_z_prior_weight_adds_eta_minus_one_times_the_kl(mean_field):
    toy = Toy(mean_field)
    for eta in (0.0, 0.3, 3.0):
        ours, plain, elbo = _losses(toy, eta=eta)
        kl = toy.kl(toy.q())  # mean-field: the classifier's KL; posterior guide: KL(p(c|z) || p(c))
        assert torch.allclose(ours - plain, (eta - 1) * (N / B) * kl.sum(), atol=1e-4)
        assert torch.allclose(elbo.last_terms["z_prior"], kl.mean())
        assert torch.allclose(elbo.last_terms["clusters_kl"], toy.kl(toy.posterior()).mean())


@pytest.mark.parametrize("mean_field", [False, True])
def test_threshold_adds_n_times_max_lambda_kl_minus_kl(mean_field):
    toy = Toy(mean_field)
    kl_bar = float(toy.kl(toy.q()).mean().detach())
    for lam in (kl_bar + 0.4, kl_bar + 2.0, kl_bar / 2, 1e-3):
        ours, plain, _ = _losses(toy, lam=lam)
        expected = N * (max(lam, kl_bar) - kl_bar)  # (N / B) * B * (max(lam, KL) - KL)
        assert abs(float((ours - plain).detach()) - expected) < 1e-3, (lam, float((ours - plain).detach()), expected)
    above, plain, _ = _losses(toy, lam=kl_bar / 2)
    assert float(above.detach()) == float(plain.detach())  # KL above the threshold: nothing changes


def test_posterior_guide_consistency_violation_is_a_negative_z_prior_weight():
    """With q(c|x) = p(c|z,w) and a uniform p(c), H(p(c|z)) = log K - KL(p(c|z) || p(c)), so alpha times
    the CV term is the z-prior weight eta = 1 - alpha plus the constant N alpha log K (the reason the
    CV paper's term needs the mean-field classifier to act differently from eta)."""
    toy = Toy(mean_field=False)
    toy.log_pi = torch.log(torch.tensor([0.5, 0.5]))
    constant = torch.tensor(N * math.log(2))
    for alpha in (0.4, 2.0):
        with_cv, plain, _ = _losses(toy, alpha=alpha)
        eta_written_out = plain - alpha * (N / B) * toy.kl(toy.posterior()).sum()  # eta = 1 - alpha, even < 0
        assert torch.allclose(with_cv - eta_written_out, alpha * constant, atol=1e-3)
    with_eta, _, _ = _losses(toy, eta=0.6)
    with_cv, _, _ = _losses(toy, alpha=0.4)
    assert torch.allclose(with_cv - with_eta, 0.4 * constant, atol=1e-3)


def test_terms_compose():
    toy = Toy(mean_field=True)
    eta, alpha, lam = 0.5, 2.0, 3.0
    ours, plain, _ = _losses(toy, eta=eta, alpha=alpha, lam=lam)
    kl = toy.kl(toy.q())
    expected = ((eta - 1) * (N / B) * kl.sum() + alpha * (N / B) * toy.entropy().sum()
                + eta * N * max(lam - float(kl.mean().detach()), 0.0))
    assert torch.allclose(ours - plain, expected, atol=1e-3)


def test_masked_points_add_nothing():
    toy = Toy(mean_field=False)
    keep = torch.tensor([True, False, True, True, False])
    model = toy.model

    def masked_model(x, num_data=None):
        with pyro.poutine.mask(mask=keep):
            model(x, num_data)

    elbo = MixtureELBO(alpha=1.5, lam=10.0, max_plate_nesting=1)
    diff = elbo.loss(masked_model, toy.guide, X, N) - TraceEnum_ELBO(max_plate_nesting=1).loss(masked_model, toy.guide, X, N)
    with torch.no_grad():
        ent, kl = toy.entropy()[keep], toy.kl(toy.posterior())[keep]
    expected = 1.5 * (N / B) * float(ent.sum()) + (N / B) * int(keep.sum()) * (10.0 - float(kl.mean()))
    assert diff == pytest.approx(expected, rel=1e-5)
    assert float(elbo.last_terms["cv"]) == pytest.approx(float(ent.mean()), rel=1e-5)


def _grads(loss, toy):
    return torch.autograd.grad(loss, [toy.loc, toy.log_var], retain_graph=True)


def test_threshold_turns_off_the_z_prior_gradient_below_lambda_only():
    toy = Toy(mean_field=False)
    kl_bar = float(toy.kl(toy.posterior()).mean().detach())
    z_prior = N * toy.kl(toy.posterior()).mean()  # the z-prior term inside the plain loss, by hand
    assert all(g.abs().sum() > 1e-3 for g in _grads(z_prior, toy))  # the test is not vacuous

    ours, plain, _ = _losses(toy, lam=kl_bar + 1.0)  # below the threshold
    for g_ours, g_expected in zip(_grads(ours, toy), _grads(plain - z_prior, toy)):
        assert torch.allclose(g_ours, g_expected, atol=1e-4)
    threshold_term = ours - (plain - z_prior)  # = N * max(lam, KL_bar): constant below lam
    assert all(g.abs().max() < 1e-4 for g in _grads(threshold_term, toy))

    ours, plain, _ = _losses(toy, lam=kl_bar / 3)  # above the threshold: the unthresholded gradient
    for g_ours, g_plain in zip(_grads(ours, toy), _grads(plain, toy)):
        assert torch.allclose(g_ours, g_plain, atol=1e-5)


def test_vectorised_particles_average_the_terms():
    toy = Toy(mean_field=True)
    one, plain, _ = _losses(toy, eta=2.0, alpha=1.0, lam=5.0)
    elbo = MixtureELBO(2.0, 1.0, 5.0, max_plate_nesting=1, num_particles=3, vectorize_particles=True)
    three = elbo.differentiable_loss(toy.model, toy.guide, X, N)
    assert torch.allclose(three, one, rtol=1e-5)  # z is a point mass: every particle is the same
    assert float(elbo.loss(toy.model, toy.guide, X, N)) == pytest.approx(float(three.detach()), rel=1e-5)


def test_neutral_settings_give_the_plain_loss_exactly():
    toy = Toy(mean_field=True)
    ours, plain, elbo = _losses(toy)
    assert float(ours.detach()) == float(plain.detach())
    assert set(elbo.last_terms) == {"z_prior", "cv", "clusters_kl"}
    assert all(not v.requires_grad for v in elbo.last_terms.values())


@pytest.mark.parametrize("bad", [dict(eta=-1.0), dict(alpha=-0.5), dict(lam=-2.0), dict(alpha=float("nan"))])
def test_negative_weights_are_refused(bad):
    with pytest.raises(ConfigError):
        MixtureELBO(max_plate_nesting=1, **bad)


def test_the_terms_apply_to_vade():
    torch.manual_seed(0)
    m = VaDE((6,), 3, "bernoulli", hidden=(8,), latent_dim=2).eval()
    with torch.no_grad():
        m.mu_c.copy_(torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]]))
        m.pi_logits.copy_(torch.log(torch.tensor([0.5, 0.3, 0.2])))
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    z0 = torch.tensor([[-1.5, 0.2], [1.0, 1.0], [0.1, 2.0], [0.5, 0.5]])

    def point_guide(x, num_data=None):
        with data_plate(x, num_data):
            pyro.sample("z", dist.Delta(z0).to_event(1))

    # p(c | z0) by hand from VaDE's parameters
    with torch.no_grad():
        pi = torch.softmax(m.pi_logits, -1)
        post = torch.softmax(torch.log(pi) + _log_normal(z0[:, None, :], m.mu_c, m.log_var_c.exp()), -1)
        ent = -(post * post.log()).sum(-1)
        kl = (post * (post.log() - pi.log())).sum(-1)
    plain = TraceEnum_ELBO(max_plate_nesting=1).loss(m.model, point_guide, x, 20)
    elbo = MixtureELBO(eta=1.5, alpha=2.0, max_plate_nesting=1)
    ours = elbo.loss(m.model, point_guide, x, 20)
    expected = 0.5 * 5 * float(kl.sum()) + 2.0 * 5 * float(ent.sum())
    assert ours - plain == pytest.approx(expected, rel=1e-4)
    assert float(elbo.last_terms["cv"]) == pytest.approx(float(ent.mean()), rel=1e-5)

    # and with VaDE's own guide the terms train: a finite differentiable loss with gradients
    m.train()
    ours = MixtureELBO(alpha=1.0, lam=0.5, max_plate_nesting=1, num_particles=3, vectorize_particles=True)
    value = ours.differentiable_loss(m.model, m.guide, x, 20)
    value.backward()
    assert torch.isfinite(value) and m.mu_c.grad.abs().sum() > 0


def test_a_model_without_the_sites_is_refused_only_when_terms_are_active():
    def model(x, num_data=None):
        with data_plate(x, num_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x, num_data=None):
        with data_plate(x, num_data):
            pyro.sample("z", dist.Normal(x, 1.0).to_event(1))

    with pytest.warns(UserWarning):  # Pyro: no enumerated site
        MixtureELBO(max_plate_nesting=1).loss(model, guide, X)
    with pytest.raises(ValueError, match="'c'"), pytest.warns(UserWarning):
        MixtureELBO(alpha=1.0, max_plate_nesting=1).loss(model, guide, X)


def test_gmvae_terms_use_the_model_posterior_at_the_guide_draws():
    """The posterior guide's p(c | z, w) from the beta-net at fixed (z, w), by hand."""
    torch.manual_seed(0)
    m = GMVAE((2,), 3, "gaussian", hidden=(8,), beta_hidden=8)
    x = torch.randn(4, 2)
    z0, w0 = torch.randn(4, 2), torch.randn(4, 2)

    def point_guide(x, num_data=None):
        with data_plate(x, num_data):
            pyro.sample("w", dist.Delta(w0).to_event(1))
            pyro.sample("z", dist.Delta(z0).to_event(1))

    with torch.no_grad():
        loc, scale = m.components(w0)  # (B, K, D)
        post = torch.softmax(_log_normal(z0[:, None, :], loc, scale ** 2), -1)  # pi uniform
    ent = -(post * post.log()).sum(-1)
    kl = (post * (post.log() + math.log(3))).sum(-1)
    elbo = MixtureELBO(eta=2.0, alpha=0.5, max_plate_nesting=1)
    diff = elbo.loss(m.model, point_guide, x) - TraceEnum_ELBO(max_plate_nesting=1).loss(m.model, point_guide, x)
    assert diff == pytest.approx(float(kl.sum() + 0.5 * ent.sum()), rel=1e-4)
