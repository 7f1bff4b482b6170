"""The Normal-Gamma distribution and the closed forms of the factorial mixture prior.

``factorial-mixture-prior.txt`` puts a Normal-Gamma on each mean and precision of each mixture
component, per dimension (Sect. 2.2 for the prior, Sect. 2.3 / App. B for q)::

    q(mu, alpha) = N(mu; m, (s * alpha)^-1) * Gamma(alpha; a, b)        # b is a RATE: E[alpha] = a / b

Every quantity here is elementwise over a batch of such pairs (one per component k and
dimension d in the paper; any batch shape here):

* :class:`NormalGamma` -- the distribution; a value is ``(..., 2)`` with ``value[..., 0] = mu``
  and ``value[..., 1] = alpha`` (``event_shape == (2,)``);
* :func:`mean_to_natural` / :func:`natural_to_mean` -- App. B, eq. 12: the "mean parameters"
  (m, s, a, b) (the paper's name for the ordinary parametrisation) and the natural parameters
  lambda = [a - 1/2, -(b + s m^2 / 2), s m, -s / 2] of the statistics t = [log alpha, alpha,
  alpha mu, alpha mu^2]; :func:`expected_statistics` gives E_q[t] (App. C.1);
* :func:`kl_normal_gamma` -- App. C.1 (also registered with ``torch.distributions.kl_divergence``);
* :func:`expected_log_normal` -- eq. 6: E_{q(z) q(mu, alpha)}[log N(z; mu, alpha^-1)] per dimension;
* :func:`student_t_predictive` -- eq. 10: the marginal of z ~ N(mu, alpha^-1), (mu, alpha) ~ q;
* :func:`dirichlet_expected_log` -- E_{Dir(c)}[log pi_k] = psi(c_k) - psi(sum_k' c_k') (Sect. 2.4.1).
"""
from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.kl import register_kl
from torch.distributions.utils import broadcast_all

_LOG_2PI = math.log(2.0 * math.pi)


class NormalGamma(TorchDistribution):
    """N(mu; m, (s alpha)^-1) Gamma(alpha; a, b), b a rate (paper Sect. 2.2-2.3, App. B).

    :param m: mean of mu (any real).
    :param s: precision scale of mu, > 0 (mu's precision is ``s * alpha``).
    :param a: Gamma shape of alpha, > 0.
    :param b: Gamma rate of alpha, > 0 (E[alpha] = a / b).

    The four broadcast to ``batch_shape``. A value has shape ``batch_shape + (2,)``: the last
    axis stacks ``(mu, alpha)``, so ``value[..., 0]`` is mu and ``value[..., 1]`` is alpha > 0.
    ``mean`` is ``(m, a / b)`` stacked the same way; ``rsample`` is reparameterised
    (alpha by torch's Gamma ``rsample``, then mu = m + eps / sqrt(s alpha)).
    """

    arg_constraints = {"m": constraints.real, "s": constraints.positive,
                       "a": constraints.positive, "b": constraints.positive}
    support = constraints.stack([constraints.real, constraints.positive], dim=-1)
    has_rsample = True

    def __init__(self, m, s, a, b, validate_args=None):
        self.m, self.s, self.a, self.b = broadcast_all(m, s, a, b)
        super().__init__(self.m.shape, torch.Size((2,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NormalGamma, _instance)
        batch_shape = torch.Size(batch_shape)
        new.m, new.s, new.a, new.b = (t.expand(batch_shape) for t in (self.m, self.s, self.a, self.b))
        super(NormalGamma, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # -- the two marginal pieces ---------------------------------------------------------------
    @property
    def precision_dist(self) -> dist.Gamma:
        """q(alpha) = Gamma(a, rate b)."""
        return dist.Gamma(self.a, self.b)

    def log_prob(self, value):
        """log N(mu; m, (s alpha)^-1) + log Gamma(alpha; a, b) for value = stack(mu, alpha) on the last axis."""
        if self._validate_args:
            self._validate_sample(value)
        mu, alpha = value[..., 0], value[..., 1]
        log_gamma = self.precision_dist.log_prob(alpha)
        prec = self.s * alpha
        log_normal = 0.5 * (torch.log(prec) - _LOG_2PI) - 0.5 * prec * (mu - self.m) ** 2
        return log_gamma + log_normal

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)[:-1]
        alpha = self.precision_dist.rsample(sample_shape)
        eps = torch.randn(shape, dtype=self.m.dtype, device=self.m.device)
        mu = self.m + eps * torch.rsqrt(self.s * alpha)
        return torch.stack([mu, alpha], dim=-1)

    @property
    def mean(self):
        """(E[mu], E[alpha]) = (m, a / b), stacked on the last axis."""
        return torch.stack([self.m, self.a / self.b], dim=-1)

    @property
    def variance(self):
        """(Var[mu], Var[alpha]) = (b / (s (a - 1)), a / b^2) on the last axis; Var[mu] = inf for a <= 1."""
        var_mu = torch.where(self.a > 1, self.b / (self.s * (self.a - 1).clamp(min=1e-30)),
                             torch.full_like(self.m, math.inf))
        return torch.stack([var_mu, self.a / self.b ** 2], dim=-1)

    def entropy(self):
        """-E[log q] = H[Gamma(a, b)] + E_alpha[H[N(m, (s alpha)^-1)]], the latter 1/2 (1 + log 2pi - log s - E[log alpha])."""
        e_log_alpha = torch.digamma(self.a) - torch.log(self.b)
        return self.precision_dist.entropy() + 0.5 * (1.0 + _LOG_2PI - torch.log(self.s) - e_log_alpha)

    # -- exponential-family views (App. B) -----------------------------------------------------
    @property
    def natural_params(self) -> torch.Tensor:
        """lambda of eq. 12, ``batch_shape + (4,)``."""
        return mean_to_natural(self.m, self.s, self.a, self.b)

    @classmethod
    def from_natural(cls, natural: torch.Tensor, validate_args=None) -> "NormalGamma":
        """The Normal-Gamma with natural parameters ``natural`` (``(..., 4)``, eq. 12)."""
        return cls(*natural_to_mean(natural), validate_args=validate_args)

    def expected_statistics(self) -> torch.Tensor:
        """E_q[t(mu, alpha)] for t = [log alpha, alpha, alpha mu, alpha mu^2], ``batch_shape + (4,)``."""
        return expected_statistics(self.m, self.s, self.a, self.b)


# -- App. B: mean <-> natural parameters ----------------------------------------------------------
def mean_to_natural(m, s, a, b) -> torch.Tensor:
    """lambda = [a - 1/2, -(b + s m^2 / 2), s m, -s / 2] (App. B, eq. 12), stacked on a new last axis.

    With t = [log alpha, alpha, alpha mu, alpha mu^2], log q(mu, alpha) = lambda^T t + const.
    """
    m, s, a, b = broadcast_all(m, s, a, b)
    return torch.stack([a - 0.5, -(b + 0.5 * s * m ** 2), s * m, -0.5 * s], dim=-1)


def natural_to_mean(natural: torch.Tensor):
    """(m, s, a, b) from lambda (``(..., 4)``), the inverse of :func:`mean_to_natural`.

    s = -2 lambda_4, m = lambda_3 / s, a = lambda_1 + 1/2, b = -lambda_2 - s m^2 / 2.
    """
    l1, l2, l3, l4 = natural.unbind(-1)
    s = -2.0 * l4
    m = l3 / s
    return m, s, l1 + 0.5, -l2 - 0.5 * s * m ** 2


def expected_statistics(m, s, a, b) -> torch.Tensor:
    """E_q[log alpha, alpha, alpha mu, alpha mu^2] = [psi(a) - log b, a/b, m a/b, 1/s + m^2 a/b] (App. C.1)."""
    m, s, a, b = broadcast_all(m, s, a, b)
    e_alpha = a / b
    return torch.stack([torch.digamma(a) - torch.log(b), e_alpha, m * e_alpha, 1.0 / s + m ** 2 * e_alpha], dim=-1)


# -- App. C.1: KL between Normal-Gammas ------------------------------------------------------------
def kl_normal_gamma(q: NormalGamma, p: NormalGamma) -> torch.Tensor:
    """KL(q || p) per element of the batch (App. C.1)::

        1/2 (s_p a_q/b_q (m_q - m_p)^2 + s_p/s_q - log(s_p/s_q) - 1)
        + a_p log(b_q/b_p) - (log Gamma(a_q) - log Gamma(a_p)) + (a_q - a_p) psi(a_q) - (b_q - b_p) a_q/b_q

    The paper prints psi(a_q) - psi(a_p) where the Gamma KL has log Gamma(a_q) - log Gamma(a_p),
    and b_a for b_q; this is the correct form (the test checks it against Monte Carlo).
    """
    e_alpha = q.a / q.b
    normal = 0.5 * (p.s * e_alpha * (q.m - p.m) ** 2 + p.s / q.s - torch.log(p.s / q.s) - 1.0)
    gamma = (p.a * torch.log(q.b / p.b) - (torch.lgamma(q.a) - torch.lgamma(p.a))
             + (q.a - p.a) * torch.digamma(q.a) - (q.b - p.b) * e_alpha)
    return normal + gamma


@register_kl(NormalGamma, NormalGamma)
def _kl_normal_gamma(q, p):
    return kl_normal_gamma(q, p)


# -- eq. 6 and eq. 10 --------------------------------------------------------------------------------
def expected_log_normal(q_ng: NormalGamma, z_loc, z_var) -> torch.Tensor:
    """E_{q(z) q(mu, alpha)}[log N(z; mu, alpha^-1)] with q(z) = N(z_loc, z_var), per dimension (eq. 6)::

        1/2 (psi(a) - log b - log 2pi - 1/s - a/b ((z_loc - m)^2 + z_var))

    Elementwise: ``z_loc``, ``z_var`` (a variance, not a scale) and ``q_ng``'s batch broadcast
    together, nothing is summed. For N points against K components of D dimensions pass
    ``z_loc[:, None, :]`` (N, 1, D) with a (K, D) ``q_ng`` and sum the result over the last axis.
    """
    return 0.5 * (torch.digamma(q_ng.a) - torch.log(q_ng.b) - _LOG_2PI - 1.0 / q_ng.s
                  - q_ng.a / q_ng.b * ((z_loc - q_ng.m) ** 2 + z_var))


def student_t_predictive(q_ng: NormalGamma) -> dist.StudentT:
    """q(z) = int N(z; mu, alpha^-1) q(mu, alpha) d mu d alpha = T(df = 2a, loc = m, scale) (eq. 10).

    Eq. 10 writes the second argument as (s + 1)/s * b/a: that is the squared scale; torch's
    ``StudentT`` takes its square root, scale = sqrt((s + 1) b / (s a)).
    """
    scale = torch.sqrt((q_ng.s + 1.0) * q_ng.b / (q_ng.s * q_ng.a))
    return dist.StudentT(2.0 * q_ng.a, q_ng.m, scale)


def dirichlet_expected_log(c: torch.Tensor) -> torch.Tensor:
    """E_{Dir(c)}[log pi_k] = psi(c_k) - psi(sum_k' c_k') over the last axis (Sect. 2.4.1, App. C.3)."""
    return torch.digamma(c) - torch.digamma(c.sum(-1, keepdim=True))


__all__ = ["NormalGamma", "dirichlet_expected_log", "expected_log_normal", "expected_statistics",
           "kl_normal_gamma", "mean_to_natural", "natural_to_mean", "student_t_predictive"]
