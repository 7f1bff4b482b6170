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

**A Dirichlet prior on the weights** (``weight_concentration`` alpha0 > 0, ``mixvae fit --set
weight_concentration=ALPHA0``) makes pi a global latent site instead of a parameter::

    pi ~ Dir(alpha0, ..., alpha0),   q(pi) = Dir(c)

with q(pi) updated in closed form after every SVI step, as the factorial prior's weights are
(``factorial-mixture-prior.txt`` eq. 7, 13): c <- (1 - rho) c + rho (alpha0 + N / |B| sum_n gamma_n),
gamma the minibatch's eq. 16 responsibilities, rho_tau = (tau0 + tau)^-kappa (App. E). The model draws
pi from the prior and the guide from q(pi), so the bound carries E_q[log p(pi) - log q(pi)] and c's
eq. 4 term at a draw of pi; assignments use E_q[log pi_c] = psi(c_c) - psi(sum c) in eq. 16. With a
small alpha0 a component that loses its points loses its weight (E_q[log pi_c] falls without bound
as c_c -> alpha0), and the clusters in use are read off q(pi): the components holding more than one
point (:func:`~pyro_mixvae.infer.conjugate.effective_components`). The prior empties a component only
once the bound has moved its points elsewhere; it does not by itself merge two components that share
a group (``docs/studies/clusters_auto.md``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ..distributions import dirichlet_expected_log
from ..infer.conjugate import (DEFAULT_KAPPA, DEFAULT_TAU0, effective_components, natural_step,
                               optimal_concentration, step_size)
from ..infer.distributed import sum_across_ranks
from ..infer.elbo import InformationBottleneckELBO, MixtureELBO
from ..infer.pretrain import model_start, pretrain_mixture_start
from ..nets import make_encoder_decoder, make_likelihood, sized_latent
from .base import (DEFAULT_CLUSTERS, NETWORK_SETTINGS, PRETRAIN_SETTINGS, START_SETTINGS, MixtureVAE, Setting,
                   data_plate, non_negative, one_of, optional, positive_or_none)


class VaDE(MixtureVAE):
    """VaDE as a Pyro model/guide pair with an enumerated cluster site."""

    name = "vade"
    # 50 autoencoder epochs, then 200 epochs of SVI with the paper's schedule (lr 0.002, x0.9 every
    # 10 epochs, Sect. 4.2: TRAIN_DEFAULTS); results in experiments/results/benchmark.md. On fewer
    # than 10,000 points the same decay in half the epochs (docs/studies/main_job.md)
    train_defaults = {"epochs": 200, "pretrain_epochs": 50}
    small_data_defaults = {"epochs": 100, "lr_step": 5}
    settings = {
        "latent_dim": Setting(optional(int), None, "dimension J of z (default 10, or the data's dimension where "
                              "it is smaller)", positive_or_none),
        **NETWORK_SETTINGS,
        **PRETRAIN_SETTINGS,
        "pretrain_noise": Setting(float, 0.0, "input dropout rate of the denoising autoencoder pretraining",
                                  lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
        **START_SETTINGS,
        "s": Setting(float, 1.0, "weight of the KL part: the s-generalised bound of vib-gmm eq. 9 (1 = VaDE)",
                     non_negative),
        "weight_concentration": Setting(float, 0.0, "alpha0 of a symmetric Dirichlet prior on pi, its posterior "
                                        "q(pi) = Dir(c) updated in closed form after every step; metrics report "
                                        "the clusters it gives more than one point; 0 = pi a point estimate "
                                        "(eq. 4); with start_clusters=auto, 0 means 1/K", non_negative),
        "start_clusters": Setting(str, "all", "all: the mixture start gives each of the K components its points; "
                                  "auto (mixvae fit --clusters auto): it fills the K' <= K groups that the data's "
                                  "BIC (or their neighbourhood graph, or the codes' BIC) proposes, the others start "
                                  "empty, under the Dirichlet prior on pi", one_of(("all", "auto"))),
    }

    def __init__(self, data_shape, n_clusters: int = DEFAULT_CLUSTERS, likelihood: str = "bernoulli", **settings):
        super().__init__(data_shape, n_clusters, likelihood, **settings)
        J, K = self.hparams["latent_dim"] or sized_latent(self.data_shape), self.n_clusters
        self.start_proposal = None  # (K', what proposed it) of a start_clusters=auto start
        self.likelihood = make_likelihood(likelihood, self.data_shape)
        self.encoder, self.decoder = make_encoder_decoder(
            self.hparams["arch"], self.data_shape, J, self.likelihood, self.hparams["hidden"])
        # the GMM prior's parameters: pi on the simplex through its logits (or q(pi) = Dir(c), conjugate
        # buffers that SVI's optimizer never touches), sigma_c^2 > 0 through its log
        if self.has_weight_prior:
            self.register_buffer("weight_prior", torch.full((K,), self.weight_concentration))
            self.register_buffer("weight_posterior", self.weight_prior.clone())  # c
            self.register_buffer("weight_steps", torch.zeros((), dtype=torch.long))  # tau
        else:
            self.pi_logits = nn.Parameter(torch.zeros(K))
        self.mu_c = nn.Parameter(torch.randn(K, J))
        self.log_var_c = nn.Parameter(torch.zeros(K, J))

    # -- the prior --------------------------------------------------------------------------
    @property
    def weight_concentration(self) -> float:
        """alpha0 of the Dirichlet prior on pi: the setting, or 1 / K for a ``start_clusters="auto"`` start that
        leaves it at 0 (a sparse prior, so that the clusters found are read off q(pi)); 0 = no prior."""
        alpha0 = float(self.hparams.get("weight_concentration", 0.0))
        return alpha0 or (1.0 / self.n_clusters if self.hparams.get("start_clusters") == "auto" else 0.0)

    @property
    def has_weight_prior(self) -> bool:
        """True when pi has a Dirichlet prior (:attr:`weight_concentration` > 0) rather than a point value."""
        return self.weight_concentration > 0

    @property
    def jit_compatible(self) -> bool:
        """The conjugate q(pi) changes between steps, which a trace would freeze (``infer/params.py``)."""
        return not self.has_weight_prior

    @property
    def globals_are_point_values(self) -> bool:
        return not self.has_weight_prior

    @property
    def point_value_sites(self) -> tuple:
        """mu_c and sigma_c always; pi too unless it has the Dirichlet prior (then drawn from q(pi))."""
        return ("mu_c", "sigma_c") if self.has_weight_prior else ("pi", "mu_c", "sigma_c")

    def mixture(self):
        """(log pi (K,), mu_c (K, J), sigma_c (K, J)) of the Gaussian mixture prior on z; with the Dirichlet
        prior, E_q[log pi] in place of log pi."""
        if self.has_weight_prior:
            log_pi = dirichlet_expected_log(self.weight_posterior).to(self.mu_c.dtype)
        else:
            log_pi = torch.log_softmax(self.pi_logits, -1)
        return log_pi, self.mu_c, torch.exp(0.5 * self.log_var_c)

    def prior_components(self) -> list:
        """[(pi, mu_c, sigma_c)]: the parameters of the mixture prior (point values; with the Dirichlet prior,
        pi = E_q[pi] = c / sum c)."""
        _, loc, scale = self.mixture()
        return [(self.weights(), loc, scale)]

    def weights(self) -> torch.Tensor:
        """pi (K,): the point value, or E_q[pi] = c / sum c under the Dirichlet prior."""
        if self.has_weight_prior:
            return (self.weight_posterior / self.weight_posterior.sum()).to(self.mu_c.dtype)
        return torch.softmax(self.pi_logits, -1)

    def global_posterior(self, num_samples: int) -> list:
        """Draws of pi from q(pi) = Dir(c) beside mu_c, sigma_c (point values, repeated); the point values alone
        (one draw) without the Dirichlet prior."""
        if not self.has_weight_prior:
            return super().global_posterior(num_samples)
        _, loc, scale = self.mixture()
        pi = dist.Dirichlet(self.weight_posterior).sample((num_samples,)).to(loc.dtype)
        return [{"pi": pi, "mu_c": loc.expand((num_samples,) + loc.shape),
                 "sigma_c": scale.expand((num_samples,) + scale.shape)}]

    @torch.no_grad()
    def diagnostics(self, x: torch.Tensor) -> dict:
        """Under the Dirichlet prior: the clusters q(pi) uses (:meth:`effective_clusters`) and E_q[pi]."""
        if not self.has_weight_prior:
            return super().diagnostics(x)
        return {"effective_clusters": self.effective_clusters(), "weights": self.weights().tolist()}

    def effective_clusters(self) -> int:
        """The components q(pi) gives more than one point (all K without the Dirichlet prior)."""
        if not self.has_weight_prior:
            return self.n_clusters
        return effective_components(self.weight_posterior, self.weight_prior)

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
        if self.has_weight_prior:
            pi = pyro.sample("pi", dist.Dirichlet(self.weight_prior))
            log_pi = torch.log(pi.clamp(min=torch.finfo(pi.dtype).tiny))
        with data_plate(x, num_data):
            c = pyro.sample("c", dist.Categorical(logits=log_pi), infer={"enumerate": "parallel"})
            z = pyro.sample("z", self.component_distribution(loc[c], scale[c]).to_event(1))
            out = self.decoder(z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    def guide(self, x=None, num_data: Optional[int] = None):
        """q(z | x), eq. 10-11, and q(pi) = Dir(c) under the Dirichlet prior (the only site when ``x`` is None).
        Any model with VaDE's ``encoder`` may reuse it (``guides/write-your-own-mixture-model.md``)."""
        concentration = getattr(self, "weight_posterior", None)  # c, a buffer only under the Dirichlet prior
        if concentration is not None:
            pyro.sample("pi", dist.Dirichlet(concentration))
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

    @torch.no_grad()
    def conjugate_step(self, x: torch.Tensor, num_data: int, rho: Optional[float] = None, **observed) -> None:
        """Under the Dirichlet prior, one natural-gradient step on q(pi) after an SVI step on the minibatch ``x``
        of ``num_data`` points: c <- (1 - rho) c + rho c*, c* = alpha0 + N / |B| sum_n gamma_n (factorial eq.
        7, 13), gamma of eq. 16 from the updated encoder, rho_tau = (tau0 + tau)^-kappa (App. E) or ``rho``
        when given (1 on all the data: a coordinate-ascent step). The sums are added across the ranks in
        data-parallel training. Nothing without the prior."""
        if not self.has_weight_prior:
            return
        count, points = sum_across_ranks([self.responsibilities(x).sum(0), torch.tensor(float(len(x)), device=x.device)])
        self.weight_steps += 1
        rho = step_size(int(self.weight_steps), DEFAULT_TAU0, DEFAULT_KAPPA) if rho is None else float(rho)
        optimal = optimal_concentration(count, float(points), num_data, self.weight_prior.to(torch.float64))
        self.weight_posterior.copy_(natural_step(self.weight_posterior.to(torch.float64), optimal, rho))

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
        if self.has_weight_prior:  # q(pi) = Dir(alpha0 + N pi_start): the start's counts
            self.weight_posterior.copy_(self.weight_prior + len(z) * torch.as_tensor(start.weights, dtype=like.dtype))
        else:
            self.pi_logits.copy_(torch.as_tensor(np.log(np.maximum(start.weights, 1e-6)), dtype=like.dtype))
        self.mu_c.copy_(torch.as_tensor(start.means, dtype=like.dtype))
        self.log_var_c.copy_(torch.as_tensor(np.log(start.variances), dtype=like.dtype))
        self.keep_start_responsibilities(start.responsibilities)
        return self.log_var_c.exp()
