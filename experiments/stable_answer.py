"""One command, one answer (issue 31): a default ``mixvae fit`` over seeds and thread counts.

    python experiments/stable_answer.py --data digits [--model vade] [--seeds 0 ... 9] [--threads 1 2]
                                        [--label NAME] [--checkout DIR] [--jobs 2] [--runs DIR] [--results DIR]

Runs ``OMP_NUM_THREADS=T mixvae fit MODEL --data DATA --seed S`` for every seed S and thread count T
(a different thread count stands in for another machine's floating-point order) into
``RUNS/LABEL/<data>-<model>-s<S>-t<T>`` (runs already recorded or finished skipped, interrupted ones
resumed; ``--jobs`` at a time) and appends each run's record to ``RESULTS/stable_answer.jsonl``: acc and nmi at the start
(after pretraining) and at the end, the training ELBO, the wall time. ``DATA`` is a name ``mixvae fit``
knows (``digits``) or a set of the robustness suite (``iris``, ``wine``, ``breast-cancer``, ``arcs``,
``guide-example``, ...) or ``fashion-mnist-5k`` (5,000 training images drawn with seed 0), saved once as
``RUNS/data/<name>.npz`` and passed as that file.
``--checkout DIR`` runs another checkout's package (``PYTHONPATH=DIR``, e.g. ``git worktree add
--detach ../before COMMIT``) under ``--label``: the default before and after, the same way.

``python experiments/stable_answer.py --summarise`` writes ``RESULTS/stable_answer.md``: per data set,
model and label the mean ± sd and min - max of acc over all the runs, the start's mean, the
ELBO-selected run, and beside them k-means (n_init=10) and a full-covariance GaussianMixture
(n_init=10) on the same data (their mean ± sd over the same seeds).
RUNS defaults to ``~/mixvae-runs/stable_answer`` (outside the checkout, where a new checkout leaves it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import record_command  # noqa: E402

RUNS = Path.home() / "mixvae-runs" / "stable_answer"


SUBSETS = {"fashion-mnist-5k": ("fashion-mnist", 5000)}  # name: (set, images drawn from its training split, rng 0)


def suite_or_subset(name: str):
    """A set of the robustness suite, or a subset of an image set drawn once (see SUBSETS); None otherwise."""
    from pyro_mixvae.data import Dataset, load_dataset
    from pyro_mixvae.synthetic import robustness_suite
    if name in SUBSETS:
        full, n = SUBSETS[name]
        data = load_dataset(full, split="train")
        pick = np.random.default_rng(0).choice(len(data.x), n, replace=False)
        return Dataset(x=data.x[pick], y=data.y[pick], name=name)
    return robustness_suite(full=True).get(name)


def data_argument(name: str, runs: Path) -> str:
    """What ``--data`` gets: the name itself, or a suite set or subset saved as an .npz file."""
    path = runs / "data" / f"{name}.npz"
    if path.exists():
        return str(path)
    data = suite_or_subset(name)
    if data is None:
        return name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=data.x, y=data.y)
    return str(path)


def labelled_data(name: str):
    from pyro_mixvae.data import load_dataset
    data = suite_or_subset(name)
    return data if data is not None else load_dataset(name)


def recorded(args, seed: int, threads: int):
    """The record of this run already in ``RESULTS/stable_answer.jsonl`` (a run that landed on an earlier
    machine, whose directory is gone), or None."""
    results = args.results / "stable_answer.jsonl"
    key = {"data": args.data, "model": args.model, "label": args.label, "seed": seed, "threads": threads}
    for line in results.read_text().splitlines() if results.exists() else []:
        record = json.loads(line)
        if all(record.get(k) == v for k, v in key.items()):
            return record
    return None


def one(args, seed: int, threads: int) -> dict:
    if (landed := recorded(args, seed, threads)) is not None:
        print(f"{args.data}-{args.model}-s{seed}-t{threads} [{args.label}]: recorded, acc {landed['acc']:.4f}", flush=True)
        return landed
    run = args.runs / args.label / f"{args.data}-{args.model}-s{seed}-t{threads}"
    metrics_file = run / "metrics.json"
    done = metrics_file.exists() and json.loads(metrics_file.read_text()).get("complete", False)
    wall = None
    if not done:
        cmd = [sys.executable, "-m", "pyro_mixvae", "fit", args.model, "--data", data_argument(args.data, args.runs),
               "--seed", str(seed), "--out", str(run), "--quiet", *args.fit_args]
        if (run / "checkpoint.pt").exists():
            cmd.append("--resume")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": str(args.checkout or ROOT)}
        t0 = time.perf_counter()
        # run from the checkout: `python -m` puts the working directory first on the path
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=args.checkout or ROOT)
        wall = time.perf_counter() - t0
    m = json.loads(metrics_file.read_text())
    record = {"data": args.data, "model": args.model, "label": args.label, "seed": seed, "threads": threads,
              "acc": m["acc"], "nmi": m["nmi"], "elbo": m.get("elbo"), "start_acc": (m.get("pretrain") or {}).get("acc"),
              "train_seconds": m.get("train_seconds"), "wall_seconds": wall,
              "command": f"OMP_NUM_THREADS={threads} mixvae fit {args.model} --data {args.data} --seed {seed} "
                         + " ".join(args.fit_args), "script": record_command()}
    if not done:
        with open(args.results / "stable_answer.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
    print(f"{run.name} [{args.label}]: start {record['start_acc']}, acc {record['acc']:.4f}", flush=True)
    return record


FULL_GMM_MAX_DIMS = 100  # above: no full-covariance baseline (784 pixels: 10 covariances of 784 x 784, not a table)


def baselines(name: str, seeds) -> dict:
    """k-means and, up to FULL_GMM_MAX_DIMS values per point, a full-covariance GaussianMixture (each n_init=10,
    random_state=seed) on the same data."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture
    from pyro_mixvae.metrics import acc
    data = labelled_data(name)
    x = data.x.reshape(len(data.x), -1).astype(np.float64)
    k = len(np.unique(data.y))
    out = {}
    makers = {"k-means": lambda s: KMeans(k, n_init=10, random_state=s)}
    if x.shape[1] <= FULL_GMM_MAX_DIMS:
        makers["GaussianMixture (full, n_init=10)"] = lambda s: GaussianMixture(
            k, covariance_type="full", n_init=10, random_state=s, reg_covar=1e-4)
    for label, make in makers.items():
        out[label] = [acc(data.y, make(s).fit(x).predict(x)) for s in seeds]
    return out


def summarise(results: Path) -> None:
    records = [json.loads(line) for line in (results / "stable_answer.jsonl").read_text().splitlines() if line]
    latest = {}
    for r in records:  # a run recorded twice: the last record
        latest[(r["data"], r["model"], r["label"], r["seed"], r["threads"])] = r
    records = list(latest.values())
    lines = ["# One command, one answer: default runs over seeds and thread counts (issue 31)", "",
             "Made by `python experiments/stable_answer.py --data DATA [--label L --checkout DIR]` per row, then "
             "`python experiments/stable_answer.py --summarise`. Each row: `OMP_NUM_THREADS=T mixvae fit MODEL "
             "--data DATA --seed S` over the seeds and thread counts listed; acc as mean ± sd and min - max over "
             "all of them; start: acc after pretraining (the mixture start); ELBO-selected: the run with the best "
             "training ELBO, chosen without labels. Baselines on the same data: scikit-learn with n_init=10, "
             "random_state = the same seeds. (Wall times are in the records but not here: these runs shared a loaded machine.)", "",
             "| data | model | label | runs (seeds x threads) | acc mean ± sd | min - max | start mean | end - start | "
             "ELBO-selected acc |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups = sorted({(r["data"], r["model"], r["label"]) for r in records})
    done_baselines = set()
    for data, model, label in groups:
        rs = [r for r in records if (r["data"], r["model"], r["label"]) == (data, model, label)]
        accs = [r["acc"] for r in rs]
        starts = [r["start_acc"] for r in rs if r["start_acc"] is not None]
        best = max(rs, key=lambda r: r["elbo"] if r["elbo"] is not None else -np.inf)
        seeds = sorted({r["seed"] for r in rs})
        threads = sorted({r["threads"] for r in rs})
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        gain = statistics.mean(r["acc"] - r["start_acc"] for r in rs if r["start_acc"] is not None) if starts else None
        lines.append(f"| {data} | {model} | {label} | {len(rs)} ({seeds[0]}-{seeds[-1]} x {threads}) | "
                     f"{statistics.mean(accs):.3f} ± {sd:.3f} | {min(accs):.3f} - {max(accs):.3f} | "
                     + (f"{statistics.mean(starts):.3f} | {gain:+.3f}" if starts else " | ")
                     + f" | {best['acc']:.3f} (s{best['seed']} t{best['threads']}) |")
        if data not in done_baselines:
            done_baselines.add(data)
            every_seed = sorted({r["seed"] for r in records if r["data"] == data})  # of all labels on these data
            for name, values in baselines(data, every_seed).items():
                lines.append(f"| {data} | {name} | | {len(values)} seeds | {statistics.mean(values):.3f} ± "
                             f"{statistics.stdev(values) if len(values) > 1 else 0:.3f} | {min(values):.3f} - "
                             f"{max(values):.3f} | | | |")
    (results / "stable_answer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--model", default="vade")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--label", default="default")
    parser.add_argument("--checkout", type=Path, help="run this checkout's package instead (PYTHONPATH)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fit-args", type=str.split, default=[], help="appended to every mixvae fit")
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--summarise", action="store_true")
    args = parser.parse_args()
    if args.summarise:
        return summarise(args.results)
    print(record_command(), flush=True)
    jobs = [(s, t) for s in args.seeds for t in args.threads]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda st: one(args, *st), jobs))


if __name__ == "__main__":
    main()
