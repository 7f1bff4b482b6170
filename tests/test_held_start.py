"""The held start (``hold_start``): VaDE eq. 12 with q(c | x) held at the mixture start's responsibilities.

The bound is checked against Pyro's own computation of the mean-field bound -- a guide that draws
c from q(c | x) = gamma, enumerated by ``TraceEnum_ELBO`` on the guide side -- and the training loop
against an uninterrupted run when resumed inside the hand-over.
"""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_mixvae.infer.elbo import MixtureELBO
from pyro_mixvae.infer import fit
from pyro_mixvae.runner import fit_in_directory
from pyro_mixvae.infer.train import TrainConfig
from pyro_mixvae.models import GMVAE, VIBGMM, VaDE
from pyro_mixvae.models.base import data_plate


def small_vade(**settings):
    torch.manual_seed(0)
    return VaDE((6,), 3, "bernoulli", hidden=(8,), latent_dim=2, **settings)


def test_a_held_weight_of_one_is_the_mean_field_bound_with_that_q_c():
    """MixtureELBO(hold=1) with gamma == TraceEnum_ELBO of the guide that draws c from gamma (eq. 12), for
    the same draw of z; hold=0 is the collapsed bound, and in between the bound moves linearly."""
    m = small_vade()
    x = torch.rand(5, 6).round()
    gamma = torch.softmax(torch.randn(5, 3), -1)

    def mean_field_guide(x, num_data):
        with data_plate(x, num_data):
            pyro.sample("c", dist.Categorical(probs=gamma), infer={"enumerate": "parallel"})
            loc, scale = m.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def loss(elbo, guide, **kw):
        pyro.set_rng_seed(1)
        return float(elbo.differentiable_loss(m.model, guide, x, len(x), **kw).detach())

    expected = loss(TraceEnum_ELBO(max_plate_nesting=1), mean_field_guide)
    collapsed = loss(TraceEnum_ELBO(max_plate_nesting=1), m.guide)
    held = [loss(MixtureELBO(hold=w, max_plate_nesting=1), m.guide, held_responsibilities=gamma)
            for w in (0.0, 0.5, 1.0)]
    assert held[2] == pytest.approx(expected, rel=1e-5)
    assert held[0] == pytest.approx(collapsed, rel=1e-6)
    assert held[1] == pytest.approx((held[0] + held[2]) / 2, rel=1e-5)
    assert expected > collapsed  # eq. 15: the mean-field loss is never below the collapsed one


@pytest.mark.parametrize("cls", [VaDE, VIBGMM, GMVAE])
def test_the_hold_falls_from_one_to_zero_and_the_start_is_held_meanwhile(cls):
    torch.manual_seed(0)
    x = torch.rand(60, 6).round()
    extra = {"hidden": (8,), "latent_dim": 2} if cls is not GMVAE else {"arch": "mlp", "hidden": (8,), "latent_dim": 2}
    # a start decided in another space than the mixture's (here gmm_assign="full"), whose responsibilities it holds
    m = cls((6,), 3, "bernoulli", hold_start=2, gmm_assign="full", **extra)
    hist = fit(m, x, config=TrainConfig(epochs=4, pretrain_epochs=2, batch_size=20, seed=0), progress=False)
    assert [r["hold"] for r in hist.records] == [1.0, 0.5, 0.0, 0.0]
    assert all(r["held_kl"] >= 0 for r in hist.records)
    off = cls((6,), 3, "bernoulli", hold_start=0, **extra)
    assert not any(s.attr == "hold" for s in off.schedules())


def test_a_run_resumed_inside_the_hand_over_ends_as_an_uninterrupted_one(tmp_path):
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(0)).round()
    cfg = dict(pretrain_epochs=1, batch_size=20, seed=0)
    whole = small_vade(hold_start=3, gmm_assign="full")
    hist = fit_in_directory(whole, x, None, tmp_path / "a", config=TrainConfig(epochs=4, **cfg), progress=False).history
    assert [r["hold"] for r in hist.records] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    part = small_vade(hold_start=3, gmm_assign="full")
    fit_in_directory(part, x, None, tmp_path / "b", config=TrainConfig(epochs=2, **cfg), progress=False)
    pyro.set_rng_seed(5)
    resumed = small_vade(hold_start=3, gmm_assign="full")
    fit_in_directory(resumed, x, None, tmp_path / "b", config=TrainConfig(epochs=4, **cfg), resume=True, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name



def test_the_held_responsibilities_are_those_that_decided_the_start_and_p_c_given_mu_elsewhere():
    """Points the start was decided on are held at its responsibilities (here two autoencoders' consensus:
    one-hot labels); a point it left out (a NaN row, as beyond a t-SNE subset) at p(c | mu(x)) of the
    pretrained model."""
    from pyro_mixvae.infer.train import begin, hold_start, predict_proba, prepare

    x = torch.rand(30, 6, generator=torch.Generator().manual_seed(0)).round()
    m = small_vade(hold_start=2, start_autoencoders=2)
    run = prepare(m, x, config=TrainConfig(epochs=2, pretrain_epochs=1, batch_size=10, seed=0))
    begin(run, resume=False, pretrain=True, progress=False)
    decided = m.start_responsibilities
    assert decided.shape == (30, 3) and torch.equal(decided.sum(1), torch.ones(30))  # one-hot rows
    assert set(decided.unique().tolist()) == {0.0, 1.0}
    held = run.observed[MixtureELBO.HELD]
    assert torch.equal(held, decided)

    m.start_responsibilities = decided.clone()
    m.start_responsibilities[:4] = float("nan")
    hold_start(run)
    held = run.observed[MixtureELBO.HELD]
    assert torch.allclose(held[:4], predict_proba(m, x[:4]))
    assert torch.equal(held[4:], decided[4:])


def test_an_elbo_passed_in_without_the_held_term_trains_the_model_without_it():
    """The held start is a term of the model's own objective: stock Pyro's TraceEnum_ELBO, passed in, trains
    the model (hold_start on by default) on the plain bound, with no hold in the records."""
    from pyro_mixvae.infer.train import train

    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(0)).round()
    m = small_vade()
    assert any(s.attr == "hold" for s in m.schedules())
    hist = train(m, x, config=TrainConfig(epochs=2, pretrain_epochs=1, batch_size=20, seed=0),
                 elbo=TraceEnum_ELBO(max_plate_nesting=1), progress=False)
    assert [r["epoch"] for r in hist.records] == [1, 2] and not any("hold" in r for r in hist.records)


@pytest.mark.parametrize("resume", [False, True])
def test_a_start_that_is_the_mixtures_own_posterior_holds_nothing(tmp_path, resume):
    """A diagonal GMM on the codes (the start on small data) decides by the mixture's own posterior: there is
    nothing more to hold, and the run trains the plain bound from its first epoch, resumed or not."""
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(0)).round()
    m = small_vade(hold_start=3, gmm_assign="diag")
    cfg = dict(pretrain_epochs=1, batch_size=20, seed=0)
    hist = fit_in_directory(m, x, None, tmp_path, config=TrainConfig(epochs=2, **cfg), progress=False).history
    if resume:
        hist = fit_in_directory(small_vade(hold_start=3, gmm_assign="diag"), x, None, tmp_path,
                                config=TrainConfig(epochs=4, **cfg), resume=True, progress=False).history
    assert m.start_responsibilities is None
    assert all("elbo" in r and "hold" not in r and "objective" not in r for r in hist.records)

