"""Networks and likelihood heads: shapes for every architecture, and what `auto` picks."""
import numpy as np
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_mixvae.errors import ConfigError
from pyro_mixvae.models import VaDE
from pyro_mixvae.nets import make_encoder_decoder, make_likelihood, resolve_likelihood


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
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


def test_bernoulli_head_gives_cross_entropy_on_grey_values():
    lik = make_likelihood("bernoulli", (2,))
    logits, x = torch.tensor([0.3, -2.0]), torch.tensor([0.25, 0.9])
    p = torch.sigmoid(logits)
    expected = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum()
    assert torch.allclose(lik(logits).log_prob(x), expected)


def test_auto_likelihood():
    grey_images = np.full((3, 1, 4, 4), 0.5)
    assert resolve_likelihood("auto", grey_images) == "bernoulli"
    assert resolve_likelihood("auto", np.array([[0.0, 1.0], [1.0, 1.0]])) == "bernoulli"  # binary table
    assert resolve_likelihood("auto", np.array([[0.0, 0.5], [1.0, 0.2]])) == "gaussian"  # continuous table in [0, 1]
    assert resolve_likelihood("auto", grey_images - 0.6) == "gaussian"
    assert resolve_likelihood("auto", np.array([[-0.1, 0.5]])) == "gaussian"
    assert resolve_likelihood("gaussian", np.array([0.5])) == "gaussian"
    with pytest.raises(ConfigError):
        resolve_likelihood("poisson", np.array([0.5]))
