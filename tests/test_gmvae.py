"""GMVAE (both guides): its bounds against plain-torch computations, shapes, particles, settings, CLI."""
import json
import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_mixvae import GMVAE as GMVAEEstimator
from pyro_mixvae.cli import main
from pyro_mixvae.errors import ConfigError
from pyro_mixvae.infer import MixtureELBO, TrainConfig, fit
from pyro_mixvae.models import GMVAE, build
from pyro_mixvae.models.gmvae import default_arch

GUIDES = ["posterior", "mean-field"]
TINY_NETS = dict(hidden=(8,), beta_hidden=8)


def _model(guide, shape=(2,), k=3, likelihood="gaussian", seed=0, **kw):
    torch.manual_seed(seed)
    return GMVAE(shape, k, likelihood, guide=guide, **{**TINY_NETS, **kw})


def _x(n=5, seed=1):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- the bounds
def _log_normal(z, loc, var):
    return (-0.5 * (math.log(2 * math.pi) + torch.log(var) + (z - loc) ** 2 / var)).sum(-1)


@torch.no_grad()
def _torch_bound(m, x, draws):
    """Per-draw, per-point bound written out in plain torch (Gaussian likelihood).

    posterior guide (MI paper eq. 4 with c summed out): log p(x|z) + log sum_k pi_k N(z|mu_k(w), sigma_k^2(w))
    + log N(w|0,I) - log q(z|x) - log q(w|x);
    mean-field guide (CV paper eq. 3 with eta = 1): the mixture term becomes
    sum_k q(k|x) [log pi_k + log N(z|mu_k(w), sigma_k^2(w)) - log q(k|x)].
    """
    z_loc, z_scale, w_loc, w_scale, logits = m.encode(x)
    z = z_loc + z_scale * torch.randn((draws,) + z_loc.shape)
    w = w_loc + w_scale * torch.randn((draws,) + w_loc.shape)
    out = m.decoder(z)
    loc_x, log_var_x = out[..., 0, :], out[..., 1, :].clamp(-10, 10)
    log_lik = _log_normal(x, loc_x, log_var_x.exp())
    mu, sigma = m.components(w)  # (draws, B, K, D)
    comp = -math.log(m.n_clusters) + _log_normal(z[..., None, :], mu, sigma ** 2)
    if logits is None:
        mix = torch.logsumexp(comp, -1)
    else:
        q = torch.softmax(logits, -1)
        mix = (q * (comp - torch.log(q))).sum(-1)
    return (log_lik + mix + _log_normal(w, torch.zeros(()), torch.ones(()))
            - _log_normal(z, z_loc, z_scale ** 2) - _log_normal(w, w_loc, w_scale ** 2))


@pytest.mark.parametrize("guide", GUIDES)
def test_pyro_loss_matches_plain_torch_bound(guide):
    m, x = _model(guide).eval(), _x()
    torch.manual_seed(2)
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=100, vectorize_particles=True)
    pyro_means = torch.tensor([-elbo.loss(m.model, m.guide, x) for _ in range(40)])  # 40 x 100 draws
    ours = _torch_bound(m, x, 4000).sum(-1)
    diff = pyro_means.mean() - ours.mean()
    se = math.sqrt(pyro_means.var() / len(pyro_means) + ours.var() / len(ours))
    assert abs(diff) < 4 * se + 1e-4, (float(diff), se)


@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("particles", [1, 3])
def test_neutral_weights_give_the_plain_trace_enum_loss_exactly(guide, particles):
    m, x = _model(guide), _x()
    ours = m.make_elbo(particles)
    assert isinstance(ours, MixtureELBO) and (ours.eta, ours.alpha, ours.lam) == (1.0, 0.0, 0.0)
    plain = TraceEnum_ELBO(max_plate_nesting=1, num_particles=particles, vectorize_particles=True)
    for method in ("differentiable_loss", "loss"):
        pyro.set_rng_seed(5)
        a = getattr(ours, method)(m.model, m.guide, x, 50)
        pyro.set_rng_seed(5)
        b = getattr(plain, method)(m.model, m.guide, x, 50)
        assert float(torch.as_tensor(a).detach()) == float(torch.as_tensor(b).detach())


def test_make_elbo_uses_the_settings():
    m = _model("mean-field", eta=0.5, alpha=2.0, lam=0.1)
    e = m.make_elbo(4)
    assert (e.eta, e.alpha, e.lam, e.num_particles) == (0.5, 2.0, 0.1, 4)


# ----------------------------------------------------------------------------- particles, training
@pytest.mark.parametrize("guide", GUIDES)
def test_vectorised_particles_train(guide):
    m, x = _model(guide, eta=1.0, alpha=2.0, lam=0.2), _x(6)
    elbo = MixtureELBO(1.0, 2.0, 0.2, max_plate_nesting=1, num_particles=3, vectorize_particles=True)
    loss = elbo.differentiable_loss(m.model, m.guide, x, 60)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.components.net[0].weight.grad.abs().sum() > 0
    if guide == "mean-field":
        assert m.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("guide", GUIDES)
def test_fit_records_the_cluster_terms(guide):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 0.3, (30, 2)), rng.normal(2, 0.3, (30, 2))]).astype(np.float32)
    y = np.repeat([0, 1], 30)
    m = _model(guide, alpha=1.0)
    history = fit(m, x, y, config=TrainConfig(epochs=2, batch_size=20, num_particles=3, device="cpu"),
                  progress=False)
    rec = history.last()
    for key in ("z_prior", "cv", "clusters_kl", "acc", "objective"):  # alpha > 0: a penalised objective
        assert key in rec and math.isfinite(rec[key]), key
    if guide == "posterior":
        assert rec["z_prior"] == pytest.approx(rec["clusters_kl"])


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("shape,likelihood,kw", [
    ((2,), "gaussian", TINY_NETS),
    ((1, 8, 8), "bernoulli", TINY_NETS),
    ((1, 28, 28), "bernoulli", dict(latent_dim=4, w_dim=3, beta_hidden=8)),
])
def test_responsibilities_and_samples_have_the_right_shapes(guide, shape, likelihood, kw):
    torch.manual_seed(0)
    m = GMVAE(shape, 4, likelihood, guide=guide, **kw).eval()
    x = torch.rand((6,) + shape)
    r = m.responsibilities(x)
    assert r.shape == (6, 4) and torch.allclose(r.sum(-1), torch.ones(6))
    xs, c = m.sample(5)
    assert xs.shape == (5,) + shape and c.shape == (5,) and c.max() < 4
    xs, c = m.sample(3, cluster=2)
    assert xs.shape == (3,) + shape and (c == 2).all()
    with pytest.raises(ConfigError):
        m.sample(2, cluster=4)
    if likelihood == "bernoulli":
        assert xs.min() >= 0 and xs.max() <= 1


def test_posterior_responsibilities_are_the_model_posterior_at_the_encoder_means():
    m, x = _model("posterior").eval(), _x()
    with torch.no_grad():
        z_loc, _, w_loc, _, _ = m.encode(x)
        mu, sigma = m.components(w_loc)
        expected = torch.softmax(_log_normal(z_loc[:, None, :], mu, sigma ** 2), -1)
    assert torch.allclose(m.responsibilities(x), expected, atol=1e-6)


def test_architectures_follow_the_data_shape():
    assert default_arch((2,)) == "fc120"
    assert default_arch((1, 28, 28)) == "conv" and default_arch((3, 32, 32)) == "conv"
    assert default_arch((1, 8, 8)) == "mlp" and default_arch((12,)) == "mlp"
    m = GMVAE((2,), 8, "gaussian")
    assert (m.arch, m.latent_dim, m.w_dim) == ("fc120", 2, 2)
    assert m.encoder.loc.in_features == 120 and m.components.net[0].out_features == 120
    assert m.components.net[2].out_features == 2 * 8 * 2
    assert isinstance(m.components.net[1], torch.nn.Tanh)
    m = GMVAE((1, 28, 28), 10, "bernoulli")
    assert (m.arch, m.latent_dim, m.w_dim, m.components.net[0].out_features) == ("conv", 200, 150, 500)
    assert m.classifier is None and GMVAE((2,), 3, guide="mean-field").classifier.out_features == 3


def test_initialisation_and_default_epochs():
    """Gaussian decoder starts with a small sigma_x, the classifier uniform, fc120 means on a circle."""
    from pyro_mixvae.models.gmvae import COMPONENT_INIT_RADIUS, DECODER_LOG_VAR_INIT

    torch.manual_seed(0)
    m = GMVAE((2,), 8, "gaussian", guide="mean-field")
    assert m.arch == "fc120" and TrainConfig(device="cpu").for_model(m).epochs == 200
    assert TrainConfig(device="cpu").for_model(m).lr_step == 20  # fc120: the learning rate decays every 20 epochs
    assert TrainConfig(device="cpu").for_model(GMVAE((8, 8), 10, "bernoulli")).lr_step == 10
    last = [layer for layer in m.decoder.modules() if isinstance(layer, torch.nn.Linear)][-1]
    assert torch.equal(last.bias[2:], torch.full((2,), DECODER_LOG_VAR_INIT))  # [mu_x (2); log sigma_x^2 (2)]
    with torch.no_grad():
        out = m.decoder(torch.zeros(3, 2))  # (3, 2 params, 2 values)
        assert (out[:, 1] - DECODER_LOG_VAR_INIT).abs().max() < 1.0
        assert torch.allclose(m.responsibilities(_x()), torch.full((5, 8), 1 / 8))
    bias = m.components.net[-1].bias.view(2, 8, 2)  # [means; log-variances] of the K components
    assert torch.allclose(bias[0].norm(dim=-1), torch.full((8,), COMPONENT_INIT_RADIUS))
    assert TrainConfig(device="cpu").for_model(GMVAE((8, 8), 10, "bernoulli")).epochs == 50
    post = GMVAE((2,), 8, "gaussian", guide="posterior").components.net[-1].bias.view(2, 8, 2)
    assert post[0].norm(dim=-1).max() < 1.0  # PyTorch's init: the circle is for the mean-field guide


def test_eta_warmup_defaults_and_overrides():
    """The z-prior warm-start: on by default for fc120 with the mean-field guide only, scaled by eta (the
    held start's schedule, on by default, is beside it: ``test_held_start.py``)."""
    def eta(**kw):
        return [sched for sched in GMVAE(**kw).schedules() if sched.attr == "eta"]

    mf = eta(data_shape=(2,), n_clusters=8, likelihood="gaussian", guide="mean-field", eta=0.5, alpha=2.0)
    assert len(mf) == 1 and (mf[0].attr, mf[0].start, mf[0].stop, mf[0].epochs) == ("eta", 2.5, 0.5, 90)
    assert [mf[0].value(t) for t in (1, 46, 91, 200)] == [2.5, 1.5, 0.5, 0.5]
    assert eta(data_shape=(2,), n_clusters=8, likelihood="gaussian", guide="posterior") == []
    assert eta(data_shape=(8, 8), n_clusters=10, likelihood="bernoulli", guide="mean-field") == []
    assert eta(data_shape=(2,), n_clusters=8, likelihood="gaussian", guide="mean-field", eta=0.0) == []
    assert eta(data_shape=(2,), n_clusters=8, likelihood="gaussian", guide="mean-field", eta_warmup=1) == []
    own = eta(data_shape=(8, 8), n_clusters=10, likelihood="bernoulli", guide="posterior", eta_warmup=2,
              eta_warmup_epochs=4)
    assert (own[0].start, own[0].stop, own[0].epochs) == (2.0, 1.0, 4)


def test_eta_warmup_trains_with_the_scheduled_weight():
    """One full-batch epoch with eta = 1 warmed up by 3 takes exactly the step of eta = 3 without warm-up.

    Posterior guide: there the z-prior KL(p(c|z,w) || p(c)) has a gradient from the first step (the
    mean-field classifier starts uniform, where the gradient of its KL is zero).
    """
    x = _x(40)

    def one_epoch(**kw):
        m = _model("posterior", alpha=0.5, **kw)
        h = fit(m, x, config=TrainConfig(epochs=1, batch_size=40, seed=3, device="cpu", jit=False), progress=False)
        return m, h

    warmed, history = one_epoch(eta=1.0, eta_warmup=3.0, eta_warmup_epochs=2)
    heavy, _ = one_epoch(eta=3.0)
    plain, _ = one_epoch(eta=1.0)
    assert history.records[0]["eta"] == 3.0
    for a, b in zip(warmed.parameters(), heavy.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(warmed.parameters(), plain.parameters()))


def test_construction_rebuilds_the_model():
    m = _model("mean-field", eta=0.5, alpha=2.0)
    again = build(**m.construction())
    again.load_state_dict(m.state_dict())
    assert again.guide_name == "mean-field" and again.alpha == 2.0
    x = _x()
    assert torch.allclose(again.eval().responsibilities(x), m.eval().responsibilities(x))


@pytest.mark.parametrize("bad", [dict(eta=-1.0), dict(alpha=-0.1), dict(lam=-2), dict(guide="exact"),
                                 dict(arch="resnet"), dict(latent_dim=0), dict(alpha=float("nan")),
                                 dict(eta_warmup=-1.0), dict(eta_warmup_epochs=-2)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError) as err:
        GMVAE((2,), 3, "gaussian", **bad)
    assert "\n" not in str(err.value)


def test_one_cluster_is_a_plain_vae():
    """K = 1: c is constant, so the bound is the VAE's with the beta-net's one component as z's prior."""
    m = GMVAE((2,), 1, "gaussian")
    x = torch.randn(5, 2)
    assert torch.allclose(m.responsibilities(x), torch.ones(5, 1))
    assert torch.isfinite(m.make_elbo().differentiable_loss(m.model, m.guide, x, 5))


# ----------------------------------------------------------------------------- estimator and CLI
def test_estimator_fits_and_predicts(blobs_npz):
    data = np.load(blobs_npz)
    est = GMVAEEstimator(3, guide="mean-field", alpha=2.0, hidden=(16,), beta_hidden=8, latent_dim=2, w_dim=2,
                         epochs=2, batch_size=40, device="cpu")
    est.fit(data["x"], data["y"])
    assert est.predict_proba(data["x"]).shape == (120, 3)
    assert est.labels_.shape == (120,)
    assert est.get_params()["guide"] == "mean-field" and est.model_.arch == "mlp"
    xs, c = est.sample(4)
    assert xs.shape == (4, 12)


def test_cli_fit_with_guide_and_weights(tmp_path, capsys):
    out = tmp_path / "arcs"
    rc = main(["fit", "gmvae", "--data", "arcs", "--clusters", "8", "--guide", "mean-field", "--set", "eta=1",
               "--set", "alpha=2", "--set", "hidden=16,16", "--set", "beta_hidden=16", "--epochs", "1",
               "--batch-size", "1000", "--quiet", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["guide"] == "mean-field"
    record = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert {"z_prior", "cv", "clusters_kl"} <= set(record)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "gmvae" and 0 <= metrics["acc_cluster_label"] <= 1
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_cli_fit_on_digits_with_the_default_guide(tmp_path):
    out = tmp_path / "digits"
    rc = main(["fit", "gmvae", "--data", "digits", "--epochs", "1", "--batch-size", "500", "--set", "hidden=16",
               "--quiet", "--device", "cpu", "--out", str(out)])
    assert rc == 0 and (out / "metrics.json").is_file()


@pytest.mark.parametrize("args,needle", [
    (["fit", "gmvae", "--data", "arcs", "--set", "alpha=-1"], "alpha"),
    (["fit", "gmvae", "--data", "arcs", "--guide", "exact"], "guide"),
    (["fit", "gmvae", "--data", "arcs", "--guide", "posterior", "--set", "guide=mean-field"], "contradicts"),
    (["fit", "vade", "--data", "arcs", "--guide", "posterior"], "no guide setting"),
    (["fit", "gmvae", "--data", "arcs", "--clusters", "0"], "--clusters"),
])
def test_cli_refuses_bad_gmvae_settings_in_one_line(args, needle, tmp_path, capsys):
    out = tmp_path / "never"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixvae: error:") and needle in err and err.count("\n") == 1
    assert not out.exists()
