"""VIB-GMM: the Hershey-Olsen D_vKL, the s-weighted objectives and the annealing schedule.

Every check compares with a computation written here from the paper's formulas (eq. 9, 18) or
with a Monte Carlo estimate, never with the package's own output.
"""
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from pyro_mixvae import VIBGMM as VIBGMMEstimator
from pyro_mixvae.cli import main
from pyro_mixvae.errors import ConfigError
from pyro_mixvae.infer import GeometricSchedule, InformationBottleneckELBO, LinearSchedule, TrainConfig, fit
from pyro_mixvae.models import VIBGMM, VaDE

from conftest import TINY


class FixedMixture:
    """A hand-made mixture model with the package's site pattern and fixed numbers.

    c ~ Cat(pi); z | c ~ N(mu_c, diag sigma_c^2); x | z ~ N(z, 1); guide q(z|x) = N(q_loc, diag q_scale^2).
    """

    def __init__(self, pi, mu, sigma, q_loc, q_scale):
        t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float64)  # noqa: E731
        self.pi, self.mu, self.sigma, self.q_loc, self.q_scale = map(t, (pi, mu, sigma, q_loc, q_scale))
        self.q_loc.requires_grad_()  # Pyro differentiates the loss

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(probs=self.pi), infer={"enumerate": "parallel"})
            z = pyro.sample("z", dist.Normal(self.mu[c], self.sigma[c]).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.q_loc, self.q_scale).to_event(1))


def eq18(pi, mu, sigma, q_loc, q_scale):
    """D_vKL per point written from eq. 18 of vib-gmm.txt with numpy."""
    pi, mu, sigma, q_loc, q_scale = (np.asarray(v, dtype=np.float64) for v in (pi, mu, sigma, q_loc, q_scale))
    var_c, var_q = sigma[None] ** 2, q_scale[:, None] ** 2             # (1, K, J), (B, 1, J)
    diff = q_loc[:, None] - mu[None]
    kl = 0.5 * (diff ** 2 / var_c + np.log(var_c / var_q) - 1 + var_q / var_c).sum(-1)  # (B, K)
    return -np.log((pi[None] * np.exp(-kl)).sum(-1))


def _np(t):
    return t.detach().numpy()


def mc_true_kl(m: FixedMixture, n=400_000, seed=0):
    """Monte Carlo KL(q(z|x) || sum_c pi_c N(mu_c, sigma_c^2)) per point, with its standard error."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((n,) + tuple(m.q_loc.shape), generator=g, dtype=torch.float64)
    z = m.q_loc + m.q_scale * eps                                               # (n, B, J)
    log_q = dist.Normal(m.q_loc, m.q_scale).log_prob(z).sum(-1)
    comp = dist.Normal(m.mu, m.sigma).log_prob(z.unsqueeze(-2)).sum(-1)        # (n, B, K)
    log_p = (comp + m.pi.log()).logsumexp(-1)
    d = (log_q - log_p).detach().numpy()
    return d.mean(0), d.std(0) / math.sqrt(n)


TWO = dict(pi=[0.3, 0.7], mu=[[-1.0, 0.5], [1.5, -0.5]], sigma=[[0.8, 1.2], [0.5, 0.7]],
           q_loc=[[0.2, 0.1], [1.4, -0.3], [-2.0, 1.0]], q_scale=[[0.6, 0.9], [0.3, 0.4], [1.1, 0.5]])
X = torch.tensor([[0.0, 0.5], [1.0, -1.0], [-1.5, 0.3]], dtype=torch.float64)


def terms(elbo, m, x=X, seed=0):
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(m.model, m.guide, x).detach()
    return loss, getattr(elbo, "last_terms", {})


def guide_draw(m, x=X, seed=0):
    """The z that a loss evaluated right after ``pyro.set_rng_seed(seed)`` draws (the guide runs first)."""
    pyro.set_rng_seed(seed)
    return poutine.trace(m.guide).get_trace(x).nodes["z"]["value"]


def test_d_vkl_matches_eq18_on_two_components():
    m = FixedMixture(**TWO)
    elbo = InformationBottleneckELBO(s=1.0, max_plate_nesting=1)
    _, t = terms(elbo, m)
    expected = eq18(**TWO)
    assert float(t["d_vkl"]) == pytest.approx(expected.mean(), rel=1e-10)


def test_d_vkl_is_an_upper_bound_on_the_true_kl_and_exact_for_one_component():
    m = FixedMixture(**TWO)
    mc, se = mc_true_kl(m)
    bound = eq18(**TWO)
    elbo = InformationBottleneckELBO(max_plate_nesting=1)
    _, t = terms(elbo, m)
    assert float(t["d_vkl"]) >= mc.mean() - 4 * se.max()
    assert np.all(bound >= mc - 4 * se)
    assert np.any(bound > mc + 10 * se)  # a real gap here, so the comparison has teeth
    # K = 1: the mixture is one Gaussian and D_vKL is its KL exactly
    one = dict(TWO, pi=[1.0], mu=[TWO["mu"][0]], sigma=[TWO["sigma"][0]])
    m1 = FixedMixture(**one)
    mc1, se1 = mc_true_kl(m1)
    _, t1 = terms(InformationBottleneckELBO(max_plate_nesting=1), m1)
    exact = eq18(**one)  # with pi = 1 eq. 18 is the Gaussian KL of eq. 22
    assert float(t1["d_vkl"]) == pytest.approx(exact.mean(), rel=1e-10)
    assert np.allclose(exact, mc1, atol=4 * se1.max())


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_vib_loss_is_reconstruction_plus_s_times_d_vkl(s):
    m = FixedMixture(**TWO)
    z = guide_draw(m)
    loss, t = terms(InformationBottleneckELBO(s=s, max_plate_nesting=1), m)
    recon = -dist.Normal(z, 1.0).log_prob(X).sum(-1).detach().numpy()
    expected = (recon + s * eq18(**TWO)).sum()
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    assert float(t["recon"]) == pytest.approx(recon.mean(), rel=1e-9)


def test_sampled_kl_with_s_one_is_traceenum_and_s_scales_it():
    m = FixedMixture(**TWO)
    base, _ = terms(TraceEnum_ELBO(max_plate_nesting=1), m)
    one, _ = terms(InformationBottleneckELBO(s=1.0, kl="sampled", max_plate_nesting=1), m)
    assert float(one) == float(base)  # the same computation: exactly equal
    # eq. 9 by hand at the same draw: recon + s * (log q(z|x) - log sum_c pi_c N(z | mu_c, sigma_c))
    z = guide_draw(m)
    recon = -dist.Normal(z, 1.0).log_prob(X).sum(-1)
    log_q = dist.Normal(m.q_loc, m.q_scale).log_prob(z).sum(-1)
    log_p = (dist.Normal(m.mu, m.sigma).log_prob(z.unsqueeze(-2)).sum(-1) + m.pi.log()).logsumexp(-1)
    assert float(base) == pytest.approx(float((recon + log_q - log_p).sum()), rel=1e-9)
    for s in (0.0, 0.3, 3.0):
        loss, _ = terms(InformationBottleneckELBO(s=s, kl="sampled", max_plate_nesting=1), m)
        assert float(loss) == pytest.approx(float((recon + s * (log_q - log_p)).sum()), rel=1e-9)


def test_vade_s_setting_gives_the_s_bound_and_s_one_is_plain_vade():
    torch.manual_seed(0)
    x = torch.rand(6, 8).round()
    model = VaDE((8,), 3, "bernoulli", hidden=(16,), latent_dim=2)
    assert isinstance(model.make_elbo(), TraceEnum_ELBO) and not isinstance(model.make_elbo(), InformationBottleneckELBO)
    weighted = VaDE((8,), 3, "bernoulli", hidden=(16,), latent_dim=2, s=0.25)
    weighted.load_state_dict(model.state_dict())
    elbo = weighted.make_elbo()
    assert isinstance(elbo, InformationBottleneckELBO) and elbo.s == 0.25 and elbo.kl == "sampled"
    pyro.set_rng_seed(1)
    plain = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model.model, model.guide, x)
    pyro.set_rng_seed(1)
    loss = elbo.differentiable_loss(weighted.model, weighted.guide, x)
    kl = elbo.last_terms["kl_sampled"] * len(x)
    # plain = recon + KL, weighted = recon + 0.25 KL  ->  plain - weighted = 0.75 KL
    assert float(plain - loss) == pytest.approx(0.75 * float(kl), rel=1e-5)


def test_geometric_schedule_is_algorithm_2():
    sched = GeometricSchedule("s", start=1.0, stop=5.0, step=0.5, every=2)
    got = [sched.value(e) for e in range(1, 12)]
    expected = [1, 1, 1.5, 1.5, 2.25, 2.25, 3.375, 3.375, 5, 5, 5]  # 1.5^4 = 5.06 is capped at s_max
    assert got == pytest.approx(expected, rel=1e-12)
    assert GeometricSchedule("s", 2.0, 2.0, 0.1, 1).value(1000) == 2.0
    ramp = LinearSchedule("s", 0.0, 1.0, epochs=4)
    assert [ramp.value(e) for e in range(1, 7)] == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1])
    for bad in (dict(start=0.0, stop=1.0, step=0.1), dict(start=2.0, stop=1.0, step=0.1),
                dict(start=1.0, stop=2.0, step=-0.1), dict(start=1.0, stop=2.0, step=0.1, every=0)):
        with pytest.raises(ConfigError):
            GeometricSchedule("s", **bad)


def test_fit_runs_the_schedule_and_records_the_vib_terms():
    torch.manual_seed(0)
    x = torch.rand(60, 8).round()
    model = VIBGMM((8,), 3, "bernoulli", hidden=(16,), latent_dim=2, s_min=1.0, s_max=2.0, s_step=0.5, s_every=2)
    hist = fit(model, x, config=TrainConfig(epochs=6, batch_size=25, seed=0), progress=False)
    assert hist.column("s") == pytest.approx([1, 1, 1.5, 1.5, 2, 2])
    for r in hist.records:  # the objective is -(recon + s D_vKL + hold KL(gamma || p(c|z))), averaged alike
        held = r["hold"] * r["held_kl"] if r.get("hold") else 0.0
        assert r["objective"] == pytest.approx(-(r["recon"] + r["s"] * r["d_vkl"] + held), rel=1e-5)
        assert r["d_vkl"] > 0


def test_vib_gmm_assigns_by_eq19_at_the_encoder_mean():
    torch.manual_seed(0)
    model = VIBGMM((8,), 3, "bernoulli", hidden=(16,), latent_dim=2)
    x = torch.rand(5, 8).round()
    model.eval()
    mu = model.encoder(x)[0]
    log_pi = torch.log_softmax(model.pi_logits, -1)
    dens = log_pi + dist.Normal(model.mu_c, torch.exp(0.5 * model.log_var_c)).log_prob(mu[:, None]).sum(-1)
    assert torch.allclose(model.responsibilities(x), torch.softmax(dens, -1), atol=1e-6)


def test_cli_and_estimator(tmp_path, blobs_npz, capsys):
    out = tmp_path / "run"
    rc = main(["fit", "vib-gmm", "--data", str(blobs_npz), "--epochs", "3", "--pretrain-epochs", "1", "--out", str(out), "--quiet",
               "--set", "s_min=0.5", "--set", "s_max=2", "--set", "s_step=1", "--set", "s_every=1", *TINY])
    assert rc == 0
    lines = (out / "history.jsonl").read_text().splitlines()
    assert [round(__import__("json").loads(line)["s"], 6) for line in lines] == [0.5, 1.0, 2.0]
    x = np.load(blobs_npz)["x"]
    est = VIBGMMEstimator(3, epochs=2, pretrain_epochs=1, hidden=(16,), latent_dim=2, s_min=0.5, s_max=2.0,
                          s_step=1.0, s_every=1).fit(x)
    assert est.predict(x).shape == (len(x),) and est.history_.records[-1]["s"] == 1.0


@pytest.mark.parametrize("bad", [["--set", "s_min=2", "--set", "s_max=1"], ["--set", "s_every=0"],
                                 ["--set", "s_step=-1"], ["--set", "kl=exact"], ["--set", "s_min=0"]])
def test_cli_refuses_bad_vib_settings(tmp_path, blobs_npz, capsys, bad):
    rc = main(["fit", "vib-gmm", "--data", str(blobs_npz), "--out", str(tmp_path / "r"), "--quiet", *bad])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("mixvae: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
