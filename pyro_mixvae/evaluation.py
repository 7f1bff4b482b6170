"""Evaluation of a trained model on data: its ELBO per data point and its clustering metrics.

The ELBO reported (``metrics.json``'s ``elbo``, the estimators' ``score``) is the model's own
training objective evaluated on all of ``x`` in evaluation mode (batch normalisation uses its
running statistics), averaged over ``num_particles`` draws of the guide, in nats per data
point. For VaDE it is the collapsed bound of ``vade.txt`` eq. 15 with q(c|x) = p(c|z).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyro
import torch

from .infer.train import default_elbo
from .metrics import clustering_metrics
from .nets import eval_mode


@torch.no_grad()
def predict_proba(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """(N, K) responsibilities of all of ``x``, in evaluation mode, batch by batch."""
    with eval_mode(model):
        return torch.cat([model.responsibilities(xb) for xb in x.split(batch_size)])


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


def evaluate(model, x: torch.Tensor, y: Optional[np.ndarray] = None, *, num_particles: int = 10) -> dict:
    """ELBO per point and the clustering metrics of :func:`pyro_mixvae.metrics.clustering_metrics`."""
    proba = predict_proba(model, x).cpu().numpy()
    out = {"elbo": elbo_per_point(model, x, num_particles=num_particles)}
    out.update(clustering_metrics(proba, y))
    with eval_mode(model):
        out.update(model.diagnostics(x))
    return out
