"""Issue 17's check on real-valued sets that the robustness suite does not contain.

    python experiments/other_sets.py [--sets NAME ...] [--models vade gmvae vib-gmm factorial] [--seeds 0 1 2]
                                     [--results DIR]

The suite (``pyro_mixvae.synthetic.robustness_suite``) was built alongside the defaults; these sets
were not, and test whether what the defaults keep there is kept elsewhere. Each model with its defaults
(K = the number of groups, ``likelihood="auto"``), one thread, the record and the check of
``robustness.py`` (:func:`robustness.one_run`, :func:`robustness.passes`):

* ``aniso`` -- scikit-learn's anisotropic blobs (its k-means demonstration: three blobs through a
  shearing linear map), 1,500 points in 2-D, standardised;
* ``varied`` -- three 2-D blobs of standard deviations 1.0, 2.5 and 0.5, 1,500 points, standardised;
* ``unequal`` -- three 5-D blobs of 500, 100 and 20 points, standardised;
* ``digits-pca16`` -- an embedding: the digits' 16 leading principal components, standardised, K = 10;
* ``moons`` -- two interleaved half-moons, 1,000 points (a set no mixture of Gaussians fits; k-means
  about 0.75);
* ``units`` -- four 6-D blobs, 800 points, the columns multiplied by 1e-3 .. 1e3 and shifted, not
  standardised: a table in mixed units;
* ``blobs-n12000`` -- six 10-D blobs of 2,000 points each, standardised: real-valued data from 10,000
  points up (``gaussian``, eq. 2's per-point variance, and the full-size schedules).

Appends each finished run to ``RESULTS/other_sets.jsonl`` (found runs are skipped) and writes
``RESULTS/other_sets.md``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn import datasets as sk_datasets
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from robustness import MODELS, RESULTS, add_set_argument, run_all, settings_of, table


@dataclass
class Dataset:
    """A named set with its groups, as the robustness suite's sets are read here: ``x`` float32 ``(N, D)``,
    ``y`` int64 ``(N,)``."""

    x: np.ndarray
    y: np.ndarray
    name: str


def _standardised(x, y, name: str) -> Dataset:
    return Dataset(x=StandardScaler().fit_transform(x).astype(np.float32), y=np.asarray(y, dtype=np.int64), name=name)


def other_sets() -> dict:
    """The sets of the module docstring, by name (each the same on every call)."""
    sets = {}
    x, y = sk_datasets.make_blobs(1500, centers=3, random_state=170)
    sets["aniso"] = _standardised(x @ np.array([[0.6, -0.6], [-0.4, 0.8]]), y, "aniso")
    x, y = sk_datasets.make_blobs(1500, centers=3, cluster_std=[1.0, 2.5, 0.5], random_state=170)
    sets["varied"] = _standardised(x, y, "varied")
    x, y = sk_datasets.make_blobs([500, 100, 20], n_features=5, center_box=(-10, 10), random_state=3)
    sets["unequal"] = _standardised(x, y, "unequal")
    digits = sk_datasets.load_digits()
    sets["digits-pca16"] = _standardised(PCA(16, random_state=0).fit_transform(digits.data), digits.target,
                                         "digits-pca16")
    x, y = sk_datasets.make_moons(1000, noise=0.05, random_state=0)
    sets["moons"] = _standardised(x, y, "moons")
    x, y = sk_datasets.make_blobs(800, n_features=6, centers=4, center_box=(-8, 8), random_state=5)
    x = x * np.array([1e-3, 1e-2, 1.0, 10.0, 1e2, 1e3]) + np.array([0.0, 5.0, -3.0, 1e3, 0.0, 2e4])
    sets["units"] = Dataset(x=x.astype(np.float32), y=y.astype(np.int64), name="units")
    x, y = sk_datasets.make_blobs(12000, n_features=10, centers=6, center_box=(-8, 8), random_state=6)
    sets["blobs-n12000"] = _standardised(x, y, "blobs-n12000")
    return sets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=None, help="only these sets")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the records, run nothing")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.results.mkdir(parents=True, exist_ok=True)
    done = run_all({} if args.table_only else other_sets(), args, args.results / "other_sets.jsonl",
                   settings_of(args))
    command = "python experiments/other_sets.py " + " ".join(a for a in sys.argv[1:] if a != "--table-only")
    (args.results / "other_sets.md").write_text(table(done, command.strip()))


if __name__ == "__main__":
    main()
