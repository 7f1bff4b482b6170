"""The benchmark of issue 7: every model, five seeds, digits and Fashion-MNIST, with baselines.

    python experiments/benchmark.py [--data digits fashion-mnist] [--seeds 0 1 2 3 4]
                                    [--models vade gmvae vib-gmm factorial] [--no-baselines | --baselines-only]
                                    [--table-only] [--results DIR] [--runs DIR]

For each model and data set, ``mixvae fit MODEL --data DATA --seed S`` with the model's defaults
(Fashion-MNIST: the epochs scaled to this 2-core CPU machine, :data:`EXTRA`) into
``RUNS/benchmark/MODEL-DATA-seedS`` (``--runs``, default ``experiments/runs``) -- skipped when finished, resumed when
interrupted, one process with one thread -- so the script is simply started again after a stop.
Baselines on the same data, five seeds each: k-means and a diagonal GMM on the pixels and on
PCA-50 (scikit-learn), and AE + GMM (VaDE's paper initialisation alone:
``mixvae fit vade --epochs 0 --set gmm_assign=diag``).

Writes ``RESULTS/benchmark.json`` (``--results``, default ``experiments/results``) (one record per run: data, model, seed, acc, nmi,
ari, training ELBO, seconds, command) and ``RESULTS/benchmark.md``: mean ± std over
the seeds, the run with the best training ELBO (chosen without labels) and the published figures.
Fashion-MNIST is the 70k images of train and test together, as the published figures use it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np
from common import add_output_arguments, fmt, mean_std, record_command, run_fit, write_json

MODELS = ("vade", "gmvae", "vib-gmm", "factorial")
# per data set, what differs from a model's defaults
EXTRA = {
    "digits": {},  # every model with its defaults (GMVAE pretrains since its mixture start was added)
    "fashion-mnist": {  # 70k images: 5 pretraining + 10 SVI epochs per run (~15 min on one core)
        "vade": ["--pretrain-epochs", "5", "--epochs", "10"],
        "gmvae": ["--epochs", "10", "--set", "arch=mlp", "--set", "lam=2"],  # the conv nets of Table A.1 are GPU-sized
        "vib-gmm": ["--pretrain-epochs", "5", "--epochs", "10", "--set", "s_every=1", "--set", "s_step=0.5"],
        "factorial": ["--pretrain-epochs", "5", "--epochs", "10"],
    },
}
# published clustering accuracies on Fashion-MNIST (70k), with their sources
PUBLISHED = {
    "fashion-mnist": [
        ("k-means", 0.47, "DEC-keras results (github.com/XifengGuo/DEC-keras)"),
        ("AE + k-means", 0.606, "DEC-keras results"),
        ("DEC", 0.618, "DEC-keras results"),
        ("ClusterGAN", 0.63, "ClusterGAN README (github.com/sudiptodip15/ClusterGAN)"),
        ("N2D", 0.672, "McConville et al., N2D (ICPR 2020), Table 2"),
    ],
}
KEYS = ("acc", "nmi", "ari", "elbo", "train_seconds")


def model_runs(models, data, seeds, runs, fit_args=()) -> list:
    records = []
    for model in models:
        for seed in seeds:
            run = runs / "benchmark" / f"{model}-{data}-seed{seed}"
            try:
                r = run_fit(model, data, seed, run, [*EXTRA[data].get(model, []), *fit_args])
            except subprocess.CalledProcessError as e:  # e.g. a non-finite loss: report it, go on with the others
                print(f"  {model} {data} seed {seed} failed (exit {e.returncode}); see {run}", flush=True)
                continue
            records.append({"data": data, "model": model, "seed": seed, "acc": r["acc"], "nmi": r["nmi"],
                            "ari": r["ari"], "elbo": r["elbo"], "train_seconds": r["train_seconds"],
                            "epochs": r.get("epochs"), "command": r["command"]})
    return records


def ae_gmm_runs(data, seeds, runs, fit_args=()) -> list:
    """The autoencoder, then a diagonal GMM on its codes (VaDE's paper initialisation, not its t-SNE default)."""
    records = []
    for seed in seeds:
        run = runs / "benchmark" / f"ae-gmm-{data}-seed{seed}"
        pretrain = {"digits": [], "fashion-mnist": ["--pretrain-epochs", "5"]}[data]
        r = run_fit("vade", data, seed, run, ["--epochs", "0", *pretrain, "--set", "gmm_assign=diag", *fit_args])
        records.append({"data": data, "model": "AE + GMM", "seed": seed, "acc": r["acc"], "nmi": r["nmi"],
                        "ari": r["ari"], "elbo": None, "train_seconds": r["train_seconds"], "command": r["command"]})
    return records


def sklearn_baselines(data, seeds, done=frozenset(), keep=lambda records: None) -> list:
    """k-means and a diagonal GMM on the pixels and on PCA-50 of the same data; skips the
    (data, model, seed) in ``done`` and hands each new record to ``keep`` at once."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    from pyro_mixvae.data import load_dataset
    from pyro_mixvae.metrics import acc, ari, nmi

    d = load_dataset(data)
    x = d.x.reshape(len(d.x), -1).astype(np.float64)
    k = int(d.y.max()) + 1
    spaces = {"pixels": x, "PCA-50": PCA(50, random_state=0).fit_transform(x)}
    records = []
    for space, z in spaces.items():
        for name in ("k-means", "GMM"):
            for seed in seeds:
                if (data, f"{name} ({space})", seed) in done:
                    continue
                t0 = time.perf_counter()
                if name == "k-means":
                    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(z)
                else:
                    pred = GaussianMixture(k, covariance_type="diag", reg_covar=1e-3, random_state=seed,
                                           max_iter=200).fit(z).predict(z)
                records.append({"data": data, "model": f"{name} ({space})", "seed": seed, "acc": acc(d.y, pred),
                                "nmi": nmi(d.y, pred), "ari": ari(d.y, pred), "elbo": None,
                                "train_seconds": time.perf_counter() - t0,
                                "command": f"python experiments/benchmark.py --data {data} (sklearn)"})
                print(f"{data} {name} ({space}) seed {seed}: acc {records[-1]['acc']:.3f}", flush=True)
                keep(records[-1:])
    return records


def elbo_selected(rs) -> str:
    """'seed, acc' of the run with the best training ELBO (chosen without labels), or '' when none has one."""
    scored = [r for r in rs if r["elbo"] is not None]
    best = max(scored, key=lambda r: r["elbo"]) if scored else None
    return f"{best['seed']}, {best['acc']:.3f}" if best else ""


def table(records) -> str:
    lines = ["| data | model | seeds | acc | nmi | ari | training ELBO | seconds | ELBO-selected run: seed, acc |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for data in dict.fromkeys(r["data"] for r in records):
        for model in dict.fromkeys(r["model"] for r in records if r["data"] == data):
            rs = [r for r in records if r["data"] == data and r["model"] == model]
            chosen = elbo_selected(rs) or "-"
            lines.append(f"| {data} | {model} | {len(rs)} | " + " | ".join(mean_std([r[k] for r in rs]) for k in KEYS)
                         + f" | {chosen} |")
        for name, value, source in PUBLISHED.get(data, []):
            lines.append(f"| {data} | {name} (published) | - | {fmt(value)} | | | | | {source} |")
    return "\n".join(lines)


# the README's results table: (data, model in benchmark.json, the row's label)
README_ROWS = [("digits", "vade", "VaDE"), ("digits", "gmvae", "GMVAE"), ("digits", "vib-gmm", "VIB-GMM"),
               ("digits", "factorial", "factorial (I = 1)"), ("digits", "k-means (pixels)", "k-means on pixels"),
               ("fashion-mnist", "vade", "VaDE, 5 + 10 epochs †"),
               ("fashion-mnist", "gmvae", "GMVAE (λ = 2, mlp), 10 epochs †"),
               ("fashion-mnist", "vib-gmm", "VIB-GMM, 5 + 10 epochs †"),
               ("fashion-mnist", "factorial", "factorial, 5 + 10 epochs †"),
               ("fashion-mnist", "k-means (pixels)", "k-means on pixels")]
DATA_NAMES = {"digits": "digits", "fashion-mnist": "Fashion-MNIST (70k)"}


def readme_table(records) -> str:
    """The README's table from ``records``: acc and nmi as mean ± sd, and the ELBO-selected seed's acc."""
    lines = ["| data | model | acc | nmi | ELBO-selected: seed, acc |", "| --- | --- | --- | --- | --- |"]
    for data, model, label in README_ROWS:
        rs = [r for r in records if r["data"] == data and r["model"] == model]
        if not rs:
            continue
        lines.append(f"| {DATA_NAMES[data]} | {label} | {mean_std([r['acc'] for r in rs])} | "
                     f"{mean_std([r['nmi'] for r in rs])} | {elbo_selected(rs)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=["digits", "fashion-mnist"], choices=list(EXTRA))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--baselines-only", action="store_true", help="the baselines and AE + GMM, no model runs")
    p.add_argument("--table-only", action="store_true", help="rewrite benchmark.md from benchmark.json")
    add_output_arguments(p)
    args = p.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / "benchmark.json"
    records = json.loads(path.read_text()) if path.exists() else []

    def keep(new):  # merge and write at once, so that a stop keeps what finished
        nonlocal records
        done = {(r["data"], r["model"], r["seed"]) for r in new}
        records = [r for r in records if (r["data"], r["model"], r["seed"]) not in done] + new
        write_json(path, records)

    if not args.table_only:
        for data in args.data:
            if not args.no_baselines:
                sklearn_baselines(data, args.seeds, {(r["data"], r["model"], r["seed"]) for r in records}, keep)
                keep(ae_gmm_runs(data, args.seeds, args.runs, args.fit_args))
            for model in ([] if args.baselines_only else args.models):
                keep(model_runs([model], data, args.seeds, args.runs, args.fit_args))
    text = table(records)
    (args.results / "benchmark.md").write_text(
        f"# Benchmark\n\nLast written by `{record_command()}` (runs in {args.runs / 'benchmark'}; benchmark.json "
        "keeps the records of earlier invocations and the command of each run)\n\n" + text + "\n")
    (args.results / "benchmark_readme.md").write_text(readme_table(records) + "\n")
    print(text)


if __name__ == "__main__":
    main()
