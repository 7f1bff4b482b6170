"""Networks and likelihood heads: shapes for every architecture, and what `auto` picks."""
import numpy as np
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_mixvae.errors import ConfigError
from pyro_mixvae.models import VaDE
from scipy.stats import norm

from pyro_mixvae.infer.checkpoint import load_parameters
from pyro_mixvae.nets import make_encoder_decoder, make_likelihood, resolve_likelihood


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-shared"])
def test_conv_nets_map_images_to_codes_and_back(shape, likelihood):
    lik = make_likelihood(likelihood, shape)
    enc, dec = make_encoder_decoder("conv", shape, 7, lik)
    x = torch.rand((4,) + shape)
    loc, scale = enc(x)
    assert loc.shape == scale.shape == (4, 7) and (scale > 0).all()
    out = dec(torch.randn(2, 4, 7))  # a particle dimension in front
    assert lik(out).batch_shape == (2, 4) and lik(out).event_shape == shape
    assert lik.mean(out).shape == (2, 4) + shape


def test_vade_with_conv_nets_computes_its_loss():
    m = VaDE((1, 28, 28), 3, "bernoulli", arch="conv", latent_dim=4)
    loss = TraceEnum_ELBO(max_plate_nesting=1, num_particles=2, vectorize_particles=True).differentiable_loss(
        m.model, m.guide, torch.rand(5, 1, 28, 28))
    assert torch.isfinite(loss)


def test_conv_refuses_other_image_sizes():
    with pytest.raises(ConfigError, match="28x28 or 32x32"):
        VaDE((1, 8, 8), 3, "bernoulli", arch="conv")


def test_gaussian_head_reads_mean_and_log_variance():
    lik = make_likelihood("gaussian", (3,))
    out = torch.tensor([[0.5, -1.0, 2.0], [0.0, float(np.log(4.0)), 0.0]])  # [mu; log sigma^2]
    d = lik(out)
    assert torch.allclose(d.base_dist.loc, out[0]) and torch.allclose(d.base_dist.scale, torch.tensor([1.0, 2.0, 1.0]))


def test_shared_gaussian_head_has_one_learned_variance_per_value():
    """gaussian-shared: the network emits the means only; every point gets the decoder's log_var,
    and the log-density is the Normal's written out, with gradients reaching log_var."""
    lik = make_likelihood("gaussian-shared", (3,))
    enc, dec = make_encoder_decoder("mlp", (3,), 2, lik, hidden=(4,))
    assert dec.body[-1].out_features == 3 and dec.log_var.shape == (3,)
    with torch.no_grad():
        dec.log_var.copy_(torch.tensor([0.0, float(np.log(4.0)), -1.0]))
    z, x = torch.randn(5, 2), torch.randn(5, 3)
    d = lik(dec(z))
    assert torch.allclose(d.base_dist.scale, torch.tensor([1.0, 2.0, float(np.exp(-0.5))]).expand(5, 3))
    loc = dec.body(z)
    by_hand = (-0.5 * np.log(2 * np.pi) - 0.5 * dec.log_var - 0.5 * (x - loc) ** 2 / dec.log_var.exp()).sum(-1)
    assert torch.allclose(d.log_prob(x), by_hand, atol=1e-5)
    d.log_prob(x).sum().backward()
    assert dec.log_var.grad is not None and torch.all(dec.log_var.grad != 0)


def test_gaussian_heads_work_in_standardised_units_and_answer_in_the_data_units():
    """After ``units.fit``, the encoder reads (x - mean) / sd per column, and p(x | z) is the Normal of the
    decoder's [mu; log sigma^2] mapped back: N(x | mean + sd mu, sd^2 sigma^2), by scipy."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal([5000.0, 0.0, 1.0], [1000.0, 1.0, 0.01], size=(200, 3)), dtype=torch.float32)
    lik = make_likelihood("gaussian", (3,))
    enc, dec = make_encoder_decoder("mlp", (3,), 2, lik, hidden=(4,))
    lik.units.fit(x)
    mean, sd = x.double().mean(0), x.double().std(0, unbiased=False)
    assert torch.allclose(lik.units.shift.double(), mean, rtol=1e-5)
    assert torch.allclose(lik.units.scale.double(), sd, rtol=1e-4)
    with torch.no_grad():
        assert torch.allclose(enc.features(x), enc.body((x - mean.float()) / sd.float()), atol=1e-4)
        out = dec(torch.randn(5, 2))
        loc, log_var = out[:, 0].double(), out[:, 1].double()
        expected = norm.logpdf(x[:5].double(), mean + sd * loc, sd * torch.exp(0.5 * log_var)).sum(-1)
        assert np.allclose(lik(out).log_prob(x[:5]).double(), expected, rtol=1e-5)
        assert torch.allclose(lik.mean(out).double(), mean + sd * loc, rtol=1e-5)
    constant = torch.cat([x[:, :2], torch.full((200, 1), 7.0)], 1)  # a constant column is shifted, not scaled
    lik.units.fit(constant)
    assert lik.units.scale[2] == 1.0 and lik.units.shift[2] == 7.0


def test_a_checkpoint_from_before_the_units_loads_with_the_identity():
    fitted = VaDE((3,), 2, "gaussian-shared", hidden=(4,), latent_dim=2)
    fitted.likelihood.units.fit(torch.randn(10, 3) * 50 + 9)
    old = {k: v for k, v in fitted.state_dict().items() if "units" not in k}  # as written before they existed
    model = VaDE((3,), 2, "gaussian-shared", hidden=(4,), latent_dim=2)
    model.likelihood.units.fit(torch.randn(10, 3) * 50 + 9)
    load_parameters(model, {"model": old}, "old.pt")
    assert torch.equal(model.likelihood.units.shift, torch.zeros(3))
    assert torch.equal(model.likelihood.units.scale, torch.ones(3))
    assert torch.equal(model.decoder.log_var, fitted.decoder.log_var)


def test_bernoulli_head_gives_cross_entropy_on_grey_values():
    lik = make_likelihood("bernoulli", (2,))
    assert lik.units is None  # images in [0, 1] meet the networks as they are (no data units to fit)
    assert not [k for k in VaDE((2,), 2, "bernoulli", hidden=(4,)).state_dict() if "units" in k]
    logits, x = torch.tensor([0.3, -2.0]), torch.tensor([0.25, 0.9])
    p = torch.sigmoid(logits)
    expected = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum()
    assert torch.allclose(lik(logits).log_prob(x), expected)


def test_auto_likelihood():
    grey_images = np.full((3, 1, 4, 4), 0.5)
    assert resolve_likelihood("auto", grey_images) == "bernoulli"
    assert resolve_likelihood("auto", np.array([[0.0, 1.0], [1.0, 1.0]])) == "bernoulli"  # binary table
    # continuous values: one variance per value below 10,000 points, eq. 2's per-point variance from there up
    assert resolve_likelihood("auto", np.array([[0.0, 0.5], [1.0, 0.2]])) == "gaussian-shared"  # a table in [0, 1]
    assert resolve_likelihood("auto", grey_images - 0.6) == "gaussian-shared"
    assert resolve_likelihood("auto", np.array([[-0.1, 0.5]])) == "gaussian-shared"
    assert resolve_likelihood("auto", np.full((9_999, 2), 0.5)) == "gaussian-shared"
    assert resolve_likelihood("auto", np.full((10_000, 2), 0.5)) == "gaussian"
    assert resolve_likelihood("auto", np.full((10_000, 2), 1.0)) == "bernoulli"
    assert resolve_likelihood("gaussian", np.array([0.5])) == "gaussian"
    assert resolve_likelihood("gaussian-shared", np.array([0.5])) == "gaussian-shared"
    with pytest.raises(ConfigError):
        resolve_likelihood("poisson", np.array([0.5]))


@pytest.mark.parametrize("shape, widths", [((784,), (500, 500, 2000)), ((1, 28, 28), (500, 500, 2000)),
                                           ((64,), (500, 500, 2000)), ((32,), (250, 250, 1000)),
                                           ((4,), (250, 250, 1000)), ((48,), (375, 375, 1500))])
def test_the_default_widths_are_the_papers_scaled_to_the_input(shape, widths):
    """VaDE Sect. 4.2's D-500-500-2000 from 64 input values up, in proportion below, half at the least; the
    layers a VaDE builds by default are those widths (read off its Linear layers, not from the helper)."""
    m = VaDE(shape, 3, "bernoulli")
    linears = [layer for layer in m.encoder.modules() if isinstance(layer, torch.nn.Linear)]
    assert tuple(layer.out_features for layer in linears[:3]) == widths
    assert linears[0].in_features == int(np.prod(shape))
    assert VaDE(shape, 3, "bernoulli", hidden="32,16").encoder.loc.in_features == 16  # a given value wins


@pytest.mark.parametrize("shape, latent", [((784,), 10), ((64,), 10), ((13,), 10), ((10,), 10), ((4,), 4), ((2,), 2)])
def test_the_default_latent_dimension_is_the_papers_or_the_datas_where_smaller(shape, latent):
    """VaDE Sect. 4.2's J = 10, or D for data of fewer dimensions, read off the built encoder's mean head and
    mixture; a given value wins."""
    m = VaDE(shape, 3, "bernoulli")
    assert m.encoder.loc.out_features == m.mu_c.shape[1] == latent
    assert VaDE(shape, 3, "bernoulli", latent_dim=7).mu_c.shape[1] == 7
