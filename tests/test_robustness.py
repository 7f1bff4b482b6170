"""A clear clustering survives SVI (issue 17), and a collapse, when it happens, is said.

The cause measured in ``docs/studies/robustness.md``: right after pretraining q(z|x)'s
scale head is untrained (scale ~1) against components fitted on the codes (sd ~0.03), and Adam's
first steps are lr * sign(g) on every weight of a wide network. The fixes, checked here against
hand computations: q(z|x) starts with the components' variance, and the learning rate warms up
linearly; on small real-valued data the shared decoder variance starts at its maximum-likelihood
value. The end-to-end checks run every model with its defaults on small well-separated sets.
"""
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from pyro_mixvae.errors import ClusterCollapseWarning
from pyro_mixvae.evaluation import evaluate
from pyro_mixvae.infer.collapse import CollapseWatch
from pyro_mixvae.metrics import acc
from pyro_mixvae.infer.train import TrainConfig, WarmupStepDecay, fit, seed_everything
from pyro_mixvae.models import build
from pyro_mixvae.nets import fit_data_units, resolve_likelihood
from pyro_mixvae.synthetic import guide_example, load_table, make_separated_blobs

MODELS = ("vade", "gmvae", "vib-gmm", "factorial")


def _rates(schedule, steps_per_epoch, steps):
    seen = []
    for t in range(steps):
        seen.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.step()
        if (t + 1) % steps_per_epoch == 0:
            schedule.end_epoch()
    return seen


def test_warm_up_and_step_decay_follow_the_formula():
    """lr 1e-2, warm-up 4 steps, 3 steps per epoch, x0.5 every 2 epochs, written out by hand."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    seen = _rates(WarmupStepDecay(opt, 1e-2, lr_decay=0.5, lr_step=2, lr_warmup=4), 3, 13)
    expected = [0.25, 0.5, 0.75, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert seen == pytest.approx([1e-2 * e for e in expected])


def test_no_warm_up_is_the_step_decay_alone_and_the_state_resumes():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = WarmupStepDecay(opt, 1.0, lr_decay=0.9, lr_step=1, lr_warmup=0)
    assert _rates(schedule, 2, 6) == pytest.approx([1, 1, 0.9, 0.9, 0.81, 0.81])
    other = WarmupStepDecay(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=5.0), 1.0, 0.9, 1, 0)
    other.load_state_dict(schedule.state_dict())
    assert other.optimizer.param_groups[0]["lr"] == pytest.approx(0.729)


def test_pretraining_starts_the_guide_as_wide_as_the_narrowest_component():
    data = guide_example()
    x = torch.as_tensor(data.x)
    seed_everything(0)
    model = build("vade", data.x.shape[1:], 4, "bernoulli", {"hidden": (32, 32), "latent_dim": 3})
    model.pretrain(x, epochs=3, batch_size=100, seed=0)
    _, scale = model.encoder(x)
    expected = model.log_var_c.detach().exp().min(0).values.sqrt()  # sqrt(min_c sigma_c^2), per dimension
    assert torch.allclose(scale, expected.expand_as(scale), rtol=1e-5)
    assert float(expected.max()) < 0.5  # the components are tight: the untrained head's ~1 would not be


@pytest.mark.parametrize("model_name", ["vade", "gmvae", "factorial"])
def test_pretraining_hands_svi_the_shared_variance_that_maximises_the_likelihood(model_name):
    """gaussian-shared: after pretraining, log sigma_x^2 is where the reconstruction likelihood of the
    data at z ~ q(z|x) is stationary in it and highest: perturbing it either way lowers it."""
    data = guide_example()
    x = torch.as_tensor(data.x)
    seed_everything(0)
    hidden = (32, 32) if model_name == "gmvae" else (32, 32, 64)
    model = build(model_name, data.x.shape[1:], 4, "gaussian-shared", {"hidden": hidden})
    fit_data_units(model, x)  # as a run does first: the parameter is in standardised units
    model.pretrain(x, epochs=3, batch_size=100, seed=0)
    log_var = model.decoder.log_var.detach() + 2 * torch.log(model.likelihood.units.scale)  # in the data's units
    with torch.no_grad():  # the same draws of z as the pretraining's last step (its generator, seed 0)
        loc, scale = model.encoder.eval()(x)
        z = loc + scale * torch.randn(loc.shape, generator=torch.Generator().manual_seed(0))
        mean = model.likelihood.mean(model.decoder.eval()(z))

    def log_lik(lv):  # sum_n log N(x_n | mu_x(z_n), exp(lv)), written out
        return float((-0.5 * (np.log(2 * np.pi) + lv + (x - mean) ** 2 / lv.exp())).sum())

    best = log_lik(log_var)
    for delta in (-0.05, 0.05):
        assert log_lik(log_var + delta) < best


def test_collapse_watch_warns_only_for_a_collapse_that_lasts():
    watch = CollapseWatch(4, start_used=4)
    for epoch, used in enumerate([4, 3, 4, 4], 1):  # a dip that recovers
        watch(epoch, {"clusters_used": used})
    assert watch.finish() is None
    watch = CollapseWatch(4, start_used=4)
    for epoch, used in enumerate([4, 3, 4, 2, 1], 1):
        watch(epoch, {"clusters_used": used})
    with pytest.warns(ClusterCollapseWarning, match="since epoch 4"):
        assert watch.finish() == {"epoch": 4, "clusters_used": 1, "start_clusters_used": 4}
    watch = CollapseWatch(4, start_used=3)  # a start that did not use all K: nothing to lose
    watch(1, {"clusters_used": 2})
    assert watch.finish() is None


def test_a_forced_collapse_is_warned_and_recorded():
    """All components made identical after epoch 1: every point goes to one cluster from epoch 2 on."""
    data = guide_example()
    seed_everything(0)
    model = build("vade", data.x.shape[1:], 4, "bernoulli", {"hidden": (32, 32), "latent_dim": 3,
                                                             "gmm_assign": "diag"})

    def merge(epoch, record):
        if epoch == 1:
            with torch.no_grad():
                model.mu_c.copy_(model.mu_c.mean(0, keepdim=True).expand_as(model.mu_c))
                model.log_var_c.fill_(0.0)
                model.pi_logits.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))

    config = TrainConfig(seed=0, device="cpu", epochs=3, pretrain_epochs=20, lr=1e-5)
    with pytest.warns(ClusterCollapseWarning, match="since epoch 2"):
        history = fit(model, torch.as_tensor(data.x), data.y, config=config, progress=False, callbacks=[merge])
    assert history.pretrain["clusters_used"] == 4
    assert history.collapse == {"epoch": 2, "clusters_used": 1, "start_clusters_used": 4}


def _defaults_run(model_name, data, seed=0):
    k = len(np.unique(data.y))
    seed_everything(seed)
    model = build(model_name, data.x.shape[1:], k, resolve_likelihood("auto", data.x))
    history = fit(model, torch.as_tensor(data.x), data.y, config=TrainConfig(seed=seed, device="cpu"),
                  progress=False)
    return k, history, evaluate(model, torch.as_tensor(data.x), data.y)


@pytest.mark.parametrize("model_name", MODELS)
def test_the_guide_example_keeps_its_four_clusters(model_name):
    """The guide's data (a table in [0, 1]: the shared-variance Gaussian) with every model's defaults, seed 0."""
    k, history, end = _defaults_run(model_name, guide_example())
    assert end["clusters_used"] == k
    assert end["acc"] >= 0.95
    assert history.collapse is None


@pytest.mark.parametrize("model_name", ("vade", "gmvae"))
def test_unbounded_blobs_keep_their_clusters(model_name):
    """Gaussian likelihood: six well-separated blobs in 10 dimensions (the issue's second case, smaller)."""
    k, history, end = _defaults_run(model_name, make_separated_blobs(300, 10, 6, seed=5))
    start = history.pretrain
    assert start["clusters_used"] == k
    assert end["clusters_used"] == k
    assert end["acc"] >= start["acc"] - 0.02


def test_a_table_in_its_own_units_is_clustered_as_the_standardised_one():
    """The networks see standardised columns whatever the data's units (nets.Standardize): the same
    blobs with columns rescaled by 1e-3 .. 1e3 and shifted give the same clustering, and an ELBO lower
    by exactly the log-Jacobian sum_d log a_d per point (the density in the data's units)."""
    data = make_separated_blobs(200, 4, 3, seed=7)
    a = np.array([1e-3, 1.0, 30.0, 1e3], dtype=np.float32)
    raw = data.x * a + np.array([0.0, -5.0, 100.0, 4e4], dtype=np.float32)
    runs = []
    for x in (data.x, raw):
        seed_everything(0)
        model = build("vade", x.shape[1:], 3, resolve_likelihood("auto", x), {"hidden": (32, 32), "latent_dim": 3})
        fit(model, torch.as_tensor(x), data.y, config=TrainConfig(seed=0, device="cpu", epochs=3, pretrain_epochs=5),
            progress=False)
        runs.append(evaluate(model, torch.as_tensor(x), data.y))
    assert runs[0]["acc"] == runs[1]["acc"] and runs[0]["nmi"] == pytest.approx(runs[1]["nmi"], abs=1e-6)
    assert runs[1]["elbo"] == pytest.approx(runs[0]["elbo"] - float(np.log(a).sum()), abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("table", ("iris", "wine", "breast-cancer"))
def test_standardised_tables_keep_their_start(model_name, table):
    data = load_table(table)
    k, history, end = _defaults_run(model_name, data)
    start = history.pretrain if "acc" in history.pretrain else history.records[0]
    assert end["clusters_used"] == k or start["clusters_used"] < k
    kmeans = KMeans(k, n_init=10, random_state=0).fit_predict(data.x)
    assert end["acc"] >= start["acc"] - 0.02 or end["acc"] >= acc(data.y, kmeans)


def test_default_pretraining_lasts_a_minimum_number_of_steps():
    vade = build("vade", (20,), 4, "bernoulli", {"hidden": (8,), "latent_dim": 2})
    assert vade.train_defaults["pretrain_epochs"] == 50
    # 200 points in batches of 100: 2 steps per epoch, so 300 steps take 150 epochs
    assert TrainConfig(device="cpu").for_model(vade, num_data=200).pretrain_epochs == 150
    assert TrainConfig(device="cpu").for_model(vade, num_data=1797).pretrain_epochs == 50  # 18 x 50 = 900 steps
    assert TrainConfig(device="cpu", batch_size=10).for_model(vade, num_data=200).pretrain_epochs == 50
    assert TrainConfig(device="cpu", pretrain_epochs=3).for_model(vade, num_data=200).pretrain_epochs == 3
    gmvae_2d = build("gmvae", (2,), 4, "gaussian")  # fc120: no pretraining by default, and none added
    assert TrainConfig(device="cpu").for_model(gmvae_2d, num_data=200).pretrain_epochs == 0
