"""Watching a run for cluster collapse: the loss of clusters that its start used.

A mixture-prior VAE can merge its clusters during SVI while its bound keeps improving, and the
result then looks like an answer. :class:`CollapseWatch`, called by :func:`~pyro_mixvae.infer.fit`
after each evaluated epoch, compares the number of clusters used (points assigned by argmax)
with the number its start used -- after pretraining, or at the first evaluated epoch when there is
none. When a start that used all K clusters ends training with some of them empty,
:meth:`CollapseWatch.finish` warns once with a :class:`~pyro_mixvae.errors.ClusterCollapseWarning`
naming the epoch since which fewer than K are used (a dip that recovers is no collapse). The event
is kept in ``History.collapse`` and written to ``metrics.json``.
"""
from __future__ import annotations

import warnings
from typing import Optional

from ..errors import ClusterCollapseWarning


class CollapseWatch:
    """Callback ``watch(epoch, record)``, then ``watch.finish()`` -> None or the collapse event."""

    def __init__(self, n_clusters: int, start_used: Optional[int] = None):
        self.n_clusters = int(n_clusters)
        self.start_used = start_used
        self.used: Optional[int] = None
        self.since: Optional[int] = None  # first epoch of the current run of epochs with fewer than K used

    def __call__(self, epoch: int, record: dict) -> None:
        used = record.get("clusters_used")
        if used is None:
            return
        if self.start_used is None:
            self.start_used = int(used)
        if used < self.n_clusters and self.since is None:
            self.since = int(epoch)
        elif used == self.n_clusters:
            self.since = None
        self.used = int(used)

    def finish(self) -> Optional[dict]:
        """The event {epoch, clusters_used, start_clusters_used} when clusters were lost, with a warning."""
        if self.since is None or self.start_used != self.n_clusters:
            return None
        warnings.warn(f"the clustering collapsed: {self.used} of {self.n_clusters} clusters are used at the end "
                      f"(fewer since epoch {self.since}), where the start used all {self.n_clusters}; the result "
                      "may merge groups that the data separate", ClusterCollapseWarning, stacklevel=3)
        return {"epoch": self.since, "clusters_used": self.used, "start_clusters_used": self.start_used}
