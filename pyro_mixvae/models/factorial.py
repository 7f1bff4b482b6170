"""The factorial mixture prior with conjugate Normal-Gamma / Dirichlet globals (``factorial-mixture-prior.txt``).

Generative story (Sect. 2.1-2.2, eq. 1-2), I factors, factor i with K_i components on its
D-dimensional block z_i of z = [z_1, ..., z_I]::

    pi_i ~ Dir(c0 1)                                               # global, per factor
    (mu_ikd, alpha_ikd) ~ NormalGamma(m0, s0, a0, b0)              # global, per component and dimension
    r_i | pi_i ~ Cat(pi_i)           (observed where a label is given; Sect. 2.5)
    z_i | r_i ~ N(mu_{i r_i}, diag alpha_{i r_i}^-1)               # eq. 1
    x | z ~ p_theta(x | z)                                         # Bernoulli for images, Gaussian for real data

As a Pyro program the globals are the sample sites ``pi_i`` and ``xi_i`` (a (K_i, D, 2) value:
``[..., 0]`` = mu, ``[..., 1]`` = alpha), the r_i are enumerated (``infer={"enumerate":
"parallel"}``), one z site per factor so that the enumeration of the factors stays separate
(cost sum_i K_i, not prod_i K_i).

Posterior approximation (Sect. 2.3): q(z|x) amortized (one diagonal Gaussian, split into the
blocks); q(pi_i) = Dir(c_i) and q(mu, alpha) = NormalGamma(m, s, a, b) whose parameters are
buffers of :class:`~pyro_mixvae.infer.conjugate.ConjugateMixture`, one per factor -- never
``pyro.param``, so SVI's optimizer leaves them alone; the guide samples the globals from them.

Training (Sect. 2.4, App. E), one minibatch:

1. an SVI step on theta, phi with ``TraceEnum_ELBO``: r_i is summed out exactly (model-side
   enumeration, the collapsed form of (4a)-(4c)) at a draw of the globals from q;
2. :meth:`~FactorialMixtureVAE.conjugate_step` (public: call it after ``svi.step`` in a plain
   Pyro loop; ``fit`` calls it too): responsibilities gamma recomputed in closed form (eq. 5-6)
   from the updated encoder, then one natural-gradient step on q(pi_i), q(mu, alpha)
   (eq. 7, 13, 14) with rho_tau = (tau0 + tau)^-kappa.

Before that, ``pretrain``: a VAE with an N(0, I) prior and an annealed KL (Sect. 2.4 "in
practice"), then the prior-initialisation phase (steps 1 and 3 only): a diagonal GMM on the
codes of each block starts q(xi) (``gmm_restarts``), followed by ``prior_init_iters``
full-data coordinate-ascent sweeps (rho = 1).

Semi-supervision (Sect. 2.5): ``labels`` (B, I) with -1 where unknown. A known label clamps
q(r_i) to a delta -- in the model r_i's distribution becomes a point mass at the label and the
label's likelihood log pi_{i y} enters as a factor. The cross-entropy of eq. 8, delta * sum y log g
with g the softmax of eq. 5-6's logits computed from the encoder, is not part of the generative
story: it is the objective's (:meth:`~FactorialMixtureVAE.make_elbo`), the log-likelihood of the
auxiliary program :meth:`~FactorialMixtureVAE.classify` (as Pyro's ss_vae_M2 example), so its
gradient reaches the encoder.

Sampling (eq. 10): ``Predictive(model, guide=guide)`` at ``x = None`` -- pi_i, (mu, alpha) drawn
from q, then k_i (given, or ~ Cat(pi_i)) and z_i | k_i from the model, so that each point's z_i
is a draw of eq. 10's Student-t predictive. Evaluation (eq. 11, App. C.2-C.3):
:meth:`predictive_bound` with its parts.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch import nn

from ..distributions import NormalGamma
from ..errors import ConfigError
from ..infer.conjugate import (DEFAULT_KAPPA, DEFAULT_TAU0, HYPERPRIOR, ConjugateMixture, MixtureStats, check_schedule,
                               effective_components)
from ..infer.distributed import sum_across_ranks
from ..infer.elbo import AuxiliaryELBO
from ..infer.pretrain import fit_diag_gmm, fit_shared_variance, pretrain_autoencoder
from ..nets import eval_mode, make_encoder_decoder, make_likelihood
from .base import (DEFAULT_CLUSTERS, NETWORK_SETTINGS, PRETRAIN_SETTINGS, MixtureVAE, Setting, data_plate, int_tuple,
                   non_negative, positive)

def _positive_int(value):
    return None if value >= 1 else "must be >= 1"


def _kappa(value):
    return None if 0.5 < value <= 1 else "must be in (0.5, 1]"


class FactorialMixtureVAE(MixtureVAE):
    """The factorial mixture prior VAE; ``responsibilities`` are factor 0's (see :meth:`factor_responsibilities`)."""

    name = "factorial"
    train_defaults = {"epochs": 100, "pretrain_epochs": 50}
    accepts_labels = True
    settings = {
        "factors": Setting(int, 1, "I, the number of factors", _positive_int),
        "components": Setting(int_tuple, (), "K_1,...,K_I (one value: the same K for every factor; "
                              "empty: --clusters for every factor)",
                              lambda v: None if all(k >= 1 for k in v) else "must be positive integers"),
        "dim": Setting(int, 10, "D, the dimension of each factor's block of z", _positive_int),
        "delta": Setting(float, 0.0, "weight of the semi-supervised cross-entropy (eq. 8)", non_negative),
        "tau0": Setting(float, DEFAULT_TAU0, "rho_tau = (tau0 + tau)^-kappa (App. E)", non_negative),
        "kappa": Setting(float, DEFAULT_KAPPA, "rho_tau = (tau0 + tau)^-kappa, in (0.5, 1] (App. E)", _kappa),
        "m0": Setting(float, HYPERPRIOR["m0"], "Normal-Gamma hyperprior mean"),
        "s0": Setting(float, HYPERPRIOR["s0"], "Normal-Gamma hyperprior precision scale", positive),
        "a0": Setting(float, HYPERPRIOR["a0"], "Normal-Gamma hyperprior shape", positive),
        "b0": Setting(float, HYPERPRIOR["b0"], "Normal-Gamma hyperprior rate", positive),
        "c0": Setting(float, HYPERPRIOR["c0"], "Dirichlet hyperprior pseudo-count", positive),
        **NETWORK_SETTINGS,
        "pretrain_lr": replace(PRETRAIN_SETTINGS["pretrain_lr"], help="learning rate of the N(0, I) VAE pretraining"),
        "pretrain_kl": Setting(float, 0.01, "final weight of the pretraining's KL, annealed from 0", non_negative),
        "gmm_restarts": replace(PRETRAIN_SETTINGS["gmm_restarts"], help="restarts of the GMM that starts q(xi) on the "
                                "pretrained codes"),
        "prior_init_iters": Setting(int, 20, "full-data coordinate-ascent sweeps of the prior initialisation",
                                    lambda v: None if v >= 0 else "must be >= 0"),
    }

    def __init__(self, data_shape, n_clusters: int = DEFAULT_CLUSTERS, likelihood: str = "bernoulli", **settings):
        super().__init__(data_shape, n_clusters, likelihood, **settings)
        hp = self.hparams
        I, D = hp["factors"], hp["dim"]
        ks = tuple(hp["components"]) or (self.n_clusters,)
        if len(ks) == 1:
            ks = ks * I
        if len(ks) != I:
            raise ConfigError(f"setting components={','.join(map(str, ks))} names {len(ks)} factors but factors={I}")
        check_schedule(hp["tau0"], hp["kappa"])
        self.components, self.n_factors, self.dim = ks, I, D
        self.n_clusters = ks[0]
        self.likelihood = make_likelihood(likelihood, self.data_shape)
        self.encoder, self.decoder = make_encoder_decoder(hp["arch"], self.data_shape, I * D, self.likelihood,
                                                          hp["hidden"])
        prior = {k: hp[k] for k in ("m0", "s0", "a0", "b0", "c0")}
        self.mixtures = nn.ModuleList(ConjugateMixture(k, D, tau0=hp["tau0"], kappa=hp["kappa"], **prior)
                                      for k in ks)
        self.cluster_sites = tuple(f"r_{i}" for i in range(I))

    # -- pieces ------------------------------------------------------------------------------------
    def blocks(self, t: torch.Tensor) -> list:
        """Split (..., I * D) into the I factor blocks (..., D)."""
        return list(t.split(self.dim, dim=-1))

    def encode_blocks(self, x):
        """[(z_loc_i, z_var_i)] per factor from q(z | x)."""
        loc, scale = self.encoder(x)
        return list(zip(self.blocks(loc), self.blocks(scale ** 2)))

    def _check_labels(self, labels: Optional[torch.Tensor], batch: int) -> Optional[torch.Tensor]:
        if labels is None:
            return None
        labels = torch.as_tensor(labels)
        if labels.dim() == 1:
            labels = labels[:, None]
        if labels.shape != (batch, self.n_factors):
            raise ConfigError(f"labels must have shape (N, {self.n_factors}) (-1 = unknown); got {tuple(labels.shape)}")
        return labels.long()

    # -- the two programs --------------------------------------------------------------------------
    def model(self, x=None, num_data: Optional[int] = None, labels: Optional[torch.Tensor] = None):
        """Eq. 1-2 with r_i enumerated, clamped to the label where ``labels`` gives one (Sect. 2.5);
        generates when ``x`` is None (returns the decoder's output)."""
        labels = self._check_labels(labels, x.shape[0] if x is not None else int(num_data or 1))
        globals_ = []
        for i, mix in enumerate(self.mixtures):
            pi = pyro.sample(f"pi_{i}", dist.Dirichlet(mix.c0))
            xi = pyro.sample(f"xi_{i}", NormalGamma(mix.m0, mix.s0, mix.a0, mix.b0).to_event(2))
            globals_.append((pi, xi))
        zs = []
        with data_plate(x, num_data):
            for i, (pi, xi) in enumerate(globals_):
                log_pi = torch.log(pi.clamp(min=torch.finfo(pi.dtype).tiny))
                logits = log_pi  # (..., K): broadcast over the plate (and any particle dimension)
                if labels is not None:
                    logits = self._clamp(i, log_pi, labels[:, i])
                r = pyro.sample(f"r_{i}", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
                mu, alpha = Vindex(xi[..., 0])[..., r, :], Vindex(xi[..., 1])[..., r, :]  # broadcasts particles, enumeration
                zs.append(pyro.sample(f"z_{i}", dist.Normal(mu, alpha.rsqrt()).to_event(1)))
            z = torch.cat(torch.broadcast_tensors(*zs) if len(zs) > 1 else zs, -1)
            out = self.decoder(z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    def _clamp(self, i: int, log_pi: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Factor i's logits of r with the known labels ``y`` (>= 0) clamped: a point mass at the label
        (a large negative number, not -inf: validation refuses it), the label's likelihood
        log pi_{i y} added as the factor ``label_i``."""
        known = y >= 0
        onehot = torch.nn.functional.one_hot(y.clamp(min=0), self.components[i])
        pyro.factor(f"label_{i}", torch.where(known, (log_pi * onehot).sum(-1), 0.0))
        return torch.where(known[:, None], torch.where(onehot.bool(), 0.0, -1e30), log_pi)

    def guide(self, x=None, num_data: Optional[int] = None, labels: Optional[torch.Tensor] = None):
        """q(pi_i) = Dir(c_i), q(mu, alpha) = NormalGamma(m, s, a, b) (the conjugate buffers), and
        q(z | x) split into the factor blocks; only the globals when ``x`` is None."""
        for i, mix in enumerate(self.mixtures):
            pyro.sample(f"pi_{i}", dist.Dirichlet(mix.c))
            pyro.sample(f"xi_{i}", mix.normal_gamma().to_event(2))
        if x is None:
            return
        with data_plate(x, num_data):
            loc, scale = self.encoder(x)
            for i, (loc_i, scale_i) in enumerate(zip(self.blocks(loc), self.blocks(scale))):
                pyro.sample(f"z_{i}", dist.Normal(loc_i, scale_i).to_event(1))

    def classify(self, x, num_data: Optional[int] = None, labels: Optional[torch.Tensor] = None):
        """The auxiliary program of eq. 8: each known label y_i observed under g = softmax of eq. 5-6's
        logits at q(z | x) (the classifier the mixture defines on the encoder), so that its
        log-likelihood sum_n sum_k y_k log g_k reaches the encoder. Pyro's ss_vae_M2 ``model_classify``;
        :meth:`make_elbo` adds ``delta`` times its negative log-likelihood to the loss."""
        labels = self._check_labels(labels, x.shape[0])
        if labels is None:
            return
        blocks = self.encode_blocks(x)
        with data_plate(x, num_data):
            for i, (mix, (loc, var)) in enumerate(zip(self.mixtures, blocks)):
                y = labels[:, i]
                g = dist.Categorical(logits=mix.responsibility_logits(loc, var))
                pyro.sample(f"y_{i}", g.mask(y >= 0), obs=y.clamp(min=0))

    def make_elbo(self, num_particles: int = 1):
        """``TraceEnum_ELBO``; with ``delta`` > 0 :class:`~pyro_mixvae.infer.elbo.AuxiliaryELBO`, which
        adds delta times :meth:`classify`'s negative log-likelihood of the known labels (eq. 8)."""
        if self.hparams["delta"] == 0:
            return super().make_elbo(num_particles)
        return AuxiliaryELBO(self.classify, self.hparams["delta"], max_plate_nesting=self.max_plate_nesting,
                             num_particles=num_particles, vectorize_particles=True)

    # -- conjugate updates -------------------------------------------------------------------------
    @torch.no_grad()
    def clamped_responsibilities(self, x, labels: Optional[torch.Tensor] = None, blocks=None) -> list:
        """[gamma_i (B, K_i)] of eq. 5-6, a one-hot row where ``labels`` gives factor i's value.

        ``blocks`` are ``encode_blocks(x)`` when the caller has them already (one encoder pass)."""
        labels = self._check_labels(labels, x.shape[0])
        blocks = self.encode_blocks(x) if blocks is None else blocks
        out = []
        for i, (mix, (loc, var)) in enumerate(zip(self.mixtures, blocks)):
            gamma = mix.responsibilities(loc, var)
            if labels is not None:
                y = labels[:, i]
                onehot = torch.nn.functional.one_hot(y.clamp(min=0), self.components[i]).to(gamma.dtype)
                gamma = torch.where((y >= 0)[:, None], onehot, gamma)
            out.append(gamma)
        return out

    @torch.no_grad()
    def conjugate_step(self, x, num_data, labels: Optional[torch.Tensor] = None, rho: Optional[float] = None) -> None:
        """Steps 1 and 3 of Sect. 2.4 on the minibatch ``x`` of ``num_data`` points, after an SVI step:
        gamma recomputed from the updated encoder (eq. 5-6, clamped to ``labels`` where known), then
        one natural-gradient step on q(pi_i), q(mu, alpha) of every factor (eq. 7, 13, 14) with
        rho_tau = (tau0 + tau)^-kappa, or ``rho`` when given. What :func:`~pyro_mixvae.infer.fit` calls
        after each optimizer step; call it after ``svi.step(x, num_data)`` in a plain Pyro loop.

        In data-parallel training the statistics are summed across the ranks first (one all-reduce
        for all factors), so that the step is the one on the union of the ranks' batches (eq. 13 / App. D)."""
        blocks = self.encode_blocks(x)
        gammas = self.clamped_responsibilities(x, labels, blocks)
        stats = [mix.statistics(gamma, loc, var) for mix, gamma, (loc, var) in zip(self.mixtures, gammas, blocks)]
        flat = sum_across_ranks([t for st in stats for t in st.tensors()])
        for i, mix in enumerate(self.mixtures):
            mix.update(MixtureStats(*flat[4 * i:4 * i + 4]), num_data, rho)

    # -- clustering, evaluation, sampling ----------------------------------------------------------
    @torch.no_grad()
    def factor_responsibilities(self, x) -> list:
        """[gamma_i (B, K_i)] per factor, eq. 5-6 at q(z | x)."""
        return self.clamped_responsibilities(x)

    @torch.no_grad()
    def responsibilities(self, x) -> torch.Tensor:
        """Factor 0's gamma (eq. 5-6): the clustering the metrics and ``predict`` of one factor use."""
        return self.factor_responsibilities(x)[0]

    @torch.no_grad()
    def predictive_bound(self, x, num_particles: int = 10) -> dict:
        """Eq. 11 per data point, averaged over ``x``: ``recon`` E_q[log p(x|z)] (``num_particles`` draws),
        ``kl_z`` sum_i KL[z_i] (App. C.2), ``kl_r`` sum_i KL[r_i] (App. C.3) and
        ``bound`` = recon - kl_z - kl_r, in nats."""
        loc, scale = self.encoder(x)
        z = loc + scale * torch.randn((num_particles,) + loc.shape, device=loc.device)
        recon = self.likelihood(self.decoder(z.reshape(-1, loc.shape[-1]))).log_prob(
            x.repeat((num_particles,) + (1,) * (x.dim() - 1))).reshape(num_particles, -1).mean(0)
        kl_z = torch.zeros_like(recon)
        kl_r = torch.zeros_like(recon)
        blocks = list(zip(self.blocks(loc), self.blocks(scale ** 2)))
        for mix, gamma, (loc_i, var_i) in zip(self.mixtures, self.clamped_responsibilities(x, blocks=blocks), blocks):
            kl_z = kl_z + mix.kl_z(gamma, loc_i, var_i)
            kl_r = kl_r + mix.kl_r(gamma)
        out = {"recon": recon, "kl_z": kl_z, "kl_r": kl_r}
        out = {k: float(v.mean()) for k, v in out.items()}
        out["bound"] = out["recon"] - out["kl_z"] - out["kl_r"]
        return out

    @torch.no_grad()
    def diagnostics(self, x) -> dict:
        """The parts of eq. 11 on ``x`` (batches of 1000 points) and the effective components per factor."""
        parts = [(len(xb), self.predictive_bound(xb)) for xb in x.split(1000)]
        out = {f"predictive_{k}": sum(b * p[k] for b, p in parts) / x.shape[0] for k in parts[0][1]}
        out["effective_components"] = self.effective_components()
        return out

    # -- posterior analysis (pyro_mixvae.analysis) --------------------------------------------------
    globals_are_point_values = False

    @property
    def cluster_counts(self) -> tuple:
        """K_1, ..., K_I: the components of each factor (``components``)."""
        return tuple(self.components)

    @torch.no_grad()
    def prior_components(self) -> list:
        """Per factor (E[pi] = c / sum c, E[mu] = m, E[alpha]^-1/2 = sqrt(b / a)) under q."""
        return [(mix.c / mix.c.sum(), mix.m, torch.sqrt(mix.b / mix.a)) for mix in self.mixtures]

    @torch.no_grad()
    def global_posterior(self, num_samples: int) -> list:
        """Per factor, S draws of the global sites from the guide: ``pi`` ~ q(pi_i) = Dir(c_i) and
        (``mu``, ``alpha``) ~ q(xi_i) = NormalGamma(m, s, a, b) (site ``xi_i``: [..., 0] = mu, [..., 1] = alpha)."""
        out = []
        for mix in self.mixtures:
            xi = mix.normal_gamma().sample((num_samples,))
            out.append({"pi": dist.Dirichlet(mix.c).sample((num_samples,)), "mu": xi[..., 0], "alpha": xi[..., 1]})
        return out

    @torch.no_grad()
    def kl_parts(self, x) -> dict:
        """{'kl_z': [KL[z_i]], 'kl_r': [KL[r_i]]}, means per point on ``x`` (App. C.2-C.3), one per factor."""
        parts = {"kl_z": [], "kl_r": []}
        blocks = self.encode_blocks(x)
        for mix, gamma, (loc, var) in zip(self.mixtures, self.clamped_responsibilities(x, blocks=blocks), blocks):
            parts["kl_z"].append(float(mix.kl_z(gamma, loc, var).mean()))
            parts["kl_r"].append(float(mix.kl_r(gamma).mean()))
        return parts

    def effective_components(self) -> list:
        """Per factor, the components whose pseudo-count c_ik exceeds c0 by more than one point
        (:func:`~pyro_mixvae.infer.conjugate.effective_components`)."""
        return [effective_components(mix.c, mix.c0) for mix in self.mixtures]

    @torch.no_grad()
    def sample(self, n: int, cluster: Optional[int] = None, ks: Optional[Sequence[Optional[int]]] = None):
        """``n`` data-space means E[x | z] by :meth:`generate`: the globals from q (one draw), k_i and
        z_i | k_i from the model (so z_i from eq. 10's Student-t marginally).

        ``ks`` gives k_i per factor (None: drawn from Cat(pi_i)); ``cluster`` is shorthand for k_0.
        Returns (x_mean, k) with k of shape (n, I) (factor 0's column when I = 1).
        """
        ks = list(ks) if ks is not None else [None] * self.n_factors
        if len(ks) != self.n_factors:
            raise ConfigError(f"ks needs one entry per factor ({self.n_factors}); got {len(ks)}")
        if cluster is not None:
            ks[0] = cluster
        for i, k in enumerate(ks):
            if k is not None and not 0 <= int(k) < self.components[i]:
                raise ConfigError(f"factor {i} has components 0..{self.components[i] - 1}; got {k}")
        x_mean, chosen = self.generate(n, dict(zip(self.cluster_sites, ks)))
        k = torch.stack(chosen, -1)
        return x_mean, (k[:, 0] if self.n_factors == 1 else k)

    # -- pretraining and the prior initialisation (Sect. 2.4, App. E) -------------------------------
    def pretrain(self, x, epochs: int, batch_size: int, seed: int, progress: bool = False,
                 labels: Optional[torch.Tensor] = None) -> dict:
        """N(0, I) VAE with an annealed KL, then q(xi) from a GMM per block and full-data sweeps."""
        losses = pretrain_autoencoder(self.encoder, self.decoder, self.likelihood, x, epochs=epochs,
                                      batch_size=batch_size, lr=self.hparams["pretrain_lr"], seed=seed,
                                      progress=progress, vae=True, kl_weight=self.hparams["pretrain_kl"])
        fit_shared_variance(self.encoder, self.decoder, self.likelihood, x, seed=seed)
        self.init_globals(x, seed, labels)
        return {"pretrain_recon_kl": losses[-1] if losses else None}

    @torch.no_grad()
    def init_globals(self, x, seed: int = 0, labels: Optional[torch.Tensor] = None) -> None:
        """q(xi) from a diagonal GMM on each block's encoder means, then ``prior_init_iters`` sweeps (rho = 1)."""
        n = x.shape[0]
        with eval_mode(self):
            encoded = [self.encode_blocks(xb) for xb in x.split(1000)]
        codes = [torch.cat([e[i][0] for e in encoded]) for i in range(self.n_factors)]
        code_vars = [torch.cat([e[i][1] for e in encoded]) for i in range(self.n_factors)]
        for mix, z, z_var in zip(self.mixtures, codes, code_vars):
            weights, means, variances, _ = fit_diag_gmm(z.cpu().numpy(), mix.n_components, seed,
                                                     n_init=self.hparams["gmm_restarts"])
            counts = torch.as_tensor(n * np.asarray(weights), dtype=mix.m.dtype, device=mix.m.device)
            mix.m.copy_(torch.as_tensor(means, dtype=mix.m.dtype))
            mix.s.copy_(mix.s0 + counts[:, None])
            mix.a.copy_(mix.a0 + counts[:, None] / 2)
            # E[alpha] = 1 / variance, the variance including the encoder's (eq. 13's statistics use
            # z_loc^2 + z_var): a GMM on the means alone makes dimensions where q(z|x) is wide look sharp
            spread = torch.as_tensor(variances, dtype=mix.m.dtype) + z_var.mean(0).to(mix.m.dtype)
            mix.b.copy_(mix.a * spread)
            mix.c.copy_(mix.c0 + counts)
        with eval_mode(self):
            for _ in range(self.hparams["prior_init_iters"]):
                stats = None
                for part in range(0, n, 1000):
                    xb = x[part:part + 1000]
                    lb = None if labels is None else labels[part:part + 1000]
                    blocks = self.encode_blocks(xb)
                    gammas = self.clamped_responsibilities(xb, lb, blocks)
                    batch = [mix.statistics(g, loc, var) for mix, g, (loc, var) in zip(self.mixtures, gammas, blocks)]
                    stats = batch if stats is None else [a + b for a, b in zip(stats, batch)]
                for mix, st in zip(self.mixtures, stats):
                    mix.update(st, n, rho=1.0)
                    mix.tau.zero_()  # the initialisation does not count as SVI steps
