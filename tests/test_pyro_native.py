"""The models under Pyro's own machinery (issue 18): stock SVI, Predictive, the conjugate hook."""
import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive
from pyro.infer.inspect import get_model_relations

from pyro_mixvae.infer.train import TrainConfig, fit
from pyro_mixvae.models import build

SHAPE = (12,)
N = 96
NOISE = 0.15
# every model and guide, with tiny networks
CONFIGS = {
    "vade": ("vade", {"hidden": (16,), "latent_dim": 2}),
    "gmvae-posterior": ("gmvae", {"hidden": (16,), "latent_dim": 2, "w_dim": 2, "beta_hidden": 8}),
    "gmvae-mean-field": ("gmvae", {"hidden": (16,), "latent_dim": 2, "w_dim": 2, "beta_hidden": 8,
                                   "guide": "mean-field"}),
    "vib-gmm": ("vib-gmm", {"hidden": (16,), "latent_dim": 2}),
    "factorial": ("factorial", {"hidden": (16,), "dim": 2, "factors": 2, "components": (3, 2)}),
}


def blobs(n=N, k=3, seed=0):
    """Three well-separated binary-ish patterns in [0, 1]^12 and their labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.95] * 4 + [0.05] * 8, [0.05] * 4 + [0.95] * 4 + [0.05] * 4, [0.05] * 8 + [0.95] * 4])
    y = torch.arange(n) % k
    x = (centres[y] + NOISE * torch.randn(n, SHAPE[0], generator=g)).clamp(0, 1)
    return x, y


def make(key, seed=0):
    name, settings = CONFIGS[key]
    torch.manual_seed(seed)
    return build(name, SHAPE, 3, "bernoulli", settings)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_stock_svi_trains_every_parameter(key):
    m = make(key)
    x, _ = blobs()
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    pyro.set_rng_seed(1)
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), m.make_elbo())
    losses = []
    for _ in range(25):
        losses.append(svi.step(x, N))
        m.conjugate_step(x, N)
    unchanged = [k for k, v in m.named_parameters() if torch.equal(v.detach(), before[k])]
    assert unchanged == []
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert len(pyro.get_param_store()) == 0  # nothing went to the global store


def test_two_models_in_one_process_are_independent():
    a, b = make("vade", seed=0), make("vade", seed=1)
    x, _ = blobs()
    b_before = {k: v.detach().clone() for k, v in b.named_parameters()}
    svi = SVI(a.model, a.guide, pyro.optim.Adam({"lr": 1e-2}), a.make_elbo())
    for _ in range(3):
        svi.step(x, N)
    assert all(torch.equal(v, b_before[k]) for k, v in b.named_parameters())
    a_after = {k: v.detach().clone() for k, v in a.named_parameters()}
    svi_b = SVI(b.model, b.guide, pyro.optim.Adam({"lr": 1e-2}), b.make_elbo())
    for _ in range(3):
        svi_b.step(x, N)
    assert all(torch.equal(v, a_after[k]) for k, v in a.named_parameters())
    assert any(not torch.equal(v, b_before[k]) for k, v in b.named_parameters())


def plain_loop(m, x, lr, batch_size, seed, labels=None):
    """What the guide's plain Pyro loop does: stock SVI, then the public conjugate step."""
    pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # the minibatch order of fit
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": lr}), m.make_elbo())
    for idx in torch.randperm(x.shape[0], generator=generator).split(batch_size):
        observed = {} if labels is None else {"labels": labels[idx]}
        svi.step(x[idx], x.shape[0], **observed)
        m.conjugate_step(x[idx], x.shape[0], **observed)


@pytest.mark.parametrize("delta", [0.0, 2.0])
def test_plain_svi_loop_with_conjugate_step_equals_fit(delta):
    x, y = blobs()
    labels = torch.where(torch.arange(N) % 4 == 0, y, -1)[:, None].repeat(1, 2)
    labels[:, 1] = torch.where(labels[:, 1] >= 0, labels[:, 1] % 2, -1)
    name, settings = CONFIGS["factorial"]
    settings = {**settings, "delta": delta}
    torch.manual_seed(0)
    fitted = build(name, SHAPE, 3, "bernoulli", settings)
    mine = build(name, SHAPE, 3, "bernoulli", settings)
    mine.load_state_dict(fitted.state_dict())
    # fit's learning-rate warm-up off: the plain loop below steps at a constant rate
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, lr_warmup=0, pretrain_epochs=0, seed=3, device="cpu")
    fit(fitted, x, config=cfg, observed={"labels": labels}, progress=False)
    plain_loop(mine, x, lr=1e-2, batch_size=32, seed=3, labels=labels)
    reference = fitted.state_dict()
    assert int(mine.mixtures[0].tau) == 3
    for key, value in mine.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_predictive_draws_from_the_prior(key):
    m = make(key)
    draws = Predictive(m.model, num_samples=4)(None, 5)
    assert draws["x"].shape == (4, 5) + SHAPE
    assert not torch.equal(draws["x"][0], draws["x"][1])
    x_mean, c = m.sample(7, cluster=1)
    c = c if c.dim() == 1 else c[:, 0]  # the factorial model: one column per factor
    assert x_mean.shape == (7,) + SHAPE and (c == 1).all()


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_render_model_relations_are_the_story(key):
    """What ``pyro.render_model`` draws (its relations; the picture needs graphviz)."""
    m = make(key)
    x, _ = blobs()
    relations = get_model_relations(m.model, model_args=(x[:4], N))
    parents = relations["sample_sample"]
    if key == "factorial":
        assert parents["x"] == ["z_0", "z_1"]
        assert set(parents["z_1"]) == {"r_1", "xi_1"} and parents["r_1"] == ["pi_1"]
    else:
        assert parents["x"] == ["z"] and "c" in parents["z"]
    assert "x" in relations["observed"]


def test_render_model_draws_a_picture():
    pytest.importorskip("graphviz")
    m = make("vade")
    x, _ = blobs()
    graph = pyro.render_model(m.model, model_args=(x[:4], N))
    assert "z" in graph.source and "x" in graph.source


@pytest.fixture(scope="module")
def trained_vade():
    x, y = blobs(n=150)
    name, settings = CONFIGS["vade"]
    torch.manual_seed(0)
    m = build(name, SHAPE, 3, "bernoulli", {**settings, "gmm_assign": "diag", "gmm_restarts": 2, "pretrain_lr": 1e-2})
    cfg = TrainConfig(epochs=10, batch_size=50, lr=2e-3, pretrain_epochs=30, seed=0, device="cpu")
    with pyro.validation_enabled(False):
        fit(m, x, y.numpy(), config=cfg, progress=False)
    m.eval()
    return m, x, y


def test_generated_samples_of_a_cluster_come_from_it(trained_vade):
    m, x, y = trained_vade
    used = torch.unique(m.responsibilities(x).argmax(-1))
    assert len(used) == 3  # the three blobs are three clusters
    for k in range(3):
        x_mean, c = m.sample(200, cluster=k)
        assert (c == k).all()
        assert m.responsibilities(x_mean).mean(0)[k] > 0.8


def test_posterior_predictive_reconstructs(trained_vade):
    m, x, _ = trained_vade
    recon = m.reconstruct(x[:30], num_samples=5)
    assert recon.shape == (5, 30) + SHAPE
    own = (recon.mean(0) - x[:30]).pow(2).mean()
    other = (recon.mean(0) - x[1:31]).pow(2).mean()  # the next point: another blob
    assert own < 0.2 * other
