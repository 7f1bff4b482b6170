"""Conjugate natural-gradient updates of one factor's Normal-Gamma / Dirichlet globals.

``factorial-mixture-prior.txt``, Sect. 2.3-2.4 and App. B-D. One factor i of the factorial prior is
a K-component Gaussian mixture on a D-dimensional block z_i with conjugate globals::

    p(pi) = Dir(c0),   p(mu_kd, alpha_kd) = N(mu_kd; m0, (s0 alpha_kd)^-1) Gamma(alpha_kd; a0, b0)   # Sect. 2.2
    q(pi) = Dir(c),    q(mu_kd, alpha_kd) = N(mu_kd; m_kd, (s_kd alpha_kd)^-1) Gamma(alpha_kd; a_kd, b_kd)

(defaults m0 = 0, s0 = 1, a0 = b0 = 0.01, c0 = 1, Sect. 2.2). Given Gaussian encodings
q(z_n) = N(z_loc_n, diag z_var_n) of a minibatch B of the N data points:

* local step, eq. 5-6: log gamma_nk = E[log pi_k] + sum_d E[log N(z_nd; mu_kd, alpha_kd^-1)] + const,
  both expectations in closed form (:func:`responsibility_logits`, :func:`responsibilities`);
* statistics (:func:`sufficient_statistics`): N_k = sum_n gamma_nk, sum_n gamma_nk z_loc_nd,
  sum_n gamma_nk (z_loc_nd^2 + z_var_nd) and |B| -- sums, so that processes can add theirs
  (``+`` or an all-reduce of :meth:`MixtureStats.tensors`) before the update;
* optimum for the batch, eq. 13 and App. D (:func:`optimal_natural_params`), with w = N / |B|::

      lambda*_1 = a0 - 1/2 + w N_k / 2
      lambda*_2 = -(b0 + s0 m0^2 / 2 + w sum_n gamma_nk (z_loc^2 + z_var) / 2)
      lambda*_3 = s0 m0 + w sum_n gamma_nk z_loc
      lambda*_4 = -(s0 + w N_k) / 2
      c*_k      = c0 + w N_k

  When B is the whole data set (w = 1) this is the coordinate-ascent VB update of q(xi);
* natural-gradient step, eq. 7 / 14 (:func:`natural_step`): lambda <- (1 - rho) lambda + rho lambda*
  in the natural parameters of eq. 12 (and c likewise), rho_tau = (tau0 + tau)^-kappa
  (:func:`step_size`; kappa in (1/2, 1], tau0 >= 0; App. E: kappa = 0.7, tau0 = 2000);
* bound terms: KL[z] (App. C.2) and KL[r] (App. C.3) per point, and the global
  KL(q(pi) || p(pi)) + sum_kd KL(q(mu, alpha) || p(mu, alpha)) (eq. 4d-4e, App. C.1).

:class:`ConjugateMixture` holds one factor's q(xi) as buffers of an ``nn.Module`` (never
parameters: SVI's optimizer must not touch them) with a step counter ``tau``, and offers the
above as methods. A factorial prior holds one per factor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from ..distributions import (NormalGamma, dirichlet_expected_log, expected_log_normal, kl_normal_gamma,
                             mean_to_natural, natural_to_mean)
from ..errors import ConfigError

_LOG_2PI = math.log(2.0 * math.pi)

# the Normal-Gamma / Dirichlet hyperprior's defaults (Sect. 2.2), read by the factorial model's settings
HYPERPRIOR = {"m0": 0.0, "s0": 1.0, "a0": 0.01, "b0": 0.01, "c0": 1.0}
# a component counts as used when its pseudo-count exceeds the prior's by this many points (App. C.3)
EFFECTIVE_COUNT = 1.0
# App. E (step sizes)
DEFAULT_TAU0 = 2000.0
DEFAULT_KAPPA = 0.7


# -- step sizes (eq. 7, 14) --------------------------------------------------------------------------
def check_schedule(tau0: float, kappa: float) -> None:
    """Refuse a Robbins-Monro schedule outside kappa in (1/2, 1], tau0 >= 0 (Sect. 2.4.3) with ConfigError."""
    kappa, tau0 = float(kappa), float(tau0)
    if not (math.isfinite(kappa) and 0.5 < kappa <= 1.0):
        raise ConfigError(f"the forgetting rate kappa must be in (0.5, 1]; got {kappa!r}")
    if not (math.isfinite(tau0) and tau0 >= 0):
        raise ConfigError(f"the delay tau0 must be a finite number >= 0; got {tau0!r}")


def step_size(tau: int, tau0: float = DEFAULT_TAU0, kappa: float = DEFAULT_KAPPA) -> float:
    """rho_tau = (tau0 + tau)^-kappa, for tau = 1, 2, ... (Sect. 2.4.3, App. D)."""
    check_schedule(tau0, kappa)
    if tau0 + tau <= 0:
        raise ConfigError(f"tau0 + tau must be > 0 (steps count from tau = 1); got tau0={tau0}, tau={tau}")
    return float((tau0 + tau) ** (-float(kappa)))


# -- the local step (eq. 5-6) ------------------------------------------------------------------------
def responsibility_logits(q_ng: NormalGamma, c: torch.Tensor, z_loc: torch.Tensor, z_var: torch.Tensor) -> torch.Tensor:
    """log gamma~_nk = E[log pi_k] + sum_d E[log N(z_nd; mu_kd, alpha_kd^-1)] (eq. 5-6).

    ``q_ng`` has batch shape (K, D), ``c`` (K,), ``z_loc`` and ``z_var`` (the variances of q(z))
    (..., D); returns (..., K). Differentiable in ``z_loc`` and ``z_var`` (the logits of g in eq. 8).
    """
    ell = expected_log_normal(q_ng, z_loc.unsqueeze(-2), z_var.unsqueeze(-2)).sum(-1)
    return dirichlet_expected_log(c) + ell


def responsibilities(q_ng: NormalGamma, c: torch.Tensor, z_loc: torch.Tensor, z_var: torch.Tensor) -> torch.Tensor:
    """gamma_nk = softmax_k(log gamma~_nk), the local optimum of the bound over q(r_n) (eq. 5)."""
    return torch.softmax(responsibility_logits(q_ng, c, z_loc, z_var), dim=-1)


# -- statistics and the batch optimum (eq. 13, App. D) -----------------------------------------------
@dataclass
class MixtureStats:
    """Minibatch sums of one factor (App. D), float64.

    ``count`` (K,) sum_n gamma_nk; ``sum_z`` (K, D) sum_n gamma_nk z_loc_nd; ``sum_zz`` (K, D)
    sum_n gamma_nk (z_loc_nd^2 + z_var_nd); ``num_points`` () |B|. Stats of disjoint batches add
    (``a + b``); for an all-reduce, reduce each of :meth:`tensors` with SUM and rebuild with
    ``MixtureStats(*tensors)``.
    """

    count: torch.Tensor
    sum_z: torch.Tensor
    sum_zz: torch.Tensor
    num_points: torch.Tensor

    def __add__(self, other: "MixtureStats") -> "MixtureStats":
        return MixtureStats(*(x + y for x, y in zip(self.tensors(), other.tensors())))

    def tensors(self) -> Tuple[torch.Tensor, ...]:
        return self.count, self.sum_z, self.sum_zz, self.num_points


def sufficient_statistics(gamma: torch.Tensor, z_loc: torch.Tensor, z_var: torch.Tensor) -> MixtureStats:
    """The sums of :class:`MixtureStats` from gamma (B, K) and q(z) moments z_loc, z_var (B, D).

    Inputs are detached (the conjugate update does not backpropagate) and summed in float64.
    For semi-supervised points pass their clamped one-hot gamma (Sect. 2.5); to leave a point
    out, give it a zero row of gamma and do not count it in ``num_points`` (set it yourself).
    """
    g = gamma.detach().to(torch.float64)
    loc = z_loc.detach().to(torch.float64)
    var = z_var.detach().to(torch.float64)
    if g.dim() != 2 or loc.dim() != 2 or loc.shape != var.shape or g.shape[0] != loc.shape[0]:
        raise ValueError(f"expected gamma (B, K) and z_loc, z_var (B, D); got {tuple(g.shape)}, "
                         f"{tuple(loc.shape)}, {tuple(var.shape)}")
    return MixtureStats(count=g.sum(0), sum_z=g.T @ loc, sum_zz=g.T @ (loc ** 2 + var),
                        num_points=torch.tensor(float(g.shape[0]), dtype=torch.float64, device=g.device))


def optimal_natural_params(stats: MixtureStats, num_data: float, m0, s0, a0, b0,
                           c0) -> Tuple[torch.Tensor, torch.Tensor]:
    """(lambda* (K, D, 4), c* (K,)): the batch optimum of eq. 13 and App. D, scaled by N / |B|.

    The prior hyperparameters broadcast against (K, D) (m0, s0, a0, b0) and (K,) (c0).
    """
    w = float(num_data) / stats.num_points
    n_k = (w * stats.count).unsqueeze(-1)                                  # (K, 1)
    prior = mean_to_natural(*(torch.as_tensor(v, dtype=torch.float64, device=stats.sum_z.device)
                              for v in (m0, s0, a0, b0)))
    data = torch.stack(torch.broadcast_tensors(0.5 * n_k, -0.5 * w * stats.sum_zz, w * stats.sum_z,
                                               -0.5 * n_k), dim=-1)
    return prior + data, optimal_concentration(stats.count, stats.num_points, num_data, c0)


def optimal_concentration(count: torch.Tensor, num_points, num_data: float, c0) -> torch.Tensor:
    """c*_k = c0 + w N_k, w = N / |B| (eq. 13, App. D): the batch optimum of q(pi) = Dir(c) given the summed
    responsibilities ``count`` (K,) of ``num_points`` points, in float64. The factorial prior's q(pi_i) and the
    Dirichlet on VaDE's weights (``weight_concentration``) share it."""
    w = float(num_data) / float(num_points)
    return torch.as_tensor(c0, dtype=torch.float64, device=count.device) + w * count.to(torch.float64)


def effective_components(c: torch.Tensor, c0) -> int:
    """The components of q(pi) = Dir(c) that hold more than ``EFFECTIVE_COUNT`` points beyond the prior's
    pseudo-count c0 (App. C.3): the number of clusters the posterior uses."""
    return int(((c - torch.as_tensor(c0, dtype=c.dtype, device=c.device)) > EFFECTIVE_COUNT).sum())


def natural_step(current: torch.Tensor, optimal: torch.Tensor, rho: float) -> torch.Tensor:
    """lambda <- (1 - rho) lambda + rho lambda* (eq. 7, 14); rho = 1 jumps to the batch optimum."""
    return (1.0 - rho) * current + rho * optimal


# -- bound terms (App. C) ---------------------------------------------------------------------------
def expected_kl_z(q_ng: NormalGamma, gamma: torch.Tensor, z_loc: torch.Tensor, z_var: torch.Tensor) -> torch.Tensor:
    """KL[z_i] per point, App. C.2: sum_k gamma_k E_q(mu,alpha)[KL(N(z_loc, z_var) || N(mu_k, alpha_k^-1))].

    = -sum_k gamma_k sum_d [1/2 (log 2pi z_var + 1) + E[log N(z_d; mu_kd, alpha_kd^-1)]] (eq. 6 inside).
    Shapes: gamma (..., K), z_loc / z_var (..., D) -> (...).
    """
    entropy = 0.5 * (_LOG_2PI + torch.log(z_var) + 1.0).sum(-1, keepdim=True)        # (..., 1)
    ell = expected_log_normal(q_ng, z_loc.unsqueeze(-2), z_var.unsqueeze(-2)).sum(-1)  # (..., K)
    return -(gamma * (entropy + ell)).sum(-1)


def expected_kl_r(gamma: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """KL[r_i] per point, App. C.3: sum_k gamma_k (log gamma_k - E[log pi_k]), with 0 log 0 = 0."""
    log_g = torch.where(gamma > 0, torch.log(gamma.clamp(min=torch.finfo(gamma.dtype).tiny)), torch.zeros_like(gamma))
    return (gamma * (log_g - dirichlet_expected_log(c))).sum(-1)


def kl_dirichlet(c: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """KL(Dir(c) || Dir(c0)) over the last axis (eq. 4e)."""
    c0 = torch.broadcast_to(torch.as_tensor(c0, dtype=c.dtype, device=c.device), c.shape)
    return torch.distributions.kl_divergence(torch.distributions.Dirichlet(c), torch.distributions.Dirichlet(c0))


# -- one factor's conjugate globals as module buffers -------------------------------------------------
class ConjugateMixture(nn.Module):
    """q(pi) = Dir(c) and q(mu_kd, alpha_kd) = NormalGamma(m, s, a, b) of one factor, as buffers.

    :param n_components: K.
    :param dim: D, the size of the factor's block of z.
    :param m0, s0, a0, b0, c0: the hyperprior (Sect. 2.2; numbers or tensors broadcasting to
        (K, D), resp. (K,) for c0).
    :param tau0, kappa: the step-size schedule rho_tau = (tau0 + tau)^-kappa (App. D, E).
    :param dtype: of the buffers (default: torch's default dtype).

    Buffers (in ``state_dict``): ``m, s, a, b`` (K, D), ``c`` (K,), the prior ``m0, s0, a0, b0``
    (K, D) and ``c0`` (K,), and ``tau`` (a long scalar: the number of updates taken). q starts
    at the prior with the means drawn from N(m0, 1) to break the symmetry between components;
    :meth:`init_means` puts them at data points instead.

    The three steps of Sect. 2.4 for one factor, with ``num_data`` = N::

        gamma = mix.responsibilities(z_loc, z_var)              # eq. 5-6
        stats = mix.statistics(gamma, z_loc, z_var)             # sum these across processes
        mix.update(stats, num_data)                             # eq. 13, then eq. 7 with rho_tau
    """

    def __init__(self, n_components: int, dim: int, *, m0=HYPERPRIOR["m0"], s0=HYPERPRIOR["s0"], a0=HYPERPRIOR["a0"],
                 b0=HYPERPRIOR["b0"], c0=HYPERPRIOR["c0"],
                 tau0: float = DEFAULT_TAU0, kappa: float = DEFAULT_KAPPA, dtype: Optional[torch.dtype] = None,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        if int(n_components) != n_components or n_components < 1:
            raise ConfigError(f"the number of components K must be an integer >= 1; got {n_components!r}")
        if int(dim) != dim or dim < 1:
            raise ConfigError(f"the block dimension D must be an integer >= 1; got {dim!r}")
        check_schedule(tau0, kappa)
        self.n_components, self.dim = int(n_components), int(dim)
        self.tau0, self.kappa = float(tau0), float(kappa)
        dtype = dtype or torch.get_default_dtype()
        K, D = self.n_components, self.dim
        for name, value, shape in (("m0", m0, (K, D)), ("s0", s0, (K, D)), ("a0", a0, (K, D)),
                                   ("b0", b0, (K, D)), ("c0", c0, (K,))):
            t = torch.broadcast_to(torch.as_tensor(value, dtype=dtype), shape).clone()
            if not torch.isfinite(t).all() or (name != "m0" and not (t > 0).all()):
                raise ConfigError(f"the hyperparameter {name} must be finite{'' if name == 'm0' else ' and > 0'}")
            self.register_buffer(name, t)
        for name in ("m", "s", "a", "b", "c"):
            self.register_buffer(name, getattr(self, name + "0").clone())
        self.register_buffer("tau", torch.zeros((), dtype=torch.long))
        with torch.no_grad():
            self.m.add_(torch.randn(K, D, generator=generator, dtype=dtype))

    # -- the variational factors -------------------------------------------------------------------
    def normal_gamma(self) -> NormalGamma:
        """q(mu, alpha), batch shape (K, D)."""
        return NormalGamma(self.m, self.s, self.a, self.b)

    def prior_normal_gamma(self) -> NormalGamma:
        """p(mu, alpha), batch shape (K, D)."""
        return NormalGamma(self.m0, self.s0, self.a0, self.b0)

    def natural_params(self) -> torch.Tensor:
        """lambda (K, D, 4) of q(mu, alpha), eq. 12."""
        return mean_to_natural(self.m, self.s, self.a, self.b)

    @torch.no_grad()
    def set_natural_params(self, natural: torch.Tensor, c: Optional[torch.Tensor] = None) -> None:
        """Set q(mu, alpha) from lambda (K, D, 4) (and q(pi) from c (K,))."""
        for buf, value in zip((self.m, self.s, self.a, self.b), natural_to_mean(natural)):
            buf.copy_(value)
        if c is not None:
            self.c.copy_(c)

    @torch.no_grad()
    def init_means(self, z_loc: torch.Tensor, generator: Optional[torch.Generator] = None) -> None:
        """Put the K means m_k at K distinct random rows of z_loc (N, D) (with repeats when N < K)."""
        n = z_loc.shape[0]
        idx = torch.randperm(n, generator=generator)[: self.n_components] if n >= self.n_components else \
            torch.randint(n, (self.n_components,), generator=generator)
        self.m.copy_(z_loc.detach()[idx.to(z_loc.device)])

    # -- eq. 5-6 ------------------------------------------------------------------------------------
    def _q(self, like: torch.Tensor):
        q = NormalGamma(*(t.to(like.dtype) for t in (self.m, self.s, self.a, self.b)))
        return q, self.c.to(like.dtype)

    def responsibility_logits(self, z_loc: torch.Tensor, z_var: torch.Tensor) -> torch.Tensor:
        """log gamma~ (..., K) from z_loc, z_var (..., D) (eq. 5-6); differentiable in z_loc, z_var."""
        q, c = self._q(z_loc)
        return responsibility_logits(q, c, z_loc, z_var)

    def responsibilities(self, z_loc: torch.Tensor, z_var: torch.Tensor) -> torch.Tensor:
        """gamma (..., K), eq. 5."""
        return torch.softmax(self.responsibility_logits(z_loc, z_var), dim=-1)

    # -- eq. 13, 7 ----------------------------------------------------------------------------------
    @staticmethod
    def statistics(gamma: torch.Tensor, z_loc: torch.Tensor, z_var: torch.Tensor) -> MixtureStats:
        """:func:`sufficient_statistics` (sum across processes before :meth:`update`)."""
        return sufficient_statistics(gamma, z_loc, z_var)

    def next_step_size(self) -> torch.Tensor:
        """rho for the next update: (tau0 + tau + 1)^-kappa, as a 0-d float64 tensor on the
        buffers' device -- computed there, so that a step on CUDA does not wait to read ``tau``."""
        return (self.tau0 + self.tau.to(torch.float64) + 1.0) ** (-float(self.kappa))

    def optimal(self, stats: MixtureStats, num_data: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """(lambda* (K, D, 4), c* (K,)) in float64, eq. 13 / App. D."""
        return optimal_natural_params(stats, num_data, *(getattr(self, n).to(torch.float64)
                                                         for n in ("m0", "s0", "a0", "b0", "c0")))

    @torch.no_grad()
    def update(self, stats: MixtureStats, num_data: float, rho: Optional[float] = None):
        """One natural-gradient step lambda <- (1 - rho) lambda + rho lambda* (eq. 7, 14); returns rho
        (the given float, or the schedule's value as a 0-d tensor, :meth:`next_step_size`).

        ``rho`` defaults to the schedule's next value; ``tau`` counts the updates either way.
        The arithmetic is in float64 (b = -lambda_2 - lambda_3^2 / (2 s) cancels), stored back in
        the buffers' dtype.
        """
        if rho is None:
            rho = self.next_step_size()  # in (0, 1] by check_schedule (tau0 >= 0, kappa in (1/2, 1])
        else:
            rho = float(rho)
            if not (0.0 < rho <= 1.0):
                raise ConfigError(f"the step size rho must be in (0, 1]; got {rho!r}")
        stats = MixtureStats(*(t.to(self.m.device) for t in stats.tensors()))
        lam_star, c_star = self.optimal(stats, num_data)
        lam = mean_to_natural(*(t.to(torch.float64) for t in (self.m, self.s, self.a, self.b)))
        self.set_natural_params(natural_step(lam, lam_star, rho), natural_step(self.c.to(torch.float64), c_star, rho))
        self.tau += 1
        return rho

    @torch.no_grad()
    def step(self, z_loc: torch.Tensor, z_var: torch.Tensor, num_data: float, rho: Optional[float] = None,
             gamma: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Steps 1 and 3 of Sect. 2.4 on one batch: gamma (eq. 5, unless given), then :meth:`update`; returns gamma."""
        if gamma is None:
            gamma = self.responsibilities(z_loc, z_var)
        self.update(self.statistics(gamma, z_loc, z_var), num_data, rho)
        return gamma

    # -- bound terms --------------------------------------------------------------------------------
    def kl_z(self, gamma: torch.Tensor, z_loc: torch.Tensor, z_var: torch.Tensor) -> torch.Tensor:
        """KL[z_i] per point (App. C.2), (...)."""
        q, _ = self._q(z_loc)
        return expected_kl_z(q, gamma, z_loc, z_var)

    def kl_r(self, gamma: torch.Tensor) -> torch.Tensor:
        """KL[r_i] per point (App. C.3), (...)."""
        return expected_kl_r(gamma, self.c.to(gamma.dtype))

    def global_kl(self) -> dict:
        """{'pi': KL(q(pi) || p(pi)), 'normal_gamma': sum_kd KL(q(mu, alpha) || p(mu, alpha))} (eq. 4d-4e)."""
        return {"pi": kl_dirichlet(self.c, self.c0),
                "normal_gamma": kl_normal_gamma(self.normal_gamma(), self.prior_normal_gamma()).sum()}

    def extra_repr(self) -> str:
        return f"K={self.n_components}, D={self.dim}, tau0={self.tau0}, kappa={self.kappa}"


__all__ = ["ConjugateMixture", "MixtureStats", "check_schedule", "expected_kl_r", "expected_kl_z",
           "kl_dirichlet", "natural_step", "optimal_natural_params", "responsibilities",
           "responsibility_logits", "step_size", "sufficient_statistics"]
