"""Evaluation of a trained model on data: its ELBO per data point, an importance-weighted estimate
of log p(x) per point (:func:`importance_log_likelihood`, for held-out data) and its clustering metrics.

The ELBO reported (``metrics.json``'s ``elbo``, the estimators' ``score``) is the model's own
training objective evaluated on all of ``x`` in evaluation mode (batch normalisation uses its
running statistics), averaged over ``num_particles`` draws of the guide, in nats per data
point. For VaDE it is the collapsed bound of ``vade.txt`` eq. 15 with q(c|x) = p(c|z).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyro
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample
import torch

from .errors import ConfigError
from .infer.elbo import default_elbo
from .infer.predict import predict_proba
from .metrics import clustering_metrics
from .nets import eval_mode


@torch.no_grad()
def elbo_per_point(model, x: torch.Tensor, *, elbo=None, num_particles: int = 10, batch_size: int = 1000) -> float:
    """Mean ELBO per data point of ``x`` (nats), in evaluation mode.

    Each batch is evaluated as a minibatch of all N points (local terms scaled by N / B, global
    sites -- the factorial prior's -- counted once) and weighted by B / N, so that global terms
    enter once in total, not once per batch.
    """
    elbo = elbo if elbo is not None else default_elbo(model, num_particles)
    n = x.shape[0]
    total = 0.0
    with eval_mode(model), pyro.validation_enabled(False):
        for xb in x.split(batch_size):
            total += len(xb) / n * float(elbo.loss(model.model, model.guide, xb, n))
    return -total / n


def evaluate(model, x: torch.Tensor, y: Optional[np.ndarray] = None, *, num_particles: int = 10,
             iw_samples: int = 0) -> dict:
    """ELBO per point and the clustering metrics of :func:`pyro_mixvae.metrics.clustering_metrics`;
    with ``iw_samples`` > 0 also the importance-weighted ``log_likelihood`` per point of
    :func:`importance_log_likelihood` with its standard errors (:meth:`LogLikelihood.summary`)."""
    proba = predict_proba(model, x).cpu().numpy()
    out = {"elbo": elbo_per_point(model, x, num_particles=num_particles)}
    if iw_samples > 0:
        out.update(importance_log_likelihood(model, x, num_samples=iw_samples).summary())
    out.update(clustering_metrics(proba, y))
    with eval_mode(model):
        out.update(model.diagnostics(x))
    return out


# ----------------------------------------------------------------------------- importance-weighted log p(x)
DEFAULT_IW_SAMPLES = 100
DEFAULT_GLOBAL_DRAWS = 20


@dataclass
class LogLikelihood:
    """Importance-weighted estimates of log p(x_n), in nats (see :func:`importance_log_likelihood`).

    ``pointwise`` (G, N): log p^(x_n | theta_g) per draw g of the global sites from q (G = 1 where
    the globals are point values); ``marginal`` (N,): log p^(x_n) = log mean over (g, s) of the
    weights, the predictive density under q(theta); ``mc_se`` (N,): its Monte-Carlo standard
    error by the delta method, sd(w) / (sqrt(S) mean(w)).
    """

    pointwise: np.ndarray
    marginal: np.ndarray
    mc_se: np.ndarray
    num_samples: int

    def summary(self) -> dict:
        """Mean over points, its standard error over points (sd / sqrt N) and its Monte-Carlo error."""
        n = len(self.marginal)
        return {"log_likelihood": float(self.marginal.mean()),
                "log_likelihood_se": float(self.marginal.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                "log_likelihood_mc_se": float(np.sqrt((self.mc_se ** 2).sum()) / n),
                "iw_samples": int(self.num_samples)}


def _in_data_plate(site) -> bool:
    return any(frame.name == "data" for frame in site["cond_indep_stack"])


def _enumerated(site) -> bool:
    return site["type"] == "sample" and site["infer"].get("enumerate") == "parallel"


def _guide_trace(guide, x, plate_name: str, size: int, dim: int):
    """The guide with ``size`` vectorised draws in a plate at ``dim``; its enumerated sites (a
    mean-field q(c|x)) are left out: the model sums the clusters out itself."""
    guide = poutine.block(guide, hide_fn=_enumerated)
    with pyro.plate(plate_name, size, dim=dim):
        return poutine.trace(guide).get_trace(x)


def _split_sites(trace):
    """(global sites, local sites) of a guide trace: outside / inside the data plate."""
    sites = [s for s in trace.nodes.values()
             if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)]
    return [s for s in sites if not _in_data_plate(s)], [s for s in sites if _in_data_plate(s)]


def draw_globals(model, x, num_draws: int) -> dict:
    """{site: (G, 1, 1, *event)} draws of the guide's global sites (outside the data plate); {} if none."""
    with pyro.validation_enabled(False):
        trace = _guide_trace(model.guide, x[:1], "global_draws", num_draws, -3)
    return {s["name"]: s["value"] for s in _split_sites(trace)[0]}


def _log_weights(model, x, global_values: dict, num_samples: int) -> torch.Tensor:
    """(G, S, B) log w = log p(x, z | theta_g) - log q(z | x), every enumerated site summed out.

    z ~ q(z | x) with S draws at plate dim -2, shared by the G draws of the globals theta_g
    (conditioned at dim -3); enumeration starts at dim -4, so the model's sites broadcast to
    (*enum, G, S, B) and the discrete sites are summed out by brute force (logsumexp over the
    enumeration dims of the joint)."""
    local_trace = _guide_trace(model.guide, x, "iw_samples", num_samples, -2)
    _, local = _split_sites(local_trace)
    values = {**global_values, **{s["name"]: s["value"] for s in local}}
    enum_model = poutine.enum(poutine.condition(model.model, data=values), first_available_dim=-4)
    model_trace = poutine.trace(enum_model).get_trace(x)
    terms = [s["fn"].log_prob(s["value"]) for s in model_trace.nodes.values()
             if s["type"] == "sample" and _in_data_plate(s) and not site_is_subsample(s)]
    terms += [-s["fn"].log_prob(s["value"]) for s in local]
    total = sum(t if t.dim() >= 3 else t.reshape((1,) * (3 - t.dim()) + t.shape) for t in terms)
    total = total.reshape((-1,) + total.shape[-3:]).logsumexp(0)
    return total.expand(total.shape[0], num_samples, x.shape[0])


@torch.no_grad()
def importance_log_likelihood(model, x: torch.Tensor, *, num_samples: int = DEFAULT_IW_SAMPLES,
                              num_draws: int = DEFAULT_GLOBAL_DRAWS, batch_size: int = 200,
                              chunk: int = 50, seed: int = 0, global_values: Optional[dict] = None) -> LogLikelihood:
    """Importance-weighted (IWAE) estimates of log p(x_n) per point, in evaluation mode.

    For S draws z_s ~ q(z | x_n) of the guide's local sites,

        log p^(x_n | theta) = log (1/S) sum_s p(x_n, z_s | theta) / q(z_s | x_n),

    with every enumerated (cluster) site summed out exactly in p(x_n, z_s | theta). Its
    expectation is a lower bound on log p(x_n | theta) that rises to it as S grows (Burda et
    al. 2016, Theorem 1); S = 1 is the ELBO. Where the guide has a q over global sites (the
    factorial prior's pi_i, xi_i), ``num_draws`` draws theta_g ~ q are shared by all points and
    ``marginal`` is log (1/(G S)) sum_{g,s} w_gs, a bound on log E_q(theta) p(x_n | theta);
    elsewhere the globals are the model's parameters and G = 1. The z_s are shared across
    the theta_g (one decoder pass per z_s). ``global_values`` (site -> (G, 1, 1, *event) tensor, as
    :func:`draw_globals` returns) gives the draws to use instead. The global RNG is left as it was.

    For a Bernoulli likelihood on x in [0, 1] that is not binary, p(x | z) is the cross-entropy
    form, not a normalised density; estimates compare models with the same likelihood only.
    """
    if num_samples < 1 or num_draws < 1:
        raise ConfigError(f"iw samples and global draws must be >= 1; got {num_samples} and {num_draws}")
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), \
            eval_mode(model), pyro.validation_enabled(False):
        torch.manual_seed(seed)
        if global_values is None:
            global_values = draw_globals(model, x, num_draws)
        parts = []
        for xb in x.split(batch_size):
            sizes = [min(chunk, num_samples - i) for i in range(0, num_samples, chunk)]
            parts.append(torch.cat([_log_weights(model, xb, global_values, s) for s in sizes], 1))
        log_w = torch.cat(parts, -1).double()  # (G, S, N)
    return _summarise_weights(log_w)


def _summarise_weights(log_w: torch.Tensor) -> LogLikelihood:
    """(G, S, N) log weights -> per-draw and marginal estimates and the delta-method MC error."""
    G, S, _ = log_w.shape
    pointwise = log_w.logsumexp(1) - math.log(S)
    per_sample = log_w.logsumexp(0) - math.log(G)  # (S, N): the weight of z_s averaged over the globals
    marginal = per_sample.logsumexp(0) - math.log(S)
    p = torch.softmax(per_sample, 0)
    relative_var = (S * (p ** 2).sum(0) - 1).clamp(min=0) * S / max(S - 1, 1)  # var(w) / mean(w)^2
    mc_se = torch.sqrt(relative_var / S)
    return LogLikelihood(pointwise.numpy(), marginal.numpy(), mc_se.numpy(), S)
