"""k-means on the raw data: the baseline the deep models must beat.

    python experiments/archive/kmeans_baselines.py [--seeds 0 1 2] [--results DIR]

``arcs`` with K = 5 (data sets drawn with each seed, k-means seed 0) and ``digits`` with K = 10
(the pixels, k-means seeded by each seed), 10 k-means restarts each. Writes
``RESULTS/kmeans_baselines.json`` (``--results``, default ``experiments/results/archive``): the Hungarian
ACC and the NMI of each, and the command.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/common.py
from common import RESULTS, add_output_arguments, record_command, write_json  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

from pyro_mixvae.data import load_dataset, make_arcs  # noqa: E402
from pyro_mixvae.metrics import acc, nmi  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_output_arguments(p, fits=False)
    p.set_defaults(results=RESULTS / "archive")
    args = p.parse_args(argv)
    records = []
    for seed in args.seeds:
        d = make_arcs(seed=seed)
        pred = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(d.x)
        records.append({"data": "arcs", "seed": seed, "acc": acc(d.y, pred), "nmi": nmi(d.y, pred)})
        print(records[-1])
    digits = load_dataset("digits")
    for seed in args.seeds:
        pred = KMeans(n_clusters=10, n_init=10, random_state=seed).fit_predict(digits.x.reshape(len(digits.x), -1))
        records.append({"data": "digits", "seed": seed, "acc": acc(digits.y, pred), "nmi": nmi(digits.y, pred)})
        print(records[-1])
    write_json(args.results / "kmeans_baselines.json", [dict(r, command=record_command()) for r in records])


if __name__ == "__main__":
    main()
