"""Robustness study (issue 17): does a clear clustering survive each model's defaults?

    python experiments/robustness.py [--full] [--models vade gmvae vib-gmm factorial] [--seeds 0 1 2]
                                     [--set KEY=VALUE --likelihood NAME --results DIR]

For every data set of :func:`pyro_mixvae.synthetic.robustness_suite` (the quick subset, or all of
it with ``--full``), every model with its defaults (K = the number of groups, ``likelihood="auto"``)
and every seed: the clusters used and acc / nmi at the start (after pretraining, where the model
pretrains) and at the end, the collapse warning's epoch if any, and k-means' acc on the same data
(scikit-learn, n_init=10, random_state=seed). One thread; each finished run is appended to
``experiments/results/robustness[-full].jsonl`` and skipped when the script is started again.
Writes ``robustness[-full].md``: per run, and the check of issue 17 (all K clusters used at the end
whenever the start used them, and the end's acc not below the start's by more than 0.02 or at
least k-means').
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from pyro_mixvae.infer.train import TrainConfig, fit, seed_everything
from pyro_mixvae.metrics import acc as hungarian_acc
from pyro_mixvae.models import build
from pyro_mixvae.nets import resolve_likelihood
from pyro_mixvae.evaluation import evaluate
from pyro_mixvae.synthetic import robustness_suite

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("vade", "gmvae", "vib-gmm", "factorial")


def build_for(model_name: str, data, seed: int, settings: dict | None = None, likelihood: str = "auto"):
    """``model_name`` with its defaults (and ``settings``) for ``data``, K = its number of groups, its
    initial weights drawn from ``seed`` as mixvae fit draws them; returns (model, likelihood)."""
    likelihood = resolve_likelihood(likelihood, data.x)
    seed_everything(seed)
    model = build(model_name, data.x.shape[1:], len(np.unique(data.y)), likelihood, settings)  # it checks them
    return model, likelihood


def one_run(model_name: str, data, seed: int, settings: dict | None = None, likelihood: str = "auto") -> dict:
    """Train ``model_name`` with its defaults (and ``settings``) on ``data``; the record of issue 17's check."""
    k = len(np.unique(data.y))
    model, likelihood = build_for(model_name, data, seed, settings, likelihood)
    t0 = time.perf_counter()
    history = fit(model, torch.as_tensor(data.x), data.y, config=TrainConfig(seed=seed, device="cpu"), progress=False)
    end = evaluate(model, torch.as_tensor(data.x), data.y)
    start = history.pretrain if "acc" in history.pretrain else history.records[0]
    kmeans = KMeans(k, n_init=10, random_state=seed).fit_predict(data.x)
    return {"data": data.name, "model": model_name, "seed": seed, "K": k, "likelihood": likelihood,
            "start_from": "pretraining" if "acc" in history.pretrain else "epoch 1",
            "start_acc": start["acc"], "start_used": start["clusters_used"],
            "end_acc": end["acc"], "end_nmi": end["nmi"], "end_used": end["clusters_used"], "end_elbo": end["elbo"],
            "collapse": history.collapse, "kmeans_acc": hungarian_acc(data.y, kmeans),
            "seconds": time.perf_counter() - t0, **({"settings": settings} if settings else {})}


def passes(r: dict) -> bool:
    """Issue 17's check: all K used at the end when the start used them; acc kept within 0.02 or >= k-means'."""
    kept_clusters = r["end_used"] == r["K"] or r["start_used"] < r["K"]
    kept_acc = r["end_acc"] >= r["start_acc"] - 0.02 or r["end_acc"] >= r["kmeans_acc"]
    return bool(kept_clusters and kept_acc)


def table(records: list, command: str) -> str:
    lines = [f"Written by `{command}`.", "",
             "| data | likelihood | model | seed | K | start (from) acc / used | end acc / nmi / used | k-means acc "
             "| collapse | check |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        collapse = f"epoch {r['collapse']['epoch']}" if r["collapse"] else ""
        lines.append(f"| {r['data']} | {r.get('likelihood', '')} | {r['model']} | {r['seed']} | {r['K']} | "
                     f"{r['start_acc']:.3f} / {r['start_used']}"
                     f" ({r['start_from']}) | {r['end_acc']:.3f} / {r['end_nmi']:.3f} / {r['end_used']} | "
                     f"{r['kmeans_acc']:.3f} | {collapse} | {'pass' if passes(r) else 'FAIL'} |")
    ok = sum(passes(r) for r in records)
    lines += ["", f"{ok} of {len(records)} runs pass the check."]
    return "\n".join(lines) + "\n"


def run_all(sets: dict, args, log: Path, settings: dict | None = None, likelihood: str = "auto") -> list:
    """:func:`one_run` for every set of ``sets`` (those named in ``args.sets``, if any), ``args.models`` and
    ``args.seeds``, each record appended to ``log`` as it finishes; records found in ``log`` are not run
    again. Returns all records, found and new."""
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    seen = {(r["data"], r["model"], r["seed"]) for r in done}
    for name, data in sets.items():
        if args.sets and name not in args.sets:
            continue
        for model_name in args.models:
            for seed in args.seeds:
                if (name, model_name, seed) in seen:
                    continue
                record = one_run(model_name, data, seed, settings, likelihood)
                print(json.dumps(record), flush=True)
                with open(log, "a") as f:
                    f.write(json.dumps(record) + "\n")
                done.append(record)
    return done


def add_set_argument(parser) -> None:
    """``--set KEY=VALUE``, repeatable: a model setting instead of its default (read by :func:`settings_of`)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a model setting instead of its default (as mixvae fit --set); use with --results")


def settings_of(args) -> dict:
    """The ``--set`` values as a dict of setting names to their strings (the models parse them)."""
    return dict(a.split("=", 1) for a in args.set)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sets", nargs="+", default=None, help="only these data sets of the suite")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the table and the records go "
                        "(default: experiments/results); records found there are not run again")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the records, run nothing")
    add_set_argument(parser)
    parser.add_argument("--likelihood", default="auto", help="as mixvae fit --likelihood; use with --results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    stem = "robustness-full" if args.full else "robustness"
    args.results.mkdir(parents=True, exist_ok=True)
    suite = {} if args.table_only else robustness_suite(full=args.full)
    done = run_all(suite, args, args.results / f"{stem}.jsonl", settings_of(args), args.likelihood)
    # the command that makes the records (a --table-only rewrite names it, not itself)
    command = "python experiments/robustness.py " + " ".join(a for a in sys.argv[1:] if a != "--table-only")
    (args.results / f"{stem}.md").write_text(table(done, command.strip()))


if __name__ == "__main__":
    main()
