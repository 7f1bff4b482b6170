"""Encoders, decoders and likelihood heads shared by every model.

Two families of networks:

* **MLP** — VaDE's (and DEC's) fully connected nets: the encoder is D-500-500-2000-J and the
  decoder its mirror J-2000-500-500-D (``vade.txt``, Sect. 4.2). The encoder emits
  ``[mu; log sigma^2] = g(x; phi)`` (VaDE eq. 10).
* **conv** — the GMVAE papers' Appendix A nets (Tables A.1 and A.3) for 28x28 and 32x32 images:

  ======  ========================================================  =============================
  input   encoder                                                   decoder (mirror)
  ======  ========================================================  =============================
  28x28   conv 16x6x6 (1-0), 32x6x6 (1-0), 64x4x4 (2-1), fc 500     fc 500, full-conv 64x4x4 (2-1),
                                                                    32x6x6 (1-0), 16x6x6 (1-0)
  32x32   conv 64x4x4 (2-1), 128x4x4 (2-1), 246x4x4 (2-1), fc 500    fc 500, full-conv in reverse
  ======  ========================================================  =============================

  every hidden layer with batch normalisation and ReLU.

A decoder returns the raw parameters of p(x | z); a *likelihood head* turns them into a Pyro
distribution over one data point (its event shape is the data shape):

* ``bernoulli`` — ``Bernoulli(logits)``, the cross-entropy of VaDE eq. 12 and GMVAE Table A.3.
  Grey-scale images in [0, 1] are not binary, so the distribution is built with
  ``validate_args=False`` on purpose: log p(x|z) is then the binary cross-entropy
  x log mu + (1 - x) log(1 - mu), which is what the papers optimise.
  (The data are checked to lie in [0, 1] before training, see :func:`pyro_mixvae.data.check_data`.)
* ``gaussian`` — ``Normal(mu_x, sigma_x)`` with a learned diagonal variance,
  ``[mu_x; log sigma_x^2] = f(z; theta)`` (VaDE eq. 2); log sigma_x^2 is clamped to
  [-10, 10] so that one bad batch cannot make the variance collapse to zero.
* ``gaussian-shared`` — ``Normal(mu_x, sigma_x)`` with ``mu_x = f(z; theta)`` and one learned
  log sigma_x^2 per value, shared by every point (a parameter of the :class:`Decoder`, clamped
  alike; pretraining starts it at its maximum-likelihood value). On a few hundred points eq. 2's
  per-point variance lets the decoder fit each point's value closely and the latent space drifts
  away from the groups; with one variance per feature the robustness suite kept them
  (docs/studies/robustness.md).

The Gaussian heads hold a :class:`Standardize`, the data's units: the encoder reads each value
standardised by the training data's mean and standard deviation (set at the start of a run,
:func:`fit_data_units`), the decoder emits standardised [mu; log sigma^2] (the clamp above is in
these units), and the head maps them back to the data's units. A table whose columns are measured
in thousands and in hundredths then meets the networks as standardised data would, and the ELBO,
log-likelihoods and samples are still those of the data as given.

``likelihood="auto"`` (:func:`resolve_likelihood`) picks ``bernoulli`` for images with values in
[0, 1] (one channel axis and two spatial axes per point, as the papers' grey-scale sets) and for
binary data, and a Gaussian for everything else: tables, measurements and embeddings, bounded
or not -- ``gaussian-shared`` on fewer than ``SMALL_DATA`` (10,000) points, ``gaussian`` (eq. 2)
from there up. The cross-entropy of a continuous value x in [0, 1] is bounded below by the
value's own entropy, so on a few continuous features the reconstruction gains little from
separating the groups, and the bound can gain more by dropping the cost of the assignment, log K:
GMVAE and the factorial prior then merge separated groups (docs/studies/robustness.md).

All networks accept any number of leading batch dimensions (Monte Carlo particles,
enumerated clusters): the last dimension of z (or the data dimensions of x) is the feature
dimension.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import pyro.distributions as dist
import torch
from torch import nn

from .errors import ConfigError

LIKELIHOODS = ("auto", "bernoulli", "gaussian", "gaussian-shared")
# below this many points a data set is small: auto gives real values the shared variance, and the models'
# small_data_defaults apply (pyro_mixvae.infer.train)
SMALL_DATA = 10_000
# what `--likelihood` and the estimators' ``likelihood`` say (resolve_likelihood does it)
LIKELIHOOD_HELP = ("auto: bernoulli for images or binary data in [0, 1], else gaussian-shared (one variance per value) "
                   f"below {SMALL_DATA:,} points and gaussian (a variance per point) from there up; a Gaussian "
                   "model's networks see each column standardised, its likelihood stays in the data's units")
ARCHITECTURES = ("mlp", "conv")
# the fully connected networks' widths: VaDE Sect. 4.2 (D-500-500-2000-J, the decoder mirroring it), made for
# 784-pixel images; an input of fewer than FULL_WIDTH_INPUT values gets them scaled down in proportion, to half
# at the least (sized_widths)
PAPER_WIDTHS = (500, 500, 2000)
FULL_WIDTH_INPUT = 64
# VaDE Sect. 4.2's latent dimension J (sized_latent)
PAPER_LATENT = 10


# ----------------------------------------------------------------------------- likelihoods
class Standardize(nn.Module):
    """The per-value affine map from the data's units to the networks': u = (x - shift) / scale.

    Identity until :meth:`fit` sets ``shift`` and ``scale`` to the training data's mean and standard
    deviation per value (buffers, so they travel with the parameters and the checkpoint). The
    Gaussian likelihoods hold one and the encoder registers the same one: the encoder reads
    standardised values, the decoder emits them, and the likelihood maps its parameters back,
    mu_x = shift + scale * mu, sigma_x^2 = scale^2 sigma^2, so that p(x | z) -- the ELBO,
    log-likelihoods, samples -- stays in the data's units. Without it a column measured in
    thousands would reach the first layer, and dominate the reconstruction, a thousand times
    more than a column measured in units.
    """

    def __init__(self, data_shape: Sequence[int]):
        super().__init__()
        self.register_buffer("shift", torch.zeros(tuple(data_shape)))
        self.register_buffer("scale", torch.ones(tuple(data_shape)))

    def forward(self, x):
        return (x - self.shift) / self.scale

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Mean and standard deviation of each value over the points of ``x`` (N, *data_shape); a
        value constant over the points keeps scale 1 (as scikit-learn's ``StandardScaler``)."""
        var, mean = torch.var_mean(x.to(self.shift), dim=0, unbiased=False)
        scale = var.sqrt()
        constant = scale <= 10 * torch.finfo(scale.dtype).eps * mean.abs().clamp_min(1.0)
        self.shift.copy_(mean)
        self.scale.copy_(torch.where(constant, torch.ones_like(scale), scale))

    def to_data(self, loc: torch.Tensor, log_var: torch.Tensor):
        """(mu, log sigma^2) in the networks' units -> the same in the data's units."""
        return self.shift + self.scale * loc, log_var + 2 * torch.log(self.scale)


def fit_data_units(model: nn.Module, x: torch.Tensor) -> None:
    """Fit the :class:`Standardize` of ``model.likelihood`` (if it has one) to ``x``: the first step of a new run."""
    units = getattr(model.likelihood, "units", None)  # a Gaussian head's Standardize; None for Bernoulli
    if units is not None:
        units.fit(x)


def with_identity_units(model: nn.Module, state: dict) -> dict:
    """``state`` with the identity for every :class:`Standardize` buffer of ``model`` that it lacks: a
    checkpoint written before the data's units existed was trained on the data as they came."""
    filled = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith(("units.shift", "units.scale")) and key not in filled:
            filled[key] = torch.zeros_like(value) if key.endswith("shift") else torch.ones_like(value)
    return filled


class Likelihood(metaclass=ABCMeta):
    """Maps a decoder output to p(x | z), a distribution with event shape ``data_shape``."""

    name = ""
    params_per_value = 1  # what the decoder's network emits per data value
    shared_variance = False  # gaussian-shared: the decoder holds log sigma_x^2 as one parameter per value
    units = None  # the Gaussian heads: the Standardize between the data's units and the networks'

    def __init__(self, data_shape: Sequence[int]):
        self.data_shape = tuple(data_shape)
        self.event_dim = len(self.data_shape)

    @abstractmethod
    def __call__(self, out: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z) for the decoder output ``out``."""

    @abstractmethod
    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x | z] for a decoder output."""


class BernoulliLikelihood(Likelihood):
    name = "bernoulli"

    def __call__(self, out):
        # validate_args=False deliberately: x in [0, 1] gives the cross-entropy (module doc).
        return dist.Bernoulli(logits=out, validate_args=False).to_event(self.event_dim)

    def mean(self, out):
        return torch.sigmoid(out)


class GaussianLikelihood(Likelihood):
    name = "gaussian"
    params_per_value = 2
    LOG_VAR_RANGE = (-10.0, 10.0)  # of log sigma^2 in the networks' (standardised) units

    def __init__(self, data_shape: Sequence[int]):
        super().__init__(data_shape)
        self.units = Standardize(self.data_shape)

    def _split(self, out):
        # the decoder emits [mu; log sigma^2] in standardised units, stacked on a leading channel of size 2
        loc, log_var = out.unbind(-self.event_dim - 1)
        return self.units.to_data(loc, log_var.clamp(*self.LOG_VAR_RANGE))

    def __call__(self, out):
        loc, log_var = self._split(out)
        return dist.Normal(loc, torch.exp(0.5 * log_var)).to_event(self.event_dim)

    def mean(self, out):
        return self._split(out)[0]


class SharedGaussianLikelihood(GaussianLikelihood):
    """N(mu_x(z), diag sigma_x^2) with sigma_x^2 a parameter per value (the module docstring); the
    :class:`Decoder` appends it to the network's means, so the head reads [mu_x; log sigma_x^2] as above."""

    name = "gaussian-shared"
    params_per_value = 1
    shared_variance = True


def resolve_likelihood(name: str, x) -> str:
    """``auto`` -> ``bernoulli`` when ``x`` lies in [0, 1] and is binary or image-shaped
    (N, C, H, W), else ``gaussian-shared`` for fewer than ``SMALL_DATA`` points and ``gaussian``
    from there up (the module docstring says why)."""
    if name not in LIKELIHOODS:
        raise ConfigError(f"unknown likelihood {name!r}: expected one of {', '.join(LIKELIHOODS)}")
    if name != "auto":
        return name
    x = np.asarray(x) if not torch.is_tensor(x) else x.detach().cpu().numpy()
    gaussian = "gaussian-shared" if len(x) < SMALL_DATA else "gaussian"
    if x.min() < 0.0 or x.max() > 1.0:
        return gaussian
    binary = bool(np.isin(x, (0, 1)).all())
    return "bernoulli" if (binary or x.ndim >= 4) else gaussian


def make_likelihood(name: str, data_shape) -> Likelihood:
    heads = {"bernoulli": BernoulliLikelihood, "gaussian": GaussianLikelihood,
             "gaussian-shared": SharedGaussianLikelihood}
    if name not in heads:
        raise ConfigError(f"unknown likelihood {name!r}: expected one of {', '.join(heads)} (or auto)")
    return heads[name](data_shape)


# ----------------------------------------------------------------------------- MLPs
def mlp(sizes: Sequence[int], activation=nn.ReLU, final_activation=None) -> nn.Sequential:
    """Fully connected layers ``sizes[0] -> ... -> sizes[-1]``, activation between them."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    if final_activation is not None:
        layers.append(final_activation())
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """q(z | x) = N(mu, diag sigma^2) with ``[mu; log sigma^2] = g(x; phi)`` (VaDE eq. 10-11).

    ``body`` maps a batch of inputs (B, *data_shape) to (B, H) features; two linear heads give
    the mean and the log-variance. :meth:`forward` returns ``(loc, scale)``. ``units`` (the
    likelihood's :class:`Standardize`, if it has one) standardises the inputs first.
    """

    def __init__(self, body: nn.Module, hidden: int, latent_dim: int, data_dims: int, units=None):
        super().__init__()
        self.units = units
        self.body = body
        self.data_dims = data_dims
        self.loc = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)

    def features(self, x):
        batch = x.shape[: x.dim() - self.data_dims]
        x = self.units(x) if self.units is not None else x
        h = self.body(x.reshape((-1,) + x.shape[len(batch):]))
        return h.reshape(batch + h.shape[1:])

    def forward(self, x):
        h = self.features(x)
        return self.loc(h), torch.exp(0.5 * self.log_var(h).clamp(-15.0, 10.0))


class Flatten(nn.Module):
    def __init__(self, data_dims: int):
        super().__init__()
        self.data_dims = data_dims

    def forward(self, x):
        return x.flatten(-self.data_dims) if self.data_dims > 1 else x


class Decoder(nn.Module):
    """f(z; theta): latent (..., J) -> likelihood parameters (..., [2,] *data_shape).

    For a likelihood with a shared variance the network emits the means and the decoder appends
    its parameter ``log_var`` (one per value, broadcast over the points) as the second channel."""

    def __init__(self, body: nn.Module, data_shape, likelihood: "Likelihood"):
        super().__init__()
        self.body = body
        per_value = likelihood.params_per_value
        self.out_shape = ((per_value,) if per_value > 1 else ()) + tuple(data_shape)
        self.log_var = nn.Parameter(torch.zeros(tuple(data_shape))) if likelihood.shared_variance else None

    def forward(self, z):
        batch = z.shape[:-1]
        out = self.body(z.reshape(-1, z.shape[-1])).reshape(batch + self.out_shape)
        if self.log_var is None:
            return out
        return torch.stack([out, self.log_var.expand_as(out)], dim=out.dim() - self.log_var.dim())


def sized_widths(data_shape) -> tuple:
    """The encoder's widths for an input of D = prod(data_shape) values: :data:`PAPER_WIDTHS` times
    min(1, max(1/2, D / FULL_WIDTH_INPUT)), rounded: the paper's from 64 values up (images, sklearn's
    digits), half of them for 32 values or fewer (tables), where a fit is mostly the networks' time
    (``docs/studies/stability.md``; on digits, half widths gave a worse start)."""
    scale = min(1.0, max(0.5, int(np.prod(data_shape)) / FULL_WIDTH_INPUT))
    return tuple(int(round(w * scale)) for w in PAPER_WIDTHS)


def sized_latent(data_shape) -> int:
    """The dimension J of z for an input of D = prod(data_shape) values: :data:`PAPER_LATENT`, or D where the
    data have fewer dimensions: codes with more dimensions than the data carry nothing the data do not, and on
    a table of few columns their extra dimensions let SVI move the start (``docs/studies/stability.md``)."""
    return min(PAPER_LATENT, int(np.prod(data_shape)))


def mlp_encoder(data_shape, latent_dim: int, hidden=PAPER_WIDTHS, units=None) -> GaussianEncoder:
    d = int(np.prod(data_shape))
    hidden = tuple(hidden)
    body = nn.Sequential(Flatten(len(data_shape)), mlp((d,) + hidden), nn.ReLU())
    return GaussianEncoder(body, hidden[-1], latent_dim, len(data_shape), units)


def mlp_decoder(latent_dim: int, data_shape, likelihood: Likelihood, hidden=PAPER_WIDTHS) -> Decoder:
    d = int(np.prod(data_shape)) * likelihood.params_per_value
    body = mlp((latent_dim,) + tuple(reversed(tuple(hidden))) + (d,))
    return Decoder(body, data_shape, likelihood)


# ----------------------------------------------------------------------------- conv nets
def _conv(cin, cout, k, s, p):
    return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU()]


def _deconv(cin, cout, k, s, p, last=False):
    layer = [nn.ConvTranspose2d(cin, cout, k, s, p)]
    return layer if last else layer + [nn.BatchNorm2d(cout), nn.ReLU()]


# (channels, kernel, stride, padding) per layer and the feature map after the last conv
_CONV_SPECS = {
    28: ([(16, 6, 1, 0), (32, 6, 1, 0), (64, 4, 2, 1)], 9),
    32: ([(64, 4, 2, 1), (128, 4, 2, 1), (246, 4, 2, 1)], 4),
}


def _conv_spec(data_shape):
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] not in _CONV_SPECS:
        raise ConfigError(
            f"the conv nets take 28x28 or 32x32 images (C, H, W); this data has shape {tuple(data_shape)}: use arch=mlp"
        )
    return _CONV_SPECS[data_shape[1]]


def conv_encoder(data_shape, latent_dim: int, hidden: int = 500, units=None) -> GaussianEncoder:
    """GMVAE Table A.1 encoder body followed by the Gaussian heads."""
    layers_spec, side = _conv_spec(data_shape)
    layers, cin = [], data_shape[0]
    for cout, k, s, p in layers_spec:
        layers += _conv(cin, cout, k, s, p)
        cin = cout
    layers += [nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
    return GaussianEncoder(nn.Sequential(*layers), hidden, latent_dim, 3, units)


class _Unflatten(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, h):
        return h.reshape((h.shape[0],) + self.shape)


def conv_decoder(latent_dim: int, data_shape, likelihood: Likelihood, hidden: int = 500) -> Decoder:
    """GMVAE Table A.3 decoder: fc 500, then the transposed convolutions of the encoder."""
    layers_spec, side = _conv_spec(data_shape)
    chans = [c for c, *_ in layers_spec]
    out_c = data_shape[0] * likelihood.params_per_value
    layers = [nn.Linear(latent_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
              nn.Linear(hidden, chans[-1] * side * side), nn.BatchNorm1d(chans[-1] * side * side), nn.ReLU(),
              _Unflatten((chans[-1], side, side))]
    targets = list(reversed(chans[:-1])) + [out_c]
    cin = chans[-1]
    for i, ((_, k, s, p), cout) in enumerate(zip(reversed(layers_spec), targets)):
        layers += _deconv(cin, cout, k, s, p, last=i == len(targets) - 1)
        cin = cout
    return Decoder(nn.Sequential(*layers), data_shape, likelihood)


def make_encoder_decoder(arch: str, data_shape, latent_dim: int, likelihood: Likelihood, hidden=None):
    """The (encoder, decoder) pair for ``arch`` in {'mlp', 'conv'}; the encoder reads the likelihood's units.
    ``hidden``: the mlp's widths, None = :func:`sized_widths` of the input."""
    if arch == "mlp":
        hidden = sized_widths(data_shape) if hidden is None else hidden
        return (mlp_encoder(data_shape, latent_dim, hidden, likelihood.units),
                mlp_decoder(latent_dim, data_shape, likelihood, hidden))
    if arch == "conv":
        return conv_encoder(data_shape, latent_dim, units=likelihood.units), conv_decoder(latent_dim, data_shape, likelihood)
    raise ConfigError(f"unknown architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")


@contextmanager
def eval_mode(module: nn.Module):
    """Run the block in evaluation mode (batch norm on running statistics), then restore the mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)

