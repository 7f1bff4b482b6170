"""The cluster responsibilities of a whole data set: what the training loop's metrics and checks and
the evaluation of a trained model (:mod:`pyro_mixvae.evaluation`) read."""
from __future__ import annotations

import torch

from ..nets import eval_mode


@torch.no_grad()
def predict_proba(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """(N, K) responsibilities of all of ``x``, in evaluation mode, batch by batch."""
    with eval_mode(model):
        return torch.cat([model.responsibilities(xb) for xb in x.split(batch_size)])
