"""Where the spread of one command's answer comes from (issue 31): the stages of a run, one at a time.

    OMP_NUM_THREADS=T python experiments/stability.py --data digits --model vade --seeds 0 1 2 [--runs DIR]
    python experiments/stability.py --summarise [--runs DIR] [--results DIR]
    python experiments/stability.py --compare-starts [--runs DIR] [--results DIR]
    python experiments/stability.py --compare-consensus [--runs DIR] [--results DIR]

A default run of ``mixvae fit MODEL --data DATA --seed S`` is, in order: the autoencoder's pretraining
(its codes mu(x)), the mixture start on the codes (``gmm_assign``: a t-SNE embedding and a GMM on it,
or a diagonal GMM on the codes), then SVI. This script takes those steps with the library's own
functions, the model's defaults and the process's thread count, and records after each one the
partition and its acc against the labels:

* ``codes_gmm``: the VaDE paper's own start (Sect. 4.2 and 4.3: a diagonal GMM on the codes, 10 restarts,
  the best likelihood kept), on the same codes;
* ``start``: the model's default start (what ``mixvae fit`` prints "after pretraining");
* ``start_other_threads``: the same start recomputed on the same codes with the other thread count
  (1 <-> 2, through threadpoolctl and ``torch.set_num_threads``): what the mixture start itself adds;
* ``end``: after SVI, the default epochs.

Each (data, model, seed, threads) writes ``RUNS/<data>-<model>-s<seed>-t<threads>.npz`` (the codes and the
partitions) and a line in ``RUNS/records.jsonl``; a finished one is skipped. ``--summarise`` reads them
and writes ``RESULTS/stability.md``: per stage, the mean, sd and range of acc over all seeds and
thread counts, and the agreement (ARI) of the two thread counts' partitions of the same seed.
``--compare-starts`` recomputes the start on the saved codes under each rule that keeps one GMM start,
and decided on three runs' codes side by side (``RESULTS/stability_starts.md``). ``--compare-consensus``
takes the consensus of the GMM starts instead (``select="consensus"``) on one run's codes and on three
runs' codes, each in its own embedding, and the variants of it that were tried: the linkage that reads
the co-association, the embedding's dimension and iterations (``RESULTS/stability_consensus.md``).
RUNS defaults to ``~/mixvae-runs/stability`` (outside the checkout: long runs survive a new checkout).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_OUT = Path.home() / "mixvae-runs" / "stability"


def load(name: str):
    from pyro_mixvae.data import load_dataset
    from pyro_mixvae.synthetic import robustness_suite
    suite = robustness_suite(full=True)
    return suite[name] if name in suite else load_dataset(name)


def one(data_name: str, model_name: str, seed: int, out: Path) -> dict:
    import torch
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from pyro_mixvae.infer.predict import predict_proba
    from pyro_mixvae.infer.pretrain import encode_means, fit_shared_variance, init_guide_scale, pretrain_autoencoder
    from pyro_mixvae.infer.train import TrainConfig, seed_everything, train
    from pyro_mixvae.metrics import acc
    from pyro_mixvae.models import build
    from pyro_mixvae.nets import fit_data_units
    from pyro_mixvae.runner import prepare_data

    threads = torch.get_num_threads()
    data = load(data_name)
    x_np, likelihood = prepare_data(data.x, data.y)
    x, y, k = torch.as_tensor(x_np), data.y, len(np.unique(data.y))
    seed_everything(seed)
    model = build(model_name, x.shape[1:], k, likelihood)
    cfg = TrainConfig(seed=seed, device="cpu").for_model(model, num_data=len(x))
    seconds = {}
    # the steps of train._start and VaDE.pretrain, in their order
    seed_everything(seed)
    fit_data_units(model, x)
    t0 = time.perf_counter()
    pretrain_autoencoder(model.encoder, model.decoder, model.likelihood, x, epochs=cfg.pretrain_epochs,
                         batch_size=cfg.batch_size, lr=model.hparams["pretrain_lr"],
                         noise=model.hparams["pretrain_noise"], seed=seed)
    seconds["autoencoder"] = time.perf_counter() - t0
    codes = encode_means(model.encoder, x)
    z = codes.numpy().astype(np.float64)
    t0 = time.perf_counter()
    paper = GaussianMixture(k, covariance_type="diag", n_init=10, random_state=seed, reg_covar=1e-4,
                            max_iter=200).fit(z).predict(z)
    seconds["codes_gmm"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.init_mixture_from_codes(codes, seed)
    seconds["start"] = time.perf_counter() - t0
    init_guide_scale(model.encoder, model.log_var_c.exp())
    fit_shared_variance(model.encoder, model.decoder, model.likelihood, x, seed=seed)
    start = predict_proba(model, x).argmax(1).numpy()
    # the same start on the same codes with the other thread count (the model's prior restored after)
    saved = {n: p.detach().clone() for n, p in model.named_parameters() if n in ("pi_logits", "mu_c", "log_var_c")}
    other = 2 if threads == 1 else 1
    torch.set_num_threads(other)
    with threadpool_limits(other):
        model.init_mixture_from_codes(codes, seed)
        start_other = torch.softmax(model.component_log_prob(codes), -1).argmax(1).numpy()
    torch.set_num_threads(threads)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in saved:
                p.copy_(saved[n])
    t0 = time.perf_counter()
    history = train(model, x, y, config=cfg, pretrain=False, progress=False)
    seconds["svi"] = time.perf_counter() - t0
    end = predict_proba(model, x).argmax(1).numpy()
    stem = f"{data_name}-{model_name}-s{seed}-t{threads}"
    np.savez(out / f"{stem}.npz", codes=z, codes_gmm=paper, start=start, start_other_threads=start_other, end=end)
    record = {"data": data_name, "model": model_name, "seed": seed, "threads": threads,
              "acc": {"codes_gmm": acc(y, paper), "start": acc(y, start), "start_other_threads": acc(y, start_other),
                      "end": acc(y, end)},
              "elbo_end": history.last().get("elbo", history.last().get("objective")), "seconds": seconds,
              "history": {key: history.column(key) for key in ("elbo", "objective", "acc") if key in history.last()},
              "script": f"OMP_NUM_THREADS={threads} python experiments/stability.py --data {data_name} --model {model_name} "
                        f"--seeds {seed}"}
    with open(out / "records.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def summarise(out: Path, results: Path) -> None:
    from sklearn.metrics import adjusted_rand_score
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]
    stages = ("codes_gmm", "start", "start_other_threads", "end")
    lines = ["# Where the spread comes from: the stages of one run (issue 31)", "",
             "Made by `OMP_NUM_THREADS=T python experiments/stability.py --data DATA --model MODEL --seeds ...` "
             "for T = 1 and 2, then `python experiments/stability.py --summarise`. acc per stage over every "
             "seed and thread count; ARI(1 vs 2 threads): the agreement of the two thread counts' partitions "
             "of the same seed at that stage (1 = identical).", ""]
    groups = sorted({(r["data"], r["model"]) for r in records})
    lines += ["| data | model | runs | stage | acc mean ± sd | min - max | ARI(1 vs 2 threads), mean (min) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for data, model in groups:
        rs = [r for r in records if (r["data"], r["model"]) == (data, model)]
        for stage in stages:
            accs = [r["acc"][stage] for r in rs]
            aris = []
            for r in rs:
                if r["threads"] != 1:
                    continue
                twin = out / f"{data}-{model}-s{r['seed']}-t2.npz"
                if twin.exists():
                    a, b = np.load(out / f"{data}-{model}-s{r['seed']}-t1.npz"), np.load(twin)
                    aris.append(adjusted_rand_score(a[stage], b[stage]))
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            ari = f"{np.mean(aris):.3f} ({np.min(aris):.3f})" if aris else ""
            lines.append(f"| {data} | {model} | {len(rs)} | {stage} | {np.mean(accs):.3f} ± {sd:.3f} | "
                         f"{min(accs):.3f} - {max(accs):.3f} | {ari} |")
    lines += ["", "Per run: acc at each stage; ARI(start, start_other_threads): the start recomputed on the same codes "
              "with the other thread count against the start itself.", "",
              "| data | model | seed | threads | " + " | ".join(stages) + " | end - start | ARI(start, start_other_threads) |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in stages) + " | --- | --- |"]
    for r in sorted(records, key=lambda r: (r["data"], r["model"], r["seed"], r["threads"])):
        saved = np.load(out / f"{r['data']}-{r['model']}-s{r['seed']}-t{r['threads']}.npz")
        same_codes = adjusted_rand_score(saved["start"], saved["start_other_threads"])
        lines.append(f"| {r['data']} | {r['model']} | {r['seed']} | {r['threads']} | "
                     + " | ".join(f"{r['acc'][s]:.3f}" for s in stages)
                     + f" | {r['acc']['end'] - r['acc']['start']:+.3f} | {same_codes:.3f} |")
    (results / "stability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8 + 4 * len(groups) + 6]))


def compare_starts(out: Path, results: Path, data_name: str = "digits", model_name: str = "vade") -> None:
    """On the saved codes: the model's start (diagonal moments, assigned by density, as ``mixvae fit`` prints it)
    under each rule that keeps one of the GMM's 10 starts on one autoencoder's codes, and under the start
    decided on three autoencoders' codes side by side (every triple of saved runs with distinct seeds)."""
    import hashlib
    from scipy.stats import norm
    import pyro_mixvae.infer.pretrain as pretrain
    from pyro_mixvae.infer.pretrain import fit_diag_gmm
    embed, cache = pretrain.tsne_embedding, {}

    def cached_embedding(z, seed=0):  # the same codes' embedding once for every rule (it is deterministic)
        key = (hashlib.sha1(z.tobytes()).hexdigest(), seed)
        if key not in cache:
            cache[key] = embed(z, seed)
        return cache[key]

    pretrain.tsne_embedding = cached_embedding
    from pyro_mixvae.metrics import acc
    y = load(data_name).y
    k = len(np.unique(y))
    files = sorted(out.glob(f"{data_name}-{model_name}-s*-t*.npz"))
    codes = {f.stem.split(f"{model_name}-")[1]: np.load(f)["codes"] for f in files}

    def start_acc(z, seed, n_init=10, **kw):
        w, m, v, _ = fit_diag_gmm(z, k, seed, n_init=n_init, assign="auto", **kw)
        return acc(y, (np.log(w) + norm.logpdf(z[:, None, :], m[None], np.sqrt(v)[None]).sum(-1)).argmax(1))

    lines = ["# The mixture start on saved codes: the rule that keeps a GMM start, one autoencoder or three", "",
             f"Made by `python experiments/stability.py --compare-starts` on the codes that `experiments/stability.py` "
             f"saved ({data_name}, {model_name}'s pretraining; run name sS-tT = seed S, T threads). acc of the model's "
             "start: the diagonal moments under the chosen responsibilities, each code assigned by density.", "",
             "## One autoencoder's codes, the rule that keeps one of 10 GMM starts", "",
             "| codes | silhouette (default) | agreement | likelihood | silhouette, 30 starts |",
             "| --- | --- | --- | --- | --- |"]
    for name, z in codes.items():
        seed = int(name.split("-")[0][1:])
        row = [start_acc(z, seed, select=rule) for rule in ("silhouette", "agreement", "likelihood")]
        row.append(start_acc(z, seed, n_init=30, select="silhouette"))
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in row) + " |")
        print(lines[-1], flush=True)
    lines += ["", "## Three autoencoders' codes side by side (the first one's moments), silhouette", "",
              "| codes | start on the first one's codes alone | start decided on the three | the same, 30 starts |",
              "| --- | --- | --- | --- |"]
    alone = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in lines if line.startswith("| s")}
    for triple in saved_triples(codes):
        first, seed = triple[0], triple[0].split("-")[0]
        others = [codes[t] for t in triple[1:]]
        joint = start_acc(codes[first], int(seed[1:]), select="silhouette", others=others)
        joint30 = start_acc(codes[first], int(seed[1:]), n_init=30, select="silhouette", others=others)
        lines.append(f"| {', '.join(triple)} | {alone[first]} | {joint:.3f} | {joint30:.3f} |")
        print(lines[-1], flush=True)
    (results / "stability_starts.md").write_text("\n".join(lines) + "\n")


def saved_triples(codes: dict) -> list:
    """Each saved run's codes with those of the next two seeds' runs at the same thread count (wrapping round)."""
    triples = []
    for first in codes:
        seed, threads = first.split("-")
        same = sorted((n for n in codes if n.endswith(threads) and n != first), key=lambda n: int(n.split("-")[0][1:]))
        later = [n for n in same if int(n.split("-")[0][1:]) > int(seed[1:])] + same
        if len(later) >= 2:
            triples.append((first, *later[:2]))
    return triples


def compare_consensus(out: Path, results: Path, data_name: str = "digits", model_name: str = "vade") -> None:
    """On the saved codes: acc of the consensus of 10 GMM starts per embedding (the labels themselves, and the
    model's start from them: diagonal moments assigned by density), on one run's codes and on three runs'
    codes (:func:`saved_triples`), each autoencoder's codes in its own t-SNE embedding; and the variants tried."""
    from scipy.stats import norm
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.manifold import TSNE
    from pyro_mixvae.infer.pretrain import (TSNE_PERPLEXITY, co_association, consensus_partition, diagonal_moments,
                                            gmm_partitions)
    from pyro_mixvae.metrics import acc
    y = load(data_name).y
    k = len(np.unique(y))
    files = sorted(out.glob(f"{data_name}-{model_name}-s*-t*.npz"))
    codes = {f.stem.split(f"{model_name}-")[1]: np.load(f)["codes"].astype(np.float64) for f in files}
    embeddings = {}

    def embedding(name, dim=3, iterations=1000):  # the library's tsne_embedding, its dimension and iterations varied
        if (name, dim, iterations) not in embeddings:
            embeddings[name, dim, iterations] = TSNE(dim, init="pca", perplexity=TSNE_PERPLEXITY, random_state=0,
                                                     max_iter=iterations).fit_transform(codes[name])
        return embeddings[name, dim, iterations]

    def partitions(names, seed, **variant):
        found = []
        for r, name in enumerate(names):
            space = embedding(name, **variant)
            found += gmm_partitions(space, k, "full", 1e-4 * float(space.var()), seed + r, 10)
        return found

    def linkage(found, method):
        distance = 1.0 - co_association(found)
        return AgglomerativeClustering(k, metric="precomputed", linkage=method).fit_predict(distance)

    def start_acc(labels, z):
        w, m, v = diagonal_moments(np.eye(k)[labels], z, 1e-4)
        return acc(y, (np.log(w) + norm.logpdf(z[:, None, :], m[None], np.sqrt(v)[None]).sum(-1)).argmax(1))

    columns = {
        "one: labels": lambda names, seed: consensus_partition(partitions(names[:1], seed), k),
        "three: labels": lambda names, seed: consensus_partition(partitions(names, seed), k),
        "three: average linkage": lambda names, seed: linkage(partitions(names, seed), "average"),
        "three: complete linkage": lambda names, seed: linkage(partitions(names, seed), "complete"),
        "three: 500 t-SNE iterations": lambda names, seed: consensus_partition(partitions(names, seed, iterations=500), k),
        "three: 2-D t-SNE": lambda names, seed: consensus_partition(partitions(names, seed, dim=2), k),
    }
    table = {}
    for names in saved_triples(codes):
        seed = int(names[0].split("-")[0][1:])
        labels = {col: make(names, seed) for col, make in columns.items()}
        table[names] = [acc(y, labels["one: labels"]), start_acc(labels["one: labels"], codes[names[0]]),
                        *(acc(y, labels[col]) for col in list(columns)[1:2]),
                        start_acc(labels["three: labels"], codes[names[0]]),
                        *(acc(y, labels[col]) for col in list(columns)[2:])]
        print(names, np.round(table[names], 3), flush=True)
    heads = ["one run: consensus labels", "one run: start", "three runs: consensus labels (`start_autoencoders=3`)",
             "three runs: start", "three: average linkage", "three: complete linkage", "three: 500 t-SNE iterations",
             "three: 2-D t-SNE"]
    values = np.array(list(table.values()))
    lines = ["# The consensus of the GMM starts on saved codes: one autoencoder or three, and the variants tried", "",
             f"Made by `python experiments/stability.py --compare-consensus` on the codes that `experiments/stability.py` "
             f"saved ({data_name}, {model_name}'s pretraining; run name sS-tT = seed S, T threads). Per embedding (3-D "
             "t-SNE, 1000 iterations unless said), 10 GMM starts; the consensus is the spectral clustering of their "
             "co-association (`pyro_mixvae.infer.pretrain.consensus_partition`) unless a linkage is named. labels: acc of "
             "the consensus partition; start: the model's start from it (its diagonal moments in the first run's codes, "
             "each code assigned by density). The triples share runs, so their rows are not independent.", "",
             "| codes | " + " | ".join(heads) + " |", "| --- " * (len(heads) + 1) + "|"]
    lines += [f"| {', '.join(names)} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for names, row in table.items()]
    lines.append("| mean ± sd (min) | " + " | ".join(f"{c.mean():.3f} ± {c.std(ddof=1):.3f} ({c.min():.3f})"
                                                      for c in values.T) + " |")
    (results / "stability_consensus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--model", default="vade")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--runs", type=Path, default=DEFAULT_OUT, help="where the runs' codes and records go "
                        "(default ~/mixvae-runs/stability)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--summarise", action="store_true")
    parser.add_argument("--compare-starts", action="store_true")
    parser.add_argument("--compare-consensus", action="store_true")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        return summarise(args.runs, args.results)
    if args.compare_starts:
        return compare_starts(args.runs, args.results, args.data, args.model)
    if args.compare_consensus:
        return compare_consensus(args.runs, args.results, args.data, args.model)
    import torch
    for seed in args.seeds:
        stem = f"{args.data}-{args.model}-s{seed}-t{torch.get_num_threads()}"
        if (args.runs / f"{stem}.npz").exists():
            continue
        r = one(args.data, args.model, seed, args.runs)
        print(stem, {k: round(v, 3) for k, v in r["acc"].items()}, flush=True)


if __name__ == "__main__":
    main()
