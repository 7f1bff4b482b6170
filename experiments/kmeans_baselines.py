"""k-means on the raw data: the baseline the deep models must beat.

    python experiments/kmeans_baselines.py

`arcs` with K = 5 (seeds 0-2 of the data set) and `digits` with K = 10 (pixels, seeds 0-2 of
k-means). Writes experiments/results/kmeans_baselines.json with the Hungarian ACC and NMI.
"""
import json
from pathlib import Path

from sklearn.cluster import KMeans

from pyro_mixvae.data import load_dataset, make_arcs
from pyro_mixvae.metrics import acc, nmi

records = []
for seed in (0, 1, 2):
    d = make_arcs(seed=seed)
    pred = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(d.x)
    records.append({"data": "arcs", "seed": seed, "acc": acc(d.y, pred), "nmi": nmi(d.y, pred)})
    print(records[-1])
digits = load_dataset("digits")
for seed in (0, 1, 2):
    pred = KMeans(n_clusters=10, n_init=10, random_state=seed).fit_predict(digits.x.reshape(len(digits.x), -1))
    records.append({"data": "digits", "seed": seed, "acc": acc(digits.y, pred), "nmi": nmi(digits.y, pred)})
    print(records[-1])
out = Path(__file__).resolve().parent / "results" / "kmeans_baselines.json"
out.parent.mkdir(exist_ok=True)
out.write_text(json.dumps(records, indent=2) + "\n")
