"""Small real-valued and tabular data sets with known groups, for checking that a clustering holds.

Every set is a :class:`~pyro_mixvae.data.Dataset` (``x`` float32 of shape (N, D), integer
labels ``y``); the same arguments give the same set.

* :func:`make_separated_blobs` -- K isotropic Gaussian blobs (scikit-learn's ``make_blobs``)
  whose centres are at least ``separation`` standard deviations apart; ``bounded=True`` maps
  them affinely into [0.05, 0.95] (still a Gaussian likelihood under ``likelihood="auto"``: only images and binary data get a Bernoulli one),
  ``warped=True`` sends them through a fixed smooth nonlinear map (:func:`warp`) first;
* :func:`make_unit_blobs` -- K tight groups in [0, 1]^D around uniformly drawn centres, clipped to the
  box (the guides' example, and the tests' small labelled sets);
* :func:`load_table` -- scikit-learn's bundled tables (iris, wine, breast cancer), standardised or raw;
* :func:`robustness_suite` -- the named sets of ``experiments/robustness.py`` and its tests.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.preprocessing import StandardScaler

from .data import Dataset, make_arcs
from .errors import DataError

TABLES = {"iris": sk_datasets.load_iris, "wine": sk_datasets.load_wine,
          "breast-cancer": sk_datasets.load_breast_cancer}


def separated_centres(k: int, dim: int, separation: float, rng: np.random.Generator) -> np.ndarray:
    """K centres in a cube of side ``2 * separation * k ** (1 / dim)``, redrawn until every pair is at
    least ``separation`` apart (rejection sampling, at most 1000 draws)."""
    half = separation * max(1.0, k ** (1.0 / dim))
    for _ in range(1000):
        centres = rng.uniform(-half, half, size=(k, dim))
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        if k == 1 or gaps[~np.eye(k, dtype=bool)].min() >= separation:
            return centres
    raise DataError(f"could not place {k} centres {separation} apart in {dim} dimensions")


def warp(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed smooth nonlinear map R^D -> R^D: x + tanh(x A) B with A, B random (seeded) D x D
    matrices of scale 1 / sqrt(D) * 3, so that the groups bend but stay apart."""
    rng = np.random.default_rng(10_000 + seed)
    d = x.shape[1]
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    b = 3.0 * rng.standard_normal((d, d)) / np.sqrt(d)
    return x + np.tanh(x @ a) @ b


def make_separated_blobs(n: int, dim: int, k: int, *, separation: float = 8.0, bounded: bool = False,
                         warped: bool = False, seed: int = 0) -> Dataset:
    """``n`` points in ``k`` equal Gaussian blobs of unit standard deviation in ``dim`` dimensions,
    centres at least ``separation`` apart; standardised (or scaled into [0.05, 0.95] with ``bounded``)."""
    rng = np.random.default_rng(seed)
    centres = separated_centres(k, dim, separation, rng)
    x, y = sk_datasets.make_blobs(n_samples=n, centers=centres, cluster_std=1.0, random_state=seed)
    if warped:
        x = warp(x / separation, seed) * separation
    if bounded:
        lo, hi = x.min(0), x.max(0)
        x = 0.05 + 0.9 * (x - lo) / np.maximum(hi - lo, 1e-12)
    else:
        x = StandardScaler().fit_transform(x)
    name = f"blobs-n{n}-d{dim}-k{k}" + ("-warped" if warped else "") + ("-01" if bounded else "")
    return Dataset(x=x.astype(np.float32), y=y.astype(np.int64), name=name)


def make_unit_blobs(n: int, dim: int, k: int, *, noise: float = 0.05, seed: int = 0) -> Dataset:
    """``k`` groups of ``n // k`` points in [0, 1]^dim: centres drawn uniformly from [0.1, 0.9]^dim, each
    point its group's centre plus N(0, noise^2) per coordinate, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, size=(k, dim))
    y = np.repeat(np.arange(k), n // k)
    x = np.clip(centres[y] + noise * rng.standard_normal((len(y), dim)), 0, 1)
    return Dataset(x=x.astype(np.float32), y=y, name=f"unit-blobs-n{len(y)}-d{dim}-k{k}")


def load_table(name: str, standardise: bool = True) -> Dataset:
    """One of scikit-learn's bundled tables (``TABLES``), each column standardised, or (``standardise=False``,
    named ``<name>-raw``) in its own units, as a user's file would hold it."""
    if name not in TABLES:
        raise DataError(f"unknown table {name!r}: expected one of {', '.join(TABLES)}")
    bunch = TABLES[name]()
    x = StandardScaler().fit_transform(bunch.data) if standardise else bunch.data
    return Dataset(x=x.astype(np.float32), y=bunch.target.astype(np.int64), name=name if standardise else f"{name}-raw")


def guide_example(seed: int = 0) -> Dataset:
    """The example of ``guides/cluster-your-own-data.md``: 4 groups of 50 points in 20 dimensions in [0, 1]."""
    data = make_unit_blobs(200, 20, 4, noise=0.05, seed=seed)
    return Dataset(x=data.x, y=data.y, name="guide-example")


def robustness_suite(full: bool = False) -> Dict[str, Dataset]:
    """The named data sets of the robustness study: a quick subset, or (``full``) all of them."""
    sets = {"guide-example": guide_example(),
            "blobs-n200-d10-k4": make_separated_blobs(200, 10, 4, seed=1),
            "blobs-n300-d5-k3-01": make_separated_blobs(300, 5, 3, bounded=True, seed=2),
            "iris": load_table("iris")}
    if not full:
        return sets
    for n, d, k in ((100, 2, 2), (1200, 10, 6), (2000, 50, 8), (500, 20, 5)):
        sets[f"blobs-n{n}-d{d}-k{k}"] = make_separated_blobs(n, d, k, seed=3)
        sets[f"blobs-n{n}-d{d}-k{k}-01"] = make_separated_blobs(n, d, k, bounded=True, seed=3)
    for n, d, k in ((600, 2, 3), (1000, 10, 5)):
        sets[f"blobs-n{n}-d{d}-k{k}-warped"] = make_separated_blobs(n, d, k, warped=True, seed=4)
    sets["arcs"] = make_arcs(n=2000, seed=0)
    for name in ("wine", "breast-cancer"):
        sets[name] = load_table(name)
    for name in TABLES:  # columns in their own units: wine's run from 0.13 to 1680, breast cancer's to 4254
        sets[f"{name}-raw"] = load_table(name, standardise=False)
    return sets
