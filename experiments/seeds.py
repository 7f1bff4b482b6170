"""One model on one data set with its defaults, several seeds: the README's per-model figures.

    python experiments/seeds.py MODEL [--data digits] [--seeds 0 1 2] [-- EXTRA mixvae fit ARGS]

Runs ``mixvae fit MODEL --data DATA --seed S`` for each seed into ``experiments/runs/MODEL-DATA-seedS``
(skipped when finished, resumed when interrupted; one process, one thread) and writes
``experiments/results/<model>_<data>.json`` (the runs' metrics.json plus the command) and
``experiments/results/<model>_<data>.md`` (a table with the mean).
"""
from __future__ import annotations

import argparse
import statistics

from common import RESULTS, RUNS, fmt, run_fit, write_json

KEYS = ("acc", "acc_cluster_label", "nmi", "ari", "elbo", "clusters_used", "train_seconds")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--data", default="digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args, extra = p.parse_known_args()
    args.extra = [a for a in extra if a != "--"]  # further arguments for mixvae fit (after --)
    records = [run_fit(args.model, args.data, seed, RUNS / f"{args.model}-{args.data}-seed{seed}", args.extra)
               for seed in args.seeds]
    name = f"{args.model.replace('-', '_')}_{args.data.replace('-', '_')}"
    write_json(RESULTS / f"{name}.json", records)
    lines = ["| seed | " + " | ".join(KEYS) + " |", "|" + " --- |" * (len(KEYS) + 1)]
    for r in records:
        lines.append(f"| {r['seed']} | " + " | ".join(fmt(r[k]) for k in KEYS) + " |")
    lines.append("| mean | " + " | ".join(fmt(statistics.mean(r[k] for r in records)) for k in KEYS) + " |")
    lines += ["", "Commands:", ""] + [f"* `{r['command']}`" for r in records]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
