"""ELBO objects: a model's plain bound (:func:`default_elbo`), and subclasses with the extra terms of
the GMVAE papers and of VIB-GMM.

:class:`MixtureELBO` is ``TraceEnum_ELBO`` plus three terms that compose (loss = minimised);
:class:`InformationBottleneckELBO` adds VIB-GMM's weight ``s`` on the KL part (see its docstring);
:class:`AuxiliaryELBO` adds an auxiliary program's weighted log-likelihood (the factorial prior's
semi-supervised eq. 8):

===========================  ===============================  =============================================
term                         paper                            loss added
===========================  ===============================  =============================================
z-prior weight ``eta``       consistency-violation eq. 3      (eta - 1) * KL(q(c|.) || p(c))
consistency violation        consistency-violation eq. 6      alpha * H(C | Z, W)
``alpha``
threshold ``lam``            minimum-information eq. 7        eta * (max(lam, KL_bar) - KL_bar)
===========================  ===============================  =============================================

What the terms need is read from the model and guide traces that ``TraceEnum_ELBO`` builds
anyway (its ``_get_traces``), never from a model's attributes, so they apply to any model with
the site pattern ``c`` (cluster, enumerated with ``infer={"enumerate": "parallel"}``), ``z``
(continuous latent whose distribution depends on ``c``) and a guide that draws ``z``:

* ``log p(c = k)`` -- the model's ``c`` site distribution, evaluated at the enumerated values;
* ``log p(z | c = k, ...)`` -- the model's ``z`` site distribution, which is batched over the
  enumeration dimension of ``c`` (whether ``c`` is enumerated in the model or replayed from an
  enumerating guide), evaluated at the guide's draw of ``z``;
* ``q(c = k | x)`` -- the guide's ``c`` site, if the guide has one (mean-field guide of the
  consistency-violation paper); otherwise the cluster posterior of the bound is the model's own
  ``p(c | z, ...)`` (model-side enumeration: VaDE, the minimum-information GMVAE).

From these, per data point and per particle,

* ``p(c | z, w) = p(c) p(z | c, w) / sum_k p(c = k) p(z | c = k, w)`` -- the model's posterior at
  the guide's draws (minimum-information eq. 3; consistency-violation eq. 6);
* ``H = -sum_k p(k | z, w) log p(k | z, w)`` -- the consistency violation;
* ``KL_c = KL(p(c | z, w) || p(c))`` -- the minimum-information z-prior (its eq. 6), reported as
  ``clusters_kl``;
* ``KL_q = KL(q(c | .) || p(c))`` -- the z-prior term of the bound actually optimised: ``KL_c``
  for the posterior guide, the classifier's KL for the mean-field guide; reported as ``z_prior``.

Scale convention. Every per-point term is multiplied by the scale of the model's ``z`` site
(``N / B`` for a minibatch of ``B`` of ``N`` points drawn with a subsampled plate, times any
``poutine.scale``), summed over the batch and averaged over particles -- exactly how
``TraceEnum_ELBO`` weighs the rest of the loss. So ``eta`` and ``alpha`` weigh the full-data
terms, and the loss divided by ``N`` stays a per-data-point quantity. A mask on the ``z`` site
(``poutine.mask``) removes the masked points from the terms and from the batch means.

The threshold of eq. 7 is on an expectation, ``max(lam, E_q[KL])``, not on each point: ``KL_bar``
is the mean of ``KL_q`` over the batch (and over vectorised particles), so ``lam`` is in nats
per data point, and the correction ``max(lam, KL_bar) - KL_bar`` is multiplied by
``scale * B`` (= N for a minibatch), i.e. it replaces the ``N * KL_bar`` that the bound
contains by ``N * max(lam, KL_bar)``. With ``eta`` it is multiplied by ``eta`` too, so that the
z-prior part of the loss becomes ``eta * N * max(lam, KL_bar)``: below the threshold its
gradient is zero, above it the loss is unchanged. For the posterior guide ``KL_q = KL_c``, which
is eq. 7 itself; for the mean-field guide the threshold applies to the classifier's z-prior term,
the one that appears in that bound. Non-vectorised particles take the max per particle.

**The held start** (``hold``, with the per-point keyword ``held_responsibilities``: gamma (B, K), the
mixture start's responsibilities, which the training loop passes when a schedule sets ``hold``). VaDE's
mean-field bound (eq. 12) is valid for any q(c | x); with q(c | x) held at gamma it is the collapsed bound
minus E_q(z|x)[KL(gamma || p(c | z))] (eq. 15 with gamma in place of q), since log p(c, z) = log p(z) +
log p(c | z). ``hold`` weighs that gap: loss added ``hold * sum_points scale * KL(gamma || p(c | z, ...))``,
so ``hold = 1`` trains eq. 12 with the start's q(c | x) and ``hold = 0`` the collapsed bound; annealed
from 1 to 0 (:class:`~pyro_mixvae.infer.schedules.LinearSchedule`) it hands the partition of the start
over to the model's own posterior while the networks and the mixture adapt to each other
(``docs/studies/stability.md``). Reported as ``held_kl`` (nats per point) whenever gamma is given.

``eta = 1``, ``alpha = 0``, ``lam = 0``, ``hold = 0`` add nothing: the loss is then exactly
``TraceEnum_ELBO``'s, computed by the same code. ``lam = 0`` means "no threshold".

After each ``loss`` / ``differentiable_loss`` call ``last_terms`` holds, as detached scalar
tensors averaged per data point (and over particles): ``z_prior`` (``KL_q``), ``cv`` (``H``) and
``clusters_kl`` (``KL_c``). The training loop records them per epoch in ``history.jsonl``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.infer.util import is_identically_zero

from ..errors import ConfigError


def default_elbo(model, num_particles: int = 1):
    """``TraceEnum_ELBO`` with the model's plate nesting and vectorised particles.

    This is the plain bound; a model's training objective (``model.make_elbo``) may add terms
    to it, but the ELBO that is reported (:mod:`pyro_mixvae.evaluation`) is always this one.
    """
    return TraceEnum_ELBO(max_plate_nesting=model.max_plate_nesting, num_particles=num_particles,
                          vectorize_particles=True)


class ClusterTerms:
    """Per-point cluster quantities of one (model trace, guide trace) pair.

    Attributes (tensors over the batch and particle dimensions, the K clusters summed out):
    ``log_post`` (..., K) log p(c | z, ...); ``log_prior`` (..., K) log p(c); ``log_q`` (..., K)
    log q(c | x) (the guide's, or ``log_post`` when the guide has no cluster site);
    ``scale`` the z site's scale and ``mask`` its mask (ones when it has none), over the points.
    """

    def __init__(self, model_trace, guide_trace, cluster_site: str = "c", latent_site: str = "z"):
        for name, trace, where in ((cluster_site, model_trace, "model"), (latent_site, model_trace, "model"),
                                   (latent_site, guide_trace, "guide")):
            if name not in trace.nodes or trace.nodes[name]["type"] != "sample":
                raise ValueError(f"the cluster terms need a sample site {name!r} in the {where}")
        c_site = model_trace.nodes[cluster_site]
        z_site = model_trace.nodes[latent_site]
        self._z_model, self._z_guide = z_site, guide_trace.nodes[latent_site]
        self._observed = [site for site in model_trace.nodes.values()
                          if site["type"] == "sample" and site["is_observed"]]
        self.dim = dim = _enum_dim(c_site, guide_trace.nodes.get(cluster_site))
        log_prior = _site_log_prob(c_site)                    # log p(c = k): K at `dim`
        log_lik = _site_log_prob(z_site)                      # log p(z | c = k, ...): K at `dim`
        joint, log_prior = torch.broadcast_tensors(log_prior + log_lik, log_prior)
        self.log_joint = joint.movedim(dim, -1)
        self.log_prior = log_prior.movedim(dim, -1)
        self.log_post = self.log_joint - self.log_joint.logsumexp(-1, keepdim=True)
        if cluster_site in guide_trace.nodes and guide_trace.nodes[cluster_site]["type"] == "sample":
            q_site = guide_trace.nodes[cluster_site]
            log_q = _site_log_prob(q_site)
            self.log_q = torch.broadcast_tensors(log_q, joint)[0].movedim(dim, -1)
        else:
            self.log_q = self.log_post
        self.scale = z_site["scale"]  # N / B under a subsampled plate (times any poutine.scale)
        mask = z_site.get("mask")     # poutine.mask / obs_mask on z: masked points add nothing
        shape = self.log_joint.shape[:-1]
        self.mask = joint.new_ones(shape) if mask is None else \
            torch.broadcast_to(torch.as_tensor(mask, device=joint.device), shape).to(joint.dtype)

    @property
    def entropy(self):
        """H(C | z, w) = -sum_k p(k|z,w) log p(k|z,w) per point."""
        return -(self.log_post.exp() * self.log_post).sum(-1)

    @property
    def clusters_kl(self):
        """KL(p(c | z, w) || p(c)) per point (minimum-information eq. 6)."""
        return (self.log_post.exp() * (self.log_post - self.log_prior)).sum(-1)

    @property
    def z_prior_kl(self):
        """KL(q(c | .) || p(c)) per point: the z-prior term of the bound (CV eq. 3, MI eq. 4)."""
        return (self.log_q.exp() * (self.log_q - self.log_prior)).sum(-1)

    # -- what the information-bottleneck objective needs (VIB-GMM eq. 9, 14-18) ---------------
    @property
    def sampled_kl(self):
        """log q(z | x) - log sum_k p(c = k) p(z | c = k, ...) at the guide's draw, per point.

        Its expectation under q is KL(q(z|x) || p(z)): the Monte Carlo KL that the ELBO contains.
        """
        log_q = _site_log_prob(self._z_guide)
        return torch.broadcast_to(log_q, self.mask.shape) - self.log_joint.logsumexp(-1)

    @property
    def component_kl(self):
        """(..., K) KL(q(z | x) || p(z | c = k, ...)) in closed form, per point and component."""
        q, p = self._z_guide["fn"], self._z_model["fn"]
        try:
            kl = torch.distributions.kl_divergence(q, p)
        except NotImplementedError:
            raise ValueError(f"no closed-form KL between the guide's {type(q).__name__} and the model's "
                             f"{type(p).__name__} at site {self._z_model['name']!r}") from None
        return torch.broadcast_to(kl, self.log_joint.movedim(-1, self.dim).shape).movedim(self.dim, -1)

    @property
    def vkl(self):
        """D_vKL = -log sum_k p(c = k) exp(-KL(q(z|x) || p(z | c = k))) per point (VIB-GMM eq. 17-18).

        The Hershey-Olsen approximation of KL(q(z|x) || sum_k pi_k p(z | c = k)); with one component
        it is that KL exactly, otherwise an upper bound (Jensen on the log-sum-exp).
        """
        return -(self.log_prior - self.component_kl).logsumexp(-1)

    @property
    def reconstruction(self):
        """-sum of the observed sites' log-likelihoods per point, -log p(x | z, ...) at the guide's draw."""
        total = torch.zeros(self.mask.shape, device=self.mask.device, dtype=self.mask.dtype)
        for site in self._observed:
            lp = _site_log_prob(site)
            total = total - torch.broadcast_to(lp, total.shape)
        return total

    def total(self, per_point):
        """Sum over the batch (and vectorised particles) with the plate's scale, like the ELBO."""
        return (self.scale * self.mask * per_point).sum()

    def mean(self, per_point):
        """Mean over the (unmasked) points of the batch and the vectorised particles."""
        return (self.mask * per_point).sum() / self.mask.sum().clamp(min=1.0)


def _site_log_prob(site):
    lp = site.get("unscaled_log_prob")
    if lp is None:
        lp = site["fn"].log_prob(site["value"])
    return lp


def _enum_dim(model_site, guide_site=None) -> int:
    """The (negative) dimension along which the cluster site's values are enumerated."""
    for site in (model_site, guide_site):
        if site is not None and site["infer"].get("_enumerate_dim") is not None:
            return int(site["infer"]["_enumerate_dim"])
    raise ValueError(f"the cluster site {model_site['name']!r} must be enumerated "
                     "(infer={'enumerate': 'parallel'}) in the model or in the guide")


class MixtureELBO(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` with the GMVAE papers' z-prior weight, consistency violation and threshold.

    :param eta: weight of the z-prior term KL(q(c|.) || p(c)) (consistency-violation eq. 3); 1 = the ELBO.
    :param alpha: weight of the consistency violation H(C | Z, W) (consistency-violation eq. 6); >= 0.
    :param lam: minimum information (nats per data point) below which the z-prior term has no
        gradient (minimum-information eq. 7); 0 = no threshold.
    :param hold: weight of KL(gamma || p(c | z, ...)) for the responsibilities gamma passed as the keyword
        ``held_responsibilities`` (the held start, see the module docstring); 1 = VaDE eq. 12 with q(c|x) = gamma.
    :param cluster_site: name of the enumerated cluster site (``"c"``).
    :param latent_site: name of the continuous latent site whose distribution depends on it (``"z"``).
    :param kwargs: passed to ``TraceEnum_ELBO`` (``max_plate_nesting``, ``num_particles``, ...).

    See the module docstring for how each term is computed and scaled.
    """

    HELD = "held_responsibilities"  # the keyword of the held start's responsibilities (per point)
    # weights the loss is linear in and a schedule changes every epoch: a traced loss takes them as inputs
    # (pyro_mixvae.infer.compiled), not as constants, so that one graph serves every value
    traced_weights = ("hold",)

    def __init__(self, eta: float = 1.0, alpha: float = 0.0, lam: float = 0.0, *, hold: float = 0.0,
                 cluster_site: str = "c", latent_site: str = "z", **kwargs):
        for key, value in (("eta", eta), ("alpha", alpha), ("lam", lam), ("hold", hold)):
            if torch.is_tensor(value):
                value = float(value)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key} must be a finite number >= 0; got {value!r}")
        super().__init__(**kwargs)
        self.eta, self.alpha, self.lam, self.hold = float(eta), float(alpha), float(lam), float(hold)
        self.cluster_site, self.latent_site = cluster_site, latent_site
        self.last_terms: dict = {}
        self._traces: Optional[list] = None
        self._held: Optional[torch.Tensor] = None

    @property
    def adds_terms(self) -> bool:
        """Whether the loss differs from plain ``TraceEnum_ELBO``'s."""
        return self.eta != 1.0 or self.alpha != 0.0 or self.lam != 0.0 or self.hold != 0.0

    # -- trace capture: the parent's loops run unchanged, we keep the traces they used ---------
    def _get_traces(self, model, guide, args, kwargs):
        for model_trace, guide_trace in super()._get_traces(model, guide, args, kwargs):
            if self._traces is not None:
                self._traces.append((model_trace, guide_trace))
            yield model_trace, guide_trace

    def _run(self, method, model, guide, args, kwargs):
        self._traces = []
        self._held = kwargs.pop(self.HELD, None)  # for the added term only: the programs never see it
        try:
            base = method(model, guide, *args, **kwargs)
            traces, self._traces = self._traces, None
            extra = self._extra_loss(traces)
        finally:
            self._traces, self._held = None, None
        return base, extra

    def differentiable_loss(self, model, guide, *args, **kwargs):
        base, extra = self._run(super().differentiable_loss, model, guide, args, kwargs)
        return base if extra is None else base + extra

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            base, extra = self._run(super().loss, model, guide, args, kwargs)
        return base if extra is None else base + float(extra)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())

    # -- the terms -------------------------------------------------------------------------------
    def cluster_terms(self, model_trace, guide_trace) -> ClusterTerms:
        return ClusterTerms(model_trace, guide_trace, self.cluster_site, self.latent_site)

    def _extra_loss(self, traces) -> Optional[torch.Tensor]:
        """The added loss (None when no term is active) and ``last_terms``."""
        active = self.adds_terms
        self.last_terms = {}
        extra = None
        reports: dict = {}
        for model_trace, guide_trace in traces:
            try:
                t = self.cluster_terms(model_trace, guide_trace)
            except ValueError:
                if active:
                    raise
                return None  # plain ELBO on a model without the site pattern: nothing to report
            particle, report = self.particle_terms(t)
            if self._held is not None:
                held_kl = self.held_kl(t, self._held)
                report["held_kl"] = held_kl
                if self.hold != 0.0:
                    particle = particle + self.hold * t.total(held_kl)
            if active and not is_identically_zero(particle):
                extra = particle if extra is None else extra + particle
            for key, value in report.items():
                reports[key] = reports.get(key, 0.0) + t.mean(value.detach())
        n = len(traces) or 1
        self.last_terms = {k: v / n for k, v in reports.items()}
        return None if extra is None else extra / self.num_particles

    @staticmethod
    def held_kl(t: ClusterTerms, held: torch.Tensor) -> torch.Tensor:
        """KL(gamma || p(c | z, ...)) = sum_k gamma_k (log gamma_k - log p(k | z, ...)) per point (0 log 0 = 0)."""
        held = held.to(t.log_post)
        return (torch.xlogy(held, held) - held * t.log_post).sum(-1)

    def particle_terms(self, t: ClusterTerms):
        """(added loss of one particle, {name: per-point value to report}) -- subclasses extend it."""
        kl_q, ent, kl_c = t.z_prior_kl, t.entropy, t.clusters_kl
        particle = 0.0
        if self.eta != 1.0:
            particle = particle + (self.eta - 1.0) * t.total(kl_q)
        if self.alpha != 0.0:
            particle = particle + self.alpha * t.total(ent)
        if self.lam != 0.0:
            kl_bar = t.mean(kl_q)
            gap = torch.clamp(self.lam - kl_bar, min=0.0)  # max(lam, KL_bar) - KL_bar
            # times sum_b scale_b = scale * B (= N for a minibatch of a subsampled plate)
            particle = particle + self.eta * gap * t.total(torch.ones_like(kl_q))
        return particle, {"z_prior": kl_q, "cv": ent, "clusters_kl": kl_c}


KL_ESTIMATORS = ("hershey-olsen", "sampled")


class InformationBottleneckELBO(MixtureELBO):
    """The s-weighted objectives of VIB-GMM (``vib-gmm.txt``), on top of :class:`MixtureELBO`.

    Minimised per data point (eq. 16; ``recon`` = -log p(x | z) at a draw z ~ q(z|x)):

    * ``kl="hershey-olsen"`` -- the VIB-GMM cost, eq. 14-18::

          recon + s * D_vKL,   D_vKL = -log sum_c pi_c exp(-KL(q(z|x) || N(mu_c, Sigma_c)))

      with every KL in closed form from the guide's and the model's ``z`` distributions;
    * ``kl="sampled"`` -- the s-generalised VaDE bound, eq. 9::

          recon + s * [log q(z|x) - log sum_c pi_c N(z | mu_c, Sigma_c)]

      With the cluster posterior of VaDE (q(c|x) = p(c|z), model-side enumeration) the bracket is
      s * KL(q(c|x) || pi) + s * E_q(c|x)[KL(q(z|x) || p(z|c))] of eq. 9 at one draw of z, so
      ``s = 1`` is ``TraceEnum_ELBO``'s loss exactly (``adds_terms`` is then False).

    Both are written as ``TraceEnum_ELBO``'s loss plus a correction computed from the same traces
    (the sampled KL above is exactly what that loss contains): ``s * D_vKL - KL_sampled`` and
    ``(s - 1) * KL_sampled``. ``s`` may be changed between steps (an annealing schedule,
    :mod:`pyro_mixvae.infer.schedules`, sets the attribute). The GMVAE terms ``eta``, ``alpha``,
    ``lam`` compose with it. ``last_terms`` adds ``recon``, ``d_vkl`` and ``kl_sampled`` per point.
    """

    traced_weights = ("hold", "s")

    def __init__(self, s: float = 1.0, kl: str = "hershey-olsen", **kwargs):
        if kl not in KL_ESTIMATORS:
            raise ConfigError(f"kl must be one of {', '.join(KL_ESTIMATORS)}; got {kl!r}")
        super().__init__(**kwargs)
        self.kl = kl
        self.s = s

    @property
    def s(self) -> float:
        return self._s

    @s.setter
    def s(self, value) -> None:
        if torch.is_tensor(value) and value.dim() == 0 and torch.jit.is_tracing():
            self._s = value  # the traced loss's input while it is recorded (pyro_mixvae.infer.compiled)
            return
        value = float(value)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"s must be a finite number >= 0; got {value!r}")
        self._s = value

    @property
    def adds_terms(self) -> bool:
        return super().adds_terms or self.kl != "sampled" or self.s != 1.0

    def particle_terms(self, t: ClusterTerms):
        particle, report = super().particle_terms(t)
        kl_sampled, d_vkl = t.sampled_kl, t.vkl
        if self.kl == "hershey-olsen":
            particle = particle + t.total(self.s * d_vkl - kl_sampled)
        elif self.s != 1.0:
            particle = particle + (self.s - 1.0) * t.total(kl_sampled)
        report.update({"recon": t.reconstruction, "d_vkl": d_vkl, "kl_sampled": kl_sampled})
        return particle, report


class AuxiliaryELBO(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` minus ``weight`` times the log-likelihood of an auxiliary program.

    ``auxiliary`` is a Pyro program called with the model's arguments whose observed sites
    are the extra term -- Pyro's ss_vae_M2 ``model_classify``, here in the same loss and the
    same optimizer step rather than in a second SVI object::

        loss = TraceEnum_ELBO loss(model, guide) - weight * sum_obs scale * log p_aux(obs)

    with each observed site's scale (N / B under a subsampled plate) and mask, as in the ELBO.
    The factorial prior's eq. 8 is this with ``auxiliary`` =
    :meth:`~pyro_mixvae.models.FactorialMixtureVAE.classify` (the known labels under the
    mixture's classifier g) and ``weight`` = delta. The auxiliary term has no latent sites, so
    it is the same for every particle and is added once.
    """

    def __init__(self, auxiliary, weight: float, **kwargs):
        if torch.is_tensor(weight):
            weight = float(weight)
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"the auxiliary weight must be a finite number >= 0; got {weight!r}")
        super().__init__(**kwargs)
        self.auxiliary, self.weight = auxiliary, float(weight)

    @property
    def adds_terms(self) -> bool:
        """Whether the loss differs from plain ``TraceEnum_ELBO``'s."""
        return self.weight != 0.0

    def auxiliary_loss(self, *args, **kwargs) -> torch.Tensor:
        """-weight * the auxiliary program's scaled, masked log-likelihood of its observed sites."""
        trace = poutine.trace(self.auxiliary).get_trace(*args, **kwargs)
        trace.compute_log_prob(lambda name, site: site["is_observed"])
        total = sum((site["log_prob_sum"] for site in trace.nodes.values()
                     if site["type"] == "sample" and site["is_observed"]), 0.0)
        return -self.weight * total

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        return loss + self.auxiliary_loss(*args, **kwargs) if self.weight else loss

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())
