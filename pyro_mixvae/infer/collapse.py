"""Watching a run for cluster collapse: the loss of clusters that its start used.

A mixture-prior VAE can merge its clusters during SVI while its bound keeps improving, and the
result then looks like an answer. :class:`CollapseWatch`, called by :func:`~pyro_mixvae.infer.fit`
after each evaluated epoch, compares the number of clusters used (points assigned by argmax)
with the number its start used -- after pretraining, or at the first evaluated epoch when there is
none -- and, the first time a start that used all K clusters leaves some empty, warns once with a
:class:`~pyro_mixvae.errors.ClusterCollapseWarning` naming the epoch. The event is kept in
``History.collapse`` and written to ``metrics.json``.
"""
from __future__ import annotations

import warnings
from typing import Optional

from ..errors import ClusterCollapseWarning


class CollapseWatch:
    """Callback ``watch(epoch, record)``; ``event`` is None, or the first epoch at which clusters were lost."""

    def __init__(self, n_clusters: int, start_used: Optional[int] = None):
        self.n_clusters = int(n_clusters)
        self.start_used = start_used
        self.event: Optional[dict] = None

    def __call__(self, epoch: int, record: dict) -> None:
        used = record.get("clusters_used")
        if used is None:
            return
        if self.start_used is None:
            self.start_used = int(used)
        if self.event is None and self.start_used == self.n_clusters and used < self.n_clusters:
            self.event = {"epoch": int(epoch), "clusters_used": int(used), "start_clusters_used": self.start_used}
            warnings.warn(f"clusters collapsed at epoch {epoch}: {used} of {self.n_clusters} clusters are used, "
                          f"where the start used all {self.n_clusters}; the result may merge groups that the data "
                          "separate", ClusterCollapseWarning, stacklevel=2)
