"""K in one run (issue 35): does ``--clusters auto``, a sparse Dirichlet prior on the weights, a Dirichlet-process GMM
at the start, or the agreement of the start's GMMs find the number of groups?

    python experiments/clusters_auto.py --method auto [--sets ...] [--max-clusters 20]
    python experiments/clusters_auto.py --method vade [--sets five-0 ... five-4] [--max-clusters 10]
                                        [--concentration 0.05] [--epochs E]
    python experiments/clusters_auto.py --method dpgmm [--sets ...]
    python experiments/clusters_auto.py --method stability [--sets ...]
    python experiments/clusters_auto.py --method graph [--sets ...]
    python experiments/clusters_auto.py --table                        # results/clusters_auto.md

``--method auto``: ``mixvae fit vade --clusters auto --max-clusters K`` as the estimator runs it (VaDE's defaults,
seed 0, ``start_clusters="auto"``), beside a fit given the true K: records the clusters found (q(pi)), what the
start proposed, acc of both and the seconds of both (one thread).
``--method vade``: the VaDE estimator (its defaults, one thread) with K = ``--max-clusters`` and
``weight_concentration`` = alpha0, so that q(pi) = Dir(c) is updated in closed form during SVI; records the
clusters q(pi) uses (``effective_clusters``: pseudo-count above alpha0 by more than one point), the
clusters the assignments use, E_q[pi] times N, acc against the labels (Hungarian, more clusters than
classes allowed) and the wall time.
``--method dpgmm``: scikit-learn's ``BayesianGaussianMixture`` (Dirichlet-process weights, concentration
1 / K_max, full covariances) with ``--max-clusters`` components on the t-SNE embedding of the data that the
default start uses (:func:`pyro_mixvae.infer.pretrain.tsne_embedding`, standardised); records its components
holding at least one point.
``--method stability``: the rule of ``mixvae select`` (the K whose restarts agree best) on the start alone: on
three t-SNE embeddings of the data (seeds 0-2), 4 full-covariance GMM starts each (``gmm_partitions``) for
every K from 2 to ``--max-clusters``; the K of the highest mean pairwise ARI of the 12 partitions (to 3
decimals; the smallest such K), its scores recorded; acc of its first partition. ``--space codes`` embeds
the codes of VaDE's pretrained autoencoder (its defaults, seed 0) instead of the data.
``--method graph``: the connected components of the data's 10-nearest-neighbour graph
(:func:`pyro_mixvae.infer.pretrain.graph_components`, what ``gmm_assign=graph`` reads), those of fewer than a
tenth of N / C points (C components) not counted; acc of the components as the partition.
Sets: ``five-S`` (``experiments/select/synthetic.py``'s five groups, data seed S), the blob sets of the
robustness suite (``blobs-...``), ``digits``, or a ``.npz`` file. Records are appended to ``RESULTS/clusters_auto.jsonl``; a
(set, method, K_max, alpha0, epochs) already recorded is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "select"))
from common import add_output_arguments, record_command  # noqa: E402


def load(name: str):
    """(x (N, D) float32, y) of a set named as in the docstring."""
    if name.startswith("five-"):
        import synthetic
        return synthetic.make(int(name.split("-")[1]))
    if name == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        return (d.data / 16.0).astype(np.float32), d.target
    if name.endswith(".npz"):
        from pyro_mixvae.data import load_dataset
        data = load_dataset(name)
        return np.asarray(data.x, dtype=np.float32), data.y
    from pyro_mixvae.synthetic import robustness_suite
    data = robustness_suite(full=True)[name]
    return data.x.reshape(len(data.x), -1), data.y


def run_vade(x, y, args) -> dict:
    from pyro_mixvae.estimator import VaDE
    from pyro_mixvae.metrics import acc
    kwargs = {"epochs": args.epochs} if args.epochs else {}
    est = VaDE(n_clusters=args.max_clusters, weight_concentration=args.concentration, random_state=0,
               verbose=False, **kwargs).fit(x)
    m = est.model_
    return {"found": m.effective_clusters(), "used": int(np.unique(est.labels_).size),
            "counts": pseudo_counts(m),
            "acc": acc(y, est.labels_)}


def pseudo_counts(model) -> list:
    """The points q(pi) = Dir(c) gives each component: c - alpha0, to one decimal."""
    return np.round((model.weight_posterior - model.weight_prior).numpy(), 1).tolist()


def run_auto(x, y, args) -> dict:
    """``VaDE(n_clusters="auto")`` with ``--max-clusters`` components (``mixvae fit vade --clusters auto
    --max-clusters K``) beside ``VaDE(n_clusters=true K)``, both with their defaults and seed 0, timed each."""
    from pyro_mixvae.estimator import VaDE
    from pyro_mixvae.metrics import acc
    start = time.perf_counter()
    auto = VaDE(n_clusters=args.max_clusters, start_clusters="auto", random_state=0).fit(x)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    given = VaDE(n_clusters=int(np.unique(y).size), random_state=0).fit(x)
    m = auto.model_
    return {"found": auto.n_clusters_, "used": int(np.unique(auto.labels_).size),
            "proposed": list(m.start_proposal), "counts": pseudo_counts(m),
            "acc": acc(y, auto.labels_), "acc_true_k": acc(y, given.labels_), "auto_seconds": seconds,
            "true_k_seconds": time.perf_counter() - start}


def run_dpgmm(x, y, args) -> dict:
    from sklearn.mixture import BayesianGaussianMixture
    from pyro_mixvae.infer.pretrain import tsne_embedding
    from pyro_mixvae.metrics import acc
    z = tsne_embedding(np.asarray(x, dtype=np.float64), seed=0)
    z = (z - z.mean(0)) / z.std(0)
    g = BayesianGaussianMixture(n_components=args.max_clusters, weight_concentration_prior=1.0 / args.max_clusters,
                                covariance_type="full", max_iter=1000, reg_covar=1e-4, random_state=0).fit(z)
    labels = g.predict(z)
    return {"found": int((g.weights_ * len(z) >= 1.0).sum()), "used": int(np.unique(labels).size),
            "counts": np.round(g.weights_ * len(z), 1).tolist(), "acc": acc(y, labels)}


def codes(x) -> np.ndarray:
    """E q(z | x) of VaDE's pretrained autoencoder (its defaults, seed 0, no SVI epoch)."""
    import torch
    from pyro_mixvae.estimator import VaDE
    model = VaDE(n_clusters=2, epochs=0, random_state=0, verbose=False).fit(x).model_
    with torch.no_grad():
        return model.encoder(torch.as_tensor(x, dtype=torch.float32))[0].double().numpy()


def run_stability(x, y, args) -> dict:
    from sklearn.metrics import adjusted_rand_score
    from pyro_mixvae.infer.pretrain import gmm_partitions, tsne_embedding
    from pyro_mixvae.metrics import acc
    points = codes(x) if args.space == "codes" else np.asarray(x, dtype=np.float64)
    spaces = [tsne_embedding(points, seed=s) for s in range(3)]
    spaces = [(z - z.mean(0)) / z.std(0) for z in spaces]
    scores, first = {}, {}
    for k in range(2, args.max_clusters + 1):
        parts = [p for z in spaces for p in gmm_partitions(z, k, "full", 1e-4, seed=0, n_init=4)]
        scores[k] = float(np.mean([adjusted_rand_score(a, b) for i, a in enumerate(parts) for b in parts[i + 1:]]))
        first[k] = parts[0]
    found = max(scores, key=lambda k: (round(scores[k], 3), -k))
    return {"found": found, "used": int(np.unique(first[found]).size), "scores": scores, "acc": acc(y, first[found])}


def run_graph(x, y, args) -> dict:
    from pyro_mixvae.infer.pretrain import GRAPH_MIN_SHARE, graph_components
    from pyro_mixvae.metrics import acc
    count, labels = graph_components(x)
    sizes = np.bincount(labels)
    return {"found": int((sizes >= GRAPH_MIN_SHARE * len(labels) / count).sum()), "used": int(count),
            "counts": sorted(sizes.tolist(), reverse=True), "acc": acc(y, labels)}


def key(r: dict) -> tuple:
    return r["set"], r["method"], r["max_clusters"], r.get("concentration"), r.get("epochs"), r.get("space")


def recorded(results: Path) -> list:
    path = results / "clusters_auto.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def table(results: Path) -> str:
    lines = ["# K in one run (issue 35): the clusters found against the true K", "",
             f"Made by `python experiments/clusters_auto.py --method M --sets ...` per row, then `{record_command()}`. "
             "found: for vade the components q(pi) gives more than one point (pseudo-count above alpha0); for dpgmm "
             "the components holding at least one point; for auto the same, the start's proposal beside it. used: the "
             "clusters the assignments use. auto: acc and seconds of the fit given the true K after the slash.", "",
             "| set | true K | method | K_max | alpha0 | epochs | found | used | acc | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in recorded(results):
        method = r["method"] + (f" ({r['space']})" if r.get("space") else "")
        found, accs, seconds = r["found"], f"{r['acc']:.3f}", f"{r['seconds']:.0f}"
        if r["method"] == "auto":
            found = f"{r['found']} (start: {r['proposed'][0]}, {r['proposed'][1]})"
            accs += f" / {r['acc_true_k']:.3f}"
            seconds = f"{r['auto_seconds']:.0f} / {r['true_k_seconds']:.0f}"
        lines.append(f"| {r['set']} | {r['true_k']} | {method} | {r['max_clusters']} | {r.get('concentration') or ''} | "
                     f"{r.get('epochs') or 'default'} | {found} | {r['used']} | {accs} | {seconds} |")
    text = "\n".join(lines) + "\n"
    (results / "clusters_auto.md").write_text(text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=("auto", "vade", "dpgmm", "stability", "graph"))
    p.add_argument("--sets", nargs="+", default=[f"five-{s}" for s in range(5)])
    p.add_argument("--max-clusters", type=int, default=10)
    p.add_argument("--concentration", type=float, default=0.05, help="alpha0 of the Dirichlet on pi (vade)")
    p.add_argument("--epochs", type=int, default=None, help="SVI epochs (vade; default: the model's)")
    p.add_argument("--space", choices=("data", "codes"), default="data",
                   help="stability: embed the data, or the codes of VaDE's pretrained autoencoder")
    p.add_argument("--table", action="store_true")
    add_output_arguments(p, fits=False)
    args = p.parse_args(argv)
    if args.method:
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        done = {key(r) for r in recorded(args.results)}
        for name in args.sets:
            record = {"set": name, "method": args.method, "max_clusters": args.max_clusters,
                      "concentration": args.concentration if args.method == "vade" else None,  # auto: 1 / K_max
                      "epochs": args.epochs if args.method == "vade" else None,
                      **({"space": args.space} if args.method == "stability" and args.space != "data" else {})}
            if key(record) in done:
                print(f"{name}: recorded, skipped", flush=True)
                continue
            x, y = load(name)
            start = time.perf_counter()
            record.update({"auto": run_auto, "vade": run_vade, "dpgmm": run_dpgmm, "stability": run_stability,
                           "graph": run_graph}[args.method](x, y, args))
            record.update(true_k=int(np.unique(y).size), seconds=time.perf_counter() - start, script=record_command())
            args.results.mkdir(parents=True, exist_ok=True)
            with open(args.results / "clusters_auto.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{name}: true K {record['true_k']}, found {record['found']}, used {record['used']}, "
                  f"acc {record['acc']:.3f}, {record['seconds']:.0f} s", flush=True)
    if args.table:
        print(table(args.results))


if __name__ == "__main__":
    main()
