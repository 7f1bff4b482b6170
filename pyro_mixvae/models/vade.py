"""VaDE: Variational Deep Embedding (Jiang et al. 2017, ``vade.txt``).

Generative story (Sect. 3.1, eq. 3-6)::

    c ~ Cat(pi)                          # eq. 4
    z | c ~ N(mu_c, diag sigma_c^2)      # eq. 5
    x | z ~ p_theta(x | z)               # eq. 1-2, 6: Bernoulli(f(z)) or N(mu_x, sigma_x^2)

Inference: q(z | x) = N(mu~, diag sigma~^2), [mu~; log sigma~^2] = g(x; phi) (eq. 10-11).
The cluster ``c`` is enumerated in the model, so ``TraceEnum_ELBO`` sums it out exactly and
optimises the collapsed bound

    E_q(z|x)[ log p(x|z) + log sum_c pi_c N(z | mu_c, sigma_c^2) - log q(z|x) ],

which equals VaDE's ELBO (eq. 9) with q(c|x) = p(c|z) (eq. 15-16), averaged over z rather
than plugged in at one draw. It is never below the paper's mean-field bound (eq. 12), since
eq. 15 shows the two differ by E_q(z)[KL(q(c|x) || p(c|z))] >= 0.

Assignments use eq. 16 at the encoder mean: gamma_c = p(c | mu~(x)).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ..infer.elbo import InformationBottleneckELBO, MixtureELBO
from ..infer.pretrain import model_start, pretrain_mixture_start
from ..nets import make_encoder_decoder, make_likelihood
from .base import (DEFAULT_CLUSTERS, NETWORK_SETTINGS, PRETRAIN_SETTINGS, START_SETTINGS, MixtureVAE, Setting,
                   data_plate, non_negative, positive)


class VaDE(MixtureVAE):
    """VaDE as a Pyro model/guide pair with an enumerated cluster site."""

    name = "vade"
    jit_compatible = True
    # 50 autoencoder epochs, then 200 epochs of SVI with the paper's schedule (lr 0.002, x0.9 every
    # 10 epochs, Sect. 4.2: TRAIN_DEFAULTS); results in experiments/results/benchmark.md. On fewer
    # than 10,000 points the same decay in half the epochs (docs/studies/main_job.md)
    train_defaults = {"epochs": 200, "pretrain_epochs": 50}
    small_data_defaults = {"epochs": 100, "lr_step": 5}
    settings = {
        "latent_dim": Setting(int, 10, "dimension J of z", positive),
        **NETWORK_SETTINGS,
        **PRETRAIN_SETTINGS,
        "pretrain_noise": Setting(float, 0.0, "input dropout rate of the denoising autoencoder pretraining",
                                  lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
        **START_SETTINGS,
        "s": Setting(float, 1.0, "weight of the KL part: the s-generalised bound of vib-gmm eq. 9 (1 = VaDE)",
                     non_negative),
    }

    def __init__(self, data_shape, n_clusters: int = DEFAULT_CLUSTERS, likelihood: str = "bernoulli", **settings):
        super().__init__(data_shape, n_clusters, likelihood, **settings)
        J, K = self.hparams["latent_dim"], self.n_clusters
        self.likelihood = make_likelihood(likelihood, self.data_shape)
        self.encoder, self.decoder = make_encoder_decoder(
            self.hparams["arch"], self.data_shape, J, self.likelihood, self.hparams["hidden"])
        # the GMM prior's parameters: pi on the simplex through its logits, sigma_c^2 > 0 through its log
        self.pi_logits = nn.Parameter(torch.zeros(K))
        self.mu_c = nn.Parameter(torch.randn(K, J))
        self.log_var_c = nn.Parameter(torch.zeros(K, J))

    # -- the prior --------------------------------------------------------------------------
    def mixture(self):
        """(log pi (K,), mu_c (K, J), sigma_c (K, J)) of the Gaussian mixture prior on z."""
        return torch.log_softmax(self.pi_logits, -1), self.mu_c, torch.exp(0.5 * self.log_var_c)

    def prior_components(self) -> list:
        """[(pi, mu_c, sigma_c)]: the parameters of the mixture prior (point values)."""
        log_pi, loc, scale = self.mixture()
        return [(log_pi.exp(), loc, scale)]

    def component_distribution(self, loc: torch.Tensor, scale: torch.Tensor):
        """p(z | c) per latent dimension, given the component's parameters: N(mu_c, sigma_c^2) (eq. 5). The one
        place a subclass changes the components' family (``tests/test_registry.py``: Student-t)."""
        return dist.Normal(loc, scale)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_c + log N(z | mu_c, sigma_c^2) for every c: (..., J) -> (..., K)."""
        log_pi, loc, scale = self.mixture()
        return log_pi + self.component_distribution(loc, scale).log_prob(z.unsqueeze(-2)).sum(-1)

    # -- the two programs -------------------------------------------------------------------
    def model(self, x=None, num_data: Optional[int] = None):
        """Eq. 4-6, with c enumerated; generates when ``x`` is None (returns the decoder's output)."""
        log_pi, loc, scale = self.mixture()
        with data_plate(x, num_data):
            c = pyro.sample("c", dist.Categorical(logits=log_pi), infer={"enumerate": "parallel"})
            z = pyro.sample("z", self.component_distribution(loc[c], scale[c]).to_event(1))
            out = self.decoder(z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    def guide(self, x=None, num_data: Optional[int] = None):
        """q(z | x), eq. 10-11 (no global sites: nothing to draw when ``x`` is None)."""
        if x is None:
            return
        with data_plate(x, num_data):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def make_elbo(self, num_particles: int = 1):
        """``TraceEnum_ELBO``; with ``hold_start`` the same bound as :class:`~pyro_mixvae.infer.elbo.MixtureELBO`,
        whose ``hold`` the schedule sets; with ``s != 1`` the s-generalised bound (vib-gmm eq. 9) of
        :class:`~pyro_mixvae.infer.elbo.InformationBottleneckELBO` with the sampled KL."""
        if self.hparams.get("s", 1.0) == 1.0:
            if not self.hparams["hold_start"]:
                return super().make_elbo(num_particles)
            return MixtureELBO(max_plate_nesting=self.max_plate_nesting, num_particles=num_particles,
                               vectorize_particles=True)
        return InformationBottleneckELBO(s=self.hparams["s"], kl="sampled", max_plate_nesting=self.max_plate_nesting,
                                         num_particles=num_particles, vectorize_particles=True)

    # -- clustering -------------------------------------------------------------
    @torch.no_grad()
    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """gamma = p(c | z = mu~(x)), eq. 16 at the encoder mean."""
        return torch.softmax(self.component_log_prob(self.encoder(x)[0]), -1)

    # -- pretraining (Sect. 4.2) ---------------------------------------------------------------
    def pretrain(self, x, epochs: int, batch_size: int, seed: int, progress: bool = False, **observed) -> dict:
        """Autoencoder on the reconstruction term (and ``start_autoencoders - 1`` more, for their codes), then a
        GMM on mu~(x) (``gmm_assign``; by default the consensus of GMM starts on embeddings of the data) sets pi,
        mu_c, sigma_c, and q(z | x) starts with the components' variance
        (:func:`~pyro_mixvae.infer.pretrain.init_guide_scale`)."""
        return pretrain_mixture_start(self, x, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)

    @torch.no_grad()
    def init_mixture_from_codes(self, z: torch.Tensor, seed: int = 0, progress: bool = False, others=(),
                                data=None) -> torch.Tensor:
        """pi, mu_c, sigma_c from :func:`~pyro_mixvae.infer.pretrain.fit_diag_gmm` on the codes ``z`` (with
        ``others``, further autoencoders' codes of the same points, or ``data``, the points themselves,
        deciding the responsibilities where ``gmm_assign`` says so). Returns sigma_c^2 (K, J)."""
        start = model_start(self, z, seed, progress, others=others, data=data)
        like = self.mu_c
        self.pi_logits.copy_(torch.as_tensor(np.log(np.maximum(start.weights, 1e-6)), dtype=like.dtype))
        self.mu_c.copy_(torch.as_tensor(start.means, dtype=like.dtype))
        self.log_var_c.copy_(torch.as_tensor(np.log(start.variances), dtype=like.dtype))
        self.keep_start_responsibilities(start.responsibilities)
        return self.log_var_c.exp()
