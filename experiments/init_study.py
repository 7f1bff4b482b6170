"""The initialisation study: which clustering of the autoencoder's codes starts the mixture best.

    python experiments/init_study.py codes   [--model vade] [--data digits] [--seeds 0 1 2 3 4] [--pretrain-epochs N]
    python experiments/init_study.py compare [--data digits] [--seeds 0 1 2 3 4] [--restarts 6] [--points 5000]

``codes`` pretrains each seed's autoencoder exactly as training does, through the CLI
(``mixvae fit MODEL --data DATA --seed S --epochs 0``: pretraining and the start, no SVI), into
``RUNS/init-study/MODEL-DATA-seedS`` (skipped when it exists), and saves the codes E q(z|x) of all
points there as ``codes.npz``.

``compare`` clusters each seed's codes (K = the number of classes) and scores each clustering by
the Hungarian accuracy against the labels (labels score, never choose):

* ``diag GMM``: a diagonal GMM on the codes, 10 restarts (VaDE's paper initialisation);
* ``full GMM (standardised)``: a full-covariance GMM on the standardised codes;
* ``t-SNE + GMM``: a full GMM on a 3-D t-SNE of the codes (PCA start; at most ``--points`` codes, a
  random subset beyond), ``--restarts`` single starts (random states 0..R-1); per start its acc, its
  mean log-likelihood and the silhouette of its labels on the embedding; the start that the
  likelihood keeps and the one the silhouette keeps (the library's rule);
* ``handover``: the silhouette-kept labels turned into diagonal Gaussians in the codes' units
  (what the model starts from) and into full Gaussians, each assigning all codes by density.

Writes ``RESULTS/init_study_<data>.json`` (one record per seed, and the command) and
``RESULTS/init_study_<data>.md`` (a table and the command). Interpreted in docs/studies/tsne_init.md.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from common import add_output_arguments, fmt, record_command, run_fit, write_json
from scipy.stats import multivariate_normal
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture

from pyro_mixvae.data import load_dataset
from pyro_mixvae.infer.pretrain import encode_means
from pyro_mixvae.metrics import acc
from pyro_mixvae.runs import load_run


def study_runs(args, seed):
    return args.runs / "init-study" / f"{args.model}-{args.data}-seed{seed}"


def make_codes(args) -> None:
    extra = ["--epochs", "0"] + (["--pretrain-epochs", str(args.pretrain_epochs)] if args.pretrain_epochs else [])
    data = load_dataset(args.data)
    for seed in args.seeds:
        run = study_runs(args, seed)
        run_fit(args.model, args.data, seed, run, extra + args.extra + args.fit_args)
        model, _ = load_run(run)
        with torch.no_grad():
            z = encode_means(model.encoder, torch.as_tensor(data.x)).numpy()
        np.savez(run / "codes.npz", z=z, y=np.asarray(data.y))
        print(f"seed {seed}: codes {z.shape} -> {run / 'codes.npz'}", flush=True)


def handover(z, subset, labels, k, covariance):
    """Gaussians (diagonal or full, in the codes' units) fitted to each label's codes of the subset,
    then every code assigned to the one of highest density: what the model starts from."""
    scores = []
    for c in range(k):
        zc = z[subset][labels == c]
        if len(zc) < 2:
            scores.append(np.full(len(z), -np.inf))
            continue
        cov = np.diag(zc.var(0) + 1e-4) if covariance == "diag" else np.cov(zc.T) + 1e-4 * np.eye(z.shape[1])
        scores.append(np.log(len(zc) / len(subset)) + multivariate_normal(zc.mean(0), cov).logpdf(z))
    return np.argmax(scores, 0)


def tsne_starts(z, y, k, restarts):
    """Full-GMM starts on one 3-D t-SNE embedding: acc, likelihood and silhouette of each."""
    perplexity = min(30.0, max(1.0, (len(z) - 1) / 3))
    embedded = TSNE(min(3, z.shape[1]), init="pca", perplexity=perplexity, random_state=0).fit_transform(z)
    starts = []
    for state in range(restarts):
        gmm = GaussianMixture(k, covariance_type="full", random_state=state, max_iter=200).fit(embedded)
        labels = gmm.predict(embedded)
        starts.append({"acc": acc(y, labels), "loglik": float(gmm.score(embedded)),
                       "silhouette": float(silhouette_score(embedded, labels)) if len(set(labels)) > 1 else -1.0,
                       "labels": labels})
    return starts


def compare_seed(z, y, seed, args) -> dict:
    k = int(y.max()) + 1
    z = z.astype(np.float64)
    zs = (z - z.mean(0)) / np.maximum(z.std(0), 1e-12)
    out = {"seed": seed, "points": len(z)}
    out["diag GMM"] = acc(y, GaussianMixture(k, covariance_type="diag", n_init=10, reg_covar=1e-4,
                                             random_state=seed).fit(z).predict(z))
    out["full GMM (standardised)"] = acc(y, GaussianMixture(k, covariance_type="full", n_init=10, reg_covar=1e-4,
                                                            random_state=seed).fit(zs).predict(zs))
    idx = np.arange(len(z))
    if len(z) > args.points:
        idx = np.sort(np.random.default_rng(seed).choice(len(z), args.points, replace=False))
    starts = tsne_starts(z[idx], y[idx], k, args.restarts)
    out["t-SNE starts"] = [round(s["acc"], 4) for s in starts]
    out["t-SNE kept by likelihood"] = max(starts, key=lambda s: s["loglik"])["acc"]
    kept = max(starts, key=lambda s: s["silhouette"])
    out["t-SNE kept by silhouette"] = kept["acc"]
    for covariance in ("diag", "full"):
        out[f"handover ({covariance})"] = acc(y, handover(z, idx, kept["labels"], k, covariance))
    return out


COLUMNS = ("diag GMM", "full GMM (standardised)", "t-SNE kept by likelihood", "t-SNE kept by silhouette",
           "handover (diag)", "handover (full)")


def compare(args) -> None:
    records = []
    for seed in args.seeds:
        codes = study_runs(args, seed) / "codes.npz"
        if not codes.exists():
            raise SystemExit(f"{codes} is missing: run `python experiments/init_study.py codes` with the same "
                             "--model, --data, --seeds and --runs first")
        with np.load(codes, allow_pickle=False) as f:
            z, y = f["z"], f["y"]
        records.append(compare_seed(z, y, seed, args))
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in records[-1].items()}, flush=True)
    command = record_command()
    name = f"init_study_{args.data.replace('-', '_')}"
    write_json(args.results / f"{name}.json", {"command": command, "records": records})
    lines = [f"# Initialisation study: {args.data}, codes of {args.model}'s autoencoder", "",
             f"Generated by `{command}`.", "",
             "| seed | " + " | ".join(COLUMNS) + " | t-SNE starts |", "|" + " --- |" * (len(COLUMNS) + 2)]
    for r in records:
        lines.append(f"| {r['seed']} | " + " | ".join(fmt(r[c]) for c in COLUMNS)
                     + " | " + " ".join(f"{a:.3f}" for a in r["t-SNE starts"]) + " |")
    lines.append("| mean | " + " | ".join(fmt(statistics.mean(r[c] for r in records)) for c in COLUMNS) + " | |")
    (args.results / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="step", required=True)
    for name, helptext in (("codes", "pretrain the autoencoders (mixvae fit --epochs 0) and save their codes"),
                           ("compare", "cluster the saved codes, score each clustering, write the tables")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--model", default="vade", help="whose autoencoder (default vade)")
        s.add_argument("--data", default="digits")
        s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
        add_output_arguments(s, fits=name == "codes")
    sub.choices["codes"].add_argument("--pretrain-epochs", type=int, default=None,
                                      help="autoencoder epochs (default: the model's)")
    sub.choices["codes"].add_argument("extra", nargs="*", help="further mixvae fit arguments (after --)")
    sub.choices["compare"].add_argument("--restarts", type=int, default=6, help="GMM starts on the t-SNE embedding")
    sub.choices["compare"].add_argument("--points", type=int, default=5000,
                                        help="at most this many codes embedded (a random subset beyond)")
    args = p.parse_args(argv)
    make_codes(args) if args.step == "codes" else compare(args)


if __name__ == "__main__":
    main()
