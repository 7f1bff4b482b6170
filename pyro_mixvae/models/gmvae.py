"""GMVAE: the Gaussian mixture VAE of Dilokthanakul et al.

Both papers share the generative story (``gmvae-minimum-information.txt`` eq. 1a-1d; the
papers call the data y, the continuous latent x and the cluster z; here they are x, z and c)::

    w ~ N(0, I)                                         # eq. 1a
    c ~ Cat(1/K)                                        # eq. 1b, pi_k = 1/K
    z | c, w ~ N(mu_c(w; beta), diag sigma_c^2(w; beta))  # eq. 1c, the beta-net emits all K
    x | z ~ p_theta(x | z)                              # eq. 1d: Gaussian or Bernoulli

The beta-network maps w to all K means and variances in one pass, shape (..., K, D)
(Table A.2, "2K streams"); component c is picked with ``Vindex(params)[..., c, :]`` so that the
enumeration of c and the vectorised particles broadcast.

The cluster c is always a ``Categorical`` site with ``infer={"enumerate": "parallel"}``. The two
papers differ in the guide, chosen by the setting ``guide``:

* ``"posterior"`` (minimum-information paper, eq. 3-4): q(z, w, c | x) = q(z|x) q(w|x) p_beta(c|z, w).
  c appears in the model only, so ``TraceEnum_ELBO`` sums it out and its posterior is exactly
  p_beta(c | z, w) = pi_c N(z | mu_c(w), sigma_c^2(w)) / sum_k pi_k N(z | mu_k(w), sigma_k^2(w))
  (eq. 3); the bound is eq. 4 (reconstruction, conditional prior, w-prior, z-prior terms),
  with the expectation over c of eq. 5 done exactly.
* ``"mean-field"`` (consistency-violation paper, eq. 3-4): q(z, w, c | x) = q(z|x) q(w|x) q(c|x),
  a softmax classifier on the shared encoder body; c is enumerated in the guide, so the bound's
  expectation over q(c|x) (eq. 4) is exact too.

q(z|x) and q(w|x) are Gaussian heads on one shared encoder body (Table A.1), the classifier a
third head. The training objective (:meth:`GMVAE.make_elbo`) is
:class:`~pyro_mixvae.infer.elbo.MixtureELBO` with the settings ``eta`` (z-prior weight,
consistency-violation eq. 3), ``alpha`` (consistency violation, its eq. 6-7) and ``lam``
(minimum information, minimum-information eq. 7); 1, 0, 0 give the plain ELBO.

Architectures (``arch``; Appendix A of both papers):

* ``fc120`` (the synthetic 2-D data): encoder fc 120 ReLU 120 ReLU; beta-net fc 120 Tanh -> 2K*D;
  decoder fc 120 ReLU 120 ReLU -> Gaussian (or Bernoulli) parameters; z and w of dimension 2;
* ``conv`` (28x28 / 32x32 images): the conv nets of :mod:`pyro_mixvae.nets` (Tables A.1, A.3),
  beta-net fc 500 Tanh; z of dimension 200 and w of dimension 150;
* ``mlp`` (other flat vectors or small images, e.g. digits 8x8): fc 500 ReLU 500 ReLU encoder,
  its mirror as decoder, beta-net fc 500 Tanh; z and w of dimension 10.

``arch="auto"`` (default) picks fc120 for 2-D vectors, conv for 28x28 / 32x32 images, else mlp.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch import nn

from ..infer.elbo import MixtureELBO
from ..infer.pretrain import model_start, pretrain_mixture_start
from ..infer.schedules import LinearSchedule
from ..nets import conv_decoder, conv_encoder, make_likelihood, mlp_decoder, mlp_encoder
from .base import (DEFAULT_CLUSTERS, PRETRAIN_SETTINGS, START_SETTINGS, MixtureVAE, Setting, data_plate, int_tuple,
                   one_of, optional, positive_or_none)

GUIDES = ("posterior", "mean-field")
GMVAE_ARCHITECTURES = ("auto", "fc120", "mlp", "conv")
# per architecture: (encoder/decoder widths, beta-net width, dim z, dim w)
ARCH_DEFAULTS = {
    "fc120": ((120, 120), 120, 2, 2),
    "mlp": ((500, 500), 500, 10, 10),
    "conv": (None, 500, 200, 150),
}
LOG_VAR_RANGE = (-15.0, 10.0)
# Initialisation (see GMVAE._initialise):
# a Gaussian decoder starts with log sigma_x^2 = DECODER_LOG_VAR_INIT (sigma_x ~ 0.08, about twice
# the noise of the standardised arcs data) instead of ~0 (sigma_x ~ 1, the spread of standardised data).
DECODER_LOG_VAR_INIT = -5.0
# fc120 with the mean-field guide only: the K component means at w = 0 start on a circle of this radius in z, log-variance below
COMPONENT_INIT_RADIUS = 1.5
COMPONENT_LOG_VAR_INIT = -1.0
# default z-prior warm-start (eta_warmup, eta_warmup_epochs) per (architecture, guide); (1, 0) = off elsewhere
ETA_WARMUP = {("fc120", "mean-field"): (5.0, 90)}


def _weight(value):
    return None if (math.isfinite(value) and value >= 0) else "must be a finite number >= 0"


def _factor(value):
    return None if value is None else _weight(value)


def _epochs_or_none(value):
    return None if value is None or value >= 0 else "must be >= 0"


def default_arch(data_shape) -> str:
    """fc120 for 2-D vectors, conv for (C, 28, 28) / (C, 32, 32) images, mlp otherwise."""
    shape = tuple(data_shape)
    if shape == (2,):
        return "fc120"
    if len(shape) == 3 and shape[1] == shape[2] and shape[1] in (28, 32):
        return "conv"
    return "mlp"


class ComponentNet(nn.Module):
    """The beta-network: w (..., W) -> all K component means and scales, each (..., K, D) (Table A.2)."""

    def __init__(self, w_dim: int, hidden: int, n_clusters: int, latent_dim: int):
        super().__init__()
        self.k, self.d = n_clusters, latent_dim
        self.net = nn.Sequential(nn.Linear(w_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * n_clusters * latent_dim))

    def forward(self, w):
        out = self.net(w).reshape(w.shape[:-1] + (2, self.k, self.d))
        loc, log_var = out.unbind(-3)
        return loc, torch.exp(0.5 * log_var.clamp(*LOG_VAR_RANGE))


class GMVAE(MixtureVAE):
    """The Gaussian mixture VAE as a Pyro model/guide pair; see the module docstring."""

    name = "gmvae"
    jit_compatible = True
    # the training defaults per architecture (over TRAIN_DEFAULTS: 50 SVI epochs, no pretraining, decay every 10
    # epochs, a learning-rate warm-up): fc120's epochs and decay step, with the z-prior warm-start (ETA_WARMUP),
    # chosen on arcs without pretraining and without the warm-up, which protects a pretrained start that fc120
    # does not have (docs/studies/gmvae_arcs_tuning.md, experiments/results/gmvae_arcs.md); mlp and conv
    # pretrain an autoencoder (GMVAE.pretrain)
    arch_train_defaults = {"fc120": {"epochs": 200, "lr_step": 20, "lr_warmup": 0}, "mlp": {"pretrain_epochs": 50},
                           "conv": {"pretrain_epochs": 50}}
    settings = {
        "guide": Setting(str, "posterior", "posterior: q(c|z,w) = p_beta(c|z,w) (min-information paper); "
                         "mean-field: a classifier q(c|x) (consistency-violation paper)", one_of(GUIDES)),
        "arch": Setting(str, "auto", "fc120, mlp or conv; auto: fc120 for 2-D vectors, conv for 28x28/32x32 "
                        "images, else mlp", one_of(GMVAE_ARCHITECTURES)),
        "latent_dim": Setting(optional(int), None, "dimension of z (default 2 fc120, 200 conv, 10 mlp)",
                              positive_or_none),
        "w_dim": Setting(optional(int), None, "dimension of w (default 2 fc120, 150 conv, 10 mlp)",
                         positive_or_none),
        "hidden": Setting(optional(int_tuple), None, "encoder widths for fc120/mlp, the decoder mirrors them "
                          "(default 120,120 fc120; 500,500 mlp)", positive_or_none),
        "beta_hidden": Setting(optional(int), None, "width of the beta-net's Tanh layer (default 120 fc120, "
                               "else 500)", positive_or_none),
        "eta": Setting(float, 1.0, "weight of the z-prior KL(q(c|.)||p(c)) (CV paper eq. 3)", _weight),
        "alpha": Setting(float, 0.0, "weight of the consistency violation H(C|Z,W) (CV paper eq. 6)", _weight),
        "lam": Setting(float, 0.0, "minimum information in nats per point: the z-prior has no gradient below it "
                       "(MI paper eq. 7); 0 = off", _weight),
        "eta_warmup": Setting(optional(float), None, "the z-prior weight starts at eta_warmup * eta and falls "
                              "linearly to eta over eta_warmup_epochs (default 5 for fc120 with the mean-field "
                              "guide, else 1 = off)", _factor),
        "eta_warmup_epochs": Setting(optional(int), None, "epochs of that fall (default 90 for fc120 with the "
                                     "mean-field guide, else 0)", _epochs_or_none),
        **PRETRAIN_SETTINGS,
        **START_SETTINGS,
        # held over GMVAE's default 50 epochs (mlp, conv), not VaDE's 20: its assignments are the beta-net's
        # posterior, which drifted from the start once released after 20 (docs/studies/stability.md, "GMVAE")
        "hold_start": replace(START_SETTINGS["hold_start"], default=50),
    }

    def __init__(self, data_shape, n_clusters: int = DEFAULT_CLUSTERS, likelihood: str = "bernoulli", **settings):
        super().__init__(data_shape, n_clusters, likelihood, **settings)
        hp = self.hparams
        arch = default_arch(self.data_shape) if hp["arch"] == "auto" else hp["arch"]
        widths, beta_width, z_dim, w_dim = ARCH_DEFAULTS[arch]
        self.arch = arch
        self.latent_dim = hp["latent_dim"] or z_dim
        self.w_dim = hp["w_dim"] or w_dim
        self.guide_name = hp["guide"]
        self.eta, self.alpha, self.lam = hp["eta"], hp["alpha"], hp["lam"]
        K, D = self.n_clusters, self.latent_dim
        self.likelihood = make_likelihood(likelihood, self.data_shape)
        if arch == "conv":
            self.encoder = conv_encoder(self.data_shape, D, units=self.likelihood.units)
            self.decoder = conv_decoder(D, self.data_shape, self.likelihood)
            features = self.encoder.loc.in_features
        else:
            widths = tuple(hp["hidden"] or widths)
            self.encoder = mlp_encoder(self.data_shape, D, widths, self.likelihood.units)
            self.decoder = mlp_decoder(D, self.data_shape, self.likelihood, widths)
            features = widths[-1]
        # the shared encoder body's other heads: q(w|x), and q(c|x) for the mean-field guide (Table A.1)
        self.w_loc = nn.Linear(features, self.w_dim)
        self.w_log_var = nn.Linear(features, self.w_dim)
        self.classifier = nn.Linear(features, K) if self.guide_name == "mean-field" else None
        self.components = ComponentNet(self.w_dim, hp["beta_hidden"] or beta_width, K, D)
        self.train_defaults = {**type(self).train_defaults, **self.arch_train_defaults[arch]}
        warmup, warmup_epochs = ETA_WARMUP.get((arch, self.guide_name), (1.0, 0))
        self.eta_warmup = warmup if hp["eta_warmup"] is None else hp["eta_warmup"]
        self.eta_warmup_epochs = warmup_epochs if hp["eta_warmup_epochs"] is None else hp["eta_warmup_epochs"]
        self._initialise()

    @torch.no_grad()
    def _initialise(self):
        """Initialisation that keeps GMVAE out of its two early traps (found on the arcs data, K = 8).

        * Gaussian decoder: the log-variance head starts near DECODER_LOG_VAR_INIT. With PyTorch's
          default init sigma_x starts at ~1, the spread of standardised data, so ``N(x | 0, 1)``
          reconstructs as well as anything and the first steps learn to ignore z: posterior
          collapse, the ELBO stuck at the standard-normal value, one cluster.
          A small initial sigma_x makes the reconstruction term dominate at the start (the effect
          of a KL warm-up, without changing the objective); sigma_x stays free to grow.
        * mean-field classifier q(c|x): zero weights, so it starts uniform and first follows the
          mixture's own posterior rather than a random linear split of random features.
        * fc120 (2-D z), mean-field guide only: the beta-net's output biases place the K means at
          w = 0 on a circle of radius COMPONENT_INIT_RADIUS with log-variance COMPONENT_LOG_VAR_INIT,
          instead of all K overlapping at ~0 with unit variance, which left clusters unused on arcs.
          Not for the posterior guide, which did better without it on arcs.
        """
        if self.likelihood.shared_variance:
            self.decoder.log_var.fill_(DECODER_LOG_VAR_INIT)
        elif self.likelihood.name == "gaussian" and self.arch != "conv":
            # the MLP decoder's last Linear emits [mu_x; log sigma_x^2] (reshaped to a leading axis of 2)
            out = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)][-1]
            half = out.out_features // 2
            out.weight[half:].mul_(0.1)
            out.bias[half:].fill_(DECODER_LOG_VAR_INIT)
        if self.classifier is not None:
            self.classifier.weight.zero_()
            self.classifier.bias.zero_()
        if self.arch == "fc120" and self.latent_dim == 2 and self.classifier is not None:
            self.place_components_on_circle(COMPONENT_INIT_RADIUS)

    @torch.no_grad()
    def place_components_on_circle(self, radius: float):
        """Set the beta-net's output biases so that the K means at w = 0 lie on a circle of ``radius``
        in a 2-D z, with log-variance COMPONENT_LOG_VAR_INIT."""
        K = self.n_clusters
        bias = self.components.net[-1].bias.view(2, K, self.latent_dim)
        angle = torch.arange(K, dtype=bias.dtype) * (2 * math.pi / K)
        bias[0] = radius * torch.stack([angle.cos(), angle.sin()], -1)
        bias[1] = COMPONENT_LOG_VAR_INIT

    # -- pretraining: VaDE's start (its Sect. 4.2) carried over to the beta-network -----------------
    def pretrain(self, x, epochs: int, batch_size: int, seed: int, progress: bool = False, **observed) -> dict:
        """Autoencoder on the reconstruction term (z = mu_z(x)), a GMM on the codes, and the
        beta-network started so that mu_c(w) and sigma_c(w) are that GMM's components for every w
        (:meth:`init_mixture_from_codes`); q(z | x) starts with the components' variance
        (:func:`~pyro_mixvae.infer.pretrain.pretrain_mixture_start`, VaDE's start).

        Neither GMVAE paper pretrains; without it the components start where the random
        beta-network puts them and the first epochs can merge clusters that the data separate
        (``docs/studies/robustness.md``). ``--pretrain-epochs 0`` gives the papers' setting.
        """
        return pretrain_mixture_start(self, x, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)

    @torch.no_grad()
    def init_mixture_from_codes(self, z: torch.Tensor, seed: int = 0, progress: bool = False,
                                   others=(), data=None) -> torch.Tensor:
        """Fit the GMM of ``gmm_assign`` on the codes; the beta-net's last layer then emits its means and
        log-variances whatever w is (weights zero, biases the GMM's). Returns the variances (K, D).

        The prior weights stay 1/K (eq. 1b): the GMM's weights are not used.
        """
        start = model_start(self, z, seed, progress, others=others, data=data)
        out = self.components.net[-1]
        out.weight.zero_()
        bias = out.bias.view(2, self.n_clusters, self.latent_dim)
        bias[0] = torch.as_tensor(start.means, dtype=bias.dtype)
        bias[1] = torch.log(torch.as_tensor(start.variances, dtype=bias.dtype))
        self.keep_start_responsibilities(start.responsibilities)
        return bias[1].exp().clone()

    # -- pieces ----------------------------------------------------------------------------------
    def encode(self, x):
        """Shared body -> (z_loc, z_scale, w_loc, w_scale, c_logits or None)."""
        h = self.encoder.features(x)
        z_scale = torch.exp(0.5 * self.encoder.log_var(h).clamp(*LOG_VAR_RANGE))
        w_scale = torch.exp(0.5 * self.w_log_var(h).clamp(*LOG_VAR_RANGE))
        logits = self.classifier(h) if self.classifier is not None else None
        return self.encoder.loc(h), z_scale, self.w_loc(h), w_scale, logits

    def log_prior_c(self, like: torch.Tensor) -> torch.Tensor:
        """log pi = log(1/K) for every cluster (eq. 1b)."""
        return like.new_full((self.n_clusters,), -math.log(self.n_clusters))

    def component_log_prob(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z | mu_k(w), sigma_k^2(w)) for every k: (..., D), (..., W) -> (..., K)."""
        loc, scale = self.components(w)
        return self.log_prior_c(z) + dist.Normal(loc, scale).log_prob(z.unsqueeze(-2)).sum(-1)

    def prior_components(self) -> list:
        """[(1/K, mu_c(w = 0), sigma_c(w = 0))]: the beta-net's components at the mean of p(w) (point values)."""
        loc, scale = self.components(self.w_loc.weight.new_zeros(1, self.w_dim))
        return [(torch.full((self.n_clusters,), 1.0 / self.n_clusters, device=loc.device), loc[0], scale[0])]

    # -- the two programs --------------------------------------------------------------------------
    def model(self, x=None, num_data: Optional[int] = None):
        """Eq. 1a-1d, with c enumerated; generates when ``x`` is None (returns the decoder's output)."""
        zero = self.zero()
        with data_plate(x, num_data):
            w = pyro.sample("w", dist.Normal(zero, 1.0).expand([self.w_dim]).to_event(1))
            c = pyro.sample("c", dist.Categorical(logits=self.log_prior_c(zero)), infer={"enumerate": "parallel"})
            loc, scale = self.components(w)  # (..., B, K, D)
            z = pyro.sample("z", dist.Normal(Vindex(loc)[..., c, :], Vindex(scale)[..., c, :]).to_event(1))
            out = self.decoder(z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    def guide(self, x=None, num_data: Optional[int] = None):
        """q(z|x) q(w|x), times q(c|x) for the mean-field guide (else c's posterior is p_beta(c|z,w));
        no global sites: nothing to draw when ``x`` is None."""
        if x is None:
            return
        with data_plate(x, num_data):
            z_loc, z_scale, w_loc, w_scale, logits = self.encode(x)
            if logits is not None:
                pyro.sample("c", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            pyro.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
            pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))

    def make_elbo(self, num_particles: int = 1):
        """:class:`MixtureELBO` with this model's eta, alpha and lam."""
        return MixtureELBO(self.eta, self.alpha, self.lam, max_plate_nesting=self.max_plate_nesting,
                           num_particles=num_particles, vectorize_particles=True)

    def schedules(self) -> list:
        """The held start (:meth:`~pyro_mixvae.models.base.MixtureVAE.hold_schedules`) and the z-prior
        warm-start: eta_t = eta * (w + (1 - w) * min(1, (t - 1) / E)) at epoch t, with w = ``eta_warmup``
        and E = ``eta_warmup_epochs``; after epoch E + 1 the bound is the
        papers' (eta of CV eq. 3).

        A z-prior weight above 1 pulls q(c|x) (mean-field) or p(c|z,w) (posterior guide) towards the
        uniform p(c) -- the "anti-clustering" effect of CV Sect. 3.2.2 -- so early in training no
        cluster can claim a stretch of the data before the encoder has separated it; the CV
        paper (Sect. 4.1) credits the z-prior with exactly this ("it effectively prevents the
        recognition network from deciding too quickly on the label assignments"). On by default
        for fc120 with the mean-field guide only (``ETA_WARMUP``); with the posterior guide and
        the threshold lam the z-prior term has no gradient below lam, whatever its weight
        (``docs/studies/gmvae_arcs_tuning.md``).
        """
        if self.eta == 0 or self.eta_warmup == 1 or self.eta_warmup_epochs == 0:
            return self.hold_schedules()
        return [LinearSchedule("eta", self.eta_warmup * self.eta, self.eta, int(self.eta_warmup_epochs))] \
            + self.hold_schedules()

    # -- clustering -------------------------------------------------------------------
    @torch.no_grad()
    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """posterior guide: p_beta(c | z = mu_z(x), w = mu_w(x)) (eq. 3 at the encoder means);
        mean-field guide: the classifier q(c | x)."""
        z_loc, _, w_loc, _, logits = self.encode(x)
        if logits is None:
            logits = self.component_log_prob(z_loc, w_loc)
        return torch.softmax(logits, -1)
