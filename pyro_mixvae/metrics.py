"""Clustering metrics for mixture-prior VAEs.

Notation: ``y_true`` are ground-truth class labels, ``y_pred`` are cluster ids (any
integers, not necessarily ``0..K-1``), ``proba`` is an ``(N, K)`` table of cluster
responsibilities q(c=k | x_n) whose rows sum to one; hard assignments are its argmax.

Definitions (all accuracies are fractions of the N points in [0, 1]):

* ``acc`` -- unsupervised clustering accuracy, ``max_m (1/N) sum_n 1[y_n = m(c_n)]``
  over one-to-one maps m from clusters to labels, found with the Hungarian algorithm
  on the contingency table. When there are more clusters than classes, the clusters
  left unmatched count as wrong. This is ACC as used by DEC (Xie et al., 2016) and
  VaDE (Jiang et al., 2017, Sect. 4.3).
* ``acc_cluster_label`` -- the protocol of the GMVAE papers (Dilokthanakul et al.,
  2016), following Makhzani et al. (2016, adversarial autoencoders): each cluster k
  takes the label of the data point with the highest probability ``proba[:, k]`` of
  belonging to it, and every point is predicted the label of its argmax cluster.
  Several clusters may share a label (many-to-one).
* ``acc_majority`` -- many-to-one accuracy: each cluster takes its majority label
  (cluster purity). Always ``>= acc``.
* ``nmi`` -- normalized mutual information, ``I(Y; C) / ((H(Y) + H(C)) / 2)``
  (scikit-learn, arithmetic average).
* ``ari`` -- adjusted Rand index (Hubert and Arabie, 1985; scikit-learn).
* ``clusters_used`` -- number of distinct clusters that receive at least one point.
* ``assignment_entropy`` -- mean over points of ``-sum_k p_nk log p_nk`` in nats
  (``0 log 0 = 0``): 0 for confident assignments, ``log K`` for uniform ones.

Invalid inputs (unequal lengths, empty arrays, a ``proba`` that is not a 2-D table of
probabilities) raise :class:`~pyro_mixvae.errors.DataError`, a ``ValueError``.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from pyro_mixvae.errors import DataError

__all__ = [
    "DEFINITIONS",
    "acc",
    "acc_cluster_label",
    "acc_majority",
    "ari",
    "assignment_entropy",
    "clustering_metrics",
    "clusters_used",
    "contingency",
    "format_metrics",
    "nmi",
]

DEFINITIONS = {
    "acc": "unsupervised accuracy: best one-to-one matching of clusters to labels "
    "by the Hungarian algorithm, unmatched clusters count as wrong",
    "acc_cluster_label": "cluster-label accuracy: each cluster takes the label of "
    "its most probable point, points take their argmax cluster's label",
    "acc_majority": "majority accuracy: each cluster takes its majority label, "
    "many-to-one",
    "nmi": "normalized mutual information, arithmetic mean of entropies",
    "ari": "adjusted Rand index",
    "clusters_used": "number of clusters that receive at least one point",
    "assignment_entropy": "mean entropy of the cluster responsibilities, in nats",
}

_ROW_SUM_TOL = 1e-3


def _labels(y, name):
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise DataError(f"{name} is empty")
    return y


def _pair(y_true, y_pred):
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise DataError(
            f"y_true and y_pred have different lengths ({len(y_true)} and {len(y_pred)})"
        )
    return y_true, y_pred


def _proba(proba):
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[0] == 0 or proba.shape[1] == 0:
        raise DataError(f"proba must be a non-empty 2-D (N, K) table, got shape {proba.shape}")
    if not np.all(np.isfinite(proba)) or np.any(proba < 0):
        raise DataError("proba must contain finite, non-negative probabilities")
    sums = proba.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=_ROW_SUM_TOL):
        worst = sums[np.argmax(np.abs(sums - 1.0))]
        raise DataError(f"rows of proba must sum to 1 (one row sums to {worst:.6g})")
    return proba


def contingency(y_true, y_pred):
    """Counts ``C[i, j]`` of points in the i-th cluster and j-th class (sorted ids)."""
    y_true, y_pred = _pair(y_true, y_pred)
    _, cls = np.unique(y_true, return_inverse=True)
    clusters, clu = np.unique(y_pred, return_inverse=True)
    n_classes = cls.max() + 1
    counts = np.bincount(clu.ravel() * n_classes + cls.ravel(), minlength=len(clusters) * n_classes)
    return counts.reshape(len(clusters), n_classes)


def acc(y_true, y_pred):
    """Unsupervised accuracy with the best one-to-one cluster-to-label matching."""
    table = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def acc_majority(y_true, y_pred):
    """Accuracy when each cluster predicts its majority label (many-to-one)."""
    table = contingency(y_true, y_pred)
    return float(table.max(axis=1).sum() / table.sum())


def acc_cluster_label(y_true, proba):
    """Accuracy when each cluster takes the label of its most probable point."""
    y_true = _labels(y_true, "y_true")
    proba = _proba(proba)
    if len(y_true) != len(proba):
        raise DataError(f"y_true and proba have different lengths ({len(y_true)} and {len(proba)})")
    cluster_label = y_true[np.argmax(proba, axis=0)]  # (K,) label of each cluster
    predicted = cluster_label[np.argmax(proba, axis=1)]
    return float(np.mean(predicted == y_true))


def nmi(y_true, y_pred):
    """Normalized mutual information (arithmetic average of the entropies)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic"))


def ari(y_true, y_pred):
    """Adjusted Rand index."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(adjusted_rand_score(y_true, y_pred))


def clusters_used(y_pred):
    """Number of distinct clusters that received at least one point."""
    return int(len(np.unique(_labels(y_pred, "y_pred"))))


def assignment_entropy(proba):
    """Mean over points of the entropy of the responsibilities, in nats."""
    proba = _proba(proba)
    positive = proba > 0
    plogp = np.zeros_like(proba)
    plogp[positive] = proba[positive] * np.log(proba[positive])
    return float(max(0.0, -plogp.sum(axis=1).mean()))


def clustering_metrics(proba, y_true=None):
    """All metrics for responsibilities ``proba``; label-based ones when ``y_true`` is given."""
    proba = _proba(proba)
    y_pred = np.argmax(proba, axis=1)
    out = {
        "clusters_used": clusters_used(y_pred),
        "assignment_entropy": assignment_entropy(proba),
    }
    if y_true is not None:
        y_true = _labels(y_true, "y_true")
        if len(y_true) != len(proba):
            raise DataError(
                f"y_true and proba have different lengths ({len(y_true)} and {len(proba)})"
            )
        out["acc"] = acc(y_true, y_pred)
        out["acc_cluster_label"] = acc_cluster_label(y_true, proba)
        out["acc_majority"] = acc_majority(y_true, y_pred)
        out["nmi"] = nmi(y_true, y_pred)
        out["ari"] = ari(y_true, y_pred)
    return out


def format_metrics(metrics):
    """One line per entry; metrics show their value and their definition."""
    lines = []
    for key, value in metrics.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            lines.append(f"{key:<18} {value}")
            continue
        text = f"{value:.4f}" if isinstance(value, (float, np.floating)) else f"{int(value)}"
        if key in DEFINITIONS:
            text = f"{text:<7}  ({DEFINITIONS[key]})"
        lines.append(f"{key:<18} {text}")
    return "\n".join(lines)
