"""Which mixture start, told without labels? (issue 31, breast cancer)

    python experiments/start_rules.py --data breast-cancer --seeds 0 1 2 --rules tsne-data tsne

For each seed and start rule (``gmm_assign``), VaDE's estimator with its defaults and ``epochs=0``: the
pretraining and the mixture start, no SVI. Printed per run: the acc of the partition that decided the start
(``start_responsibilities``: the consensus on the t-SNE embeddings), the acc of the model's own start (its
posterior once the components' diagonal moments are set in the codes), and two label-free readings a rule
could choose by: the agreement (ARI) of those two partitions, and the mean ELBO per point (``score``).
``--data`` is a name ``mixvae fit`` knows or a set of the robustness suite (saved by
``experiments/stable_answer.py`` under ``~/mixvae-runs/stable_answer/data``). The lines are appended with the
command to ``RESULTS/start_rules.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import record_command  # noqa: E402

SUITE_DATA = Path.home() / "mixvae-runs" / "stable_answer" / "data"


def one_start(x: np.ndarray, y: np.ndarray, seed: int, rule: str) -> dict:
    from pyro_mixvae.estimator import VaDE
    from pyro_mixvae.metrics import acc
    est = VaDE(n_clusters=int(np.unique(y).size), epochs=0, random_state=seed, gmm_assign=rule).fit(x)
    record = {"seed": seed, "rule": rule, "model start": acc(y, est.labels_), "score": est.score(x)}
    decided = est.model_.start_responsibilities
    if decided is not None:
        decided = decided.numpy()
        kept = ~np.isnan(decided).any(1)  # a start decided on a subset (t-SNE of the codes beyond 5,000 points)
        labels = decided[kept].argmax(1)
        record["decided"] = acc(y[kept], labels)
        record["agreement"] = adjusted_rand_score(labels, est.labels_[kept])
    return record


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="breast-cancer")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rules", nargs="+", default=["tsne-data", "tsne"])
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    from pyro_mixvae.data import load_dataset
    torch.set_num_threads(1)
    path = SUITE_DATA / f"{args.data}.npz"
    ds = load_dataset(str(path) if path.exists() else args.data)
    x = np.asarray(ds.x, dtype=np.float32)
    lines = [f"\n`{record_command()}` (one thread)\n", "| seed | rule | decided acc | model start acc | agreement (ARI) "
             "| ELBO per point |", "| --- | --- | --- | --- | --- | --- |"]
    for seed in args.seeds:
        for rule in args.rules:
            r = one_start(x, ds.y, seed, rule)
            lines.append(f"| {seed} | {rule} | {r.get('decided', float('nan')):.3f} | {r['model start']:.3f} | "
                         f"{r.get('agreement', float('nan')):.3f} | {r['score']:.3f} |")
            print(lines[-1], flush=True)
    with open(args.results / "start_rules.md", "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
