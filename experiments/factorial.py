"""The factorial mixture prior's experiments (``factorial-mixture-prior.txt`` Sect. 4, Fig. 1 and 3).

    python experiments/factorial.py [--part kgrid compositional] [--data digits] [--seeds 0]
                                    [--log2k 0 1 ... 6] [--quick] [--results DIR] [--runs DIR]

Both parts hold out a random 20% of the points (fixed split, seed 0) and train on the rest with
the model's defaults through the estimator API, one run at a time on one thread.

* ``kgrid`` -- (``--data digits fashion-mnist``, Fashion-MNIST with the epochs of ``SCALED``)
  the held-out predictive bound of eq. 11 against K = 2^0 ... 2^6 with I = 1, and its
  parts KL[z] and KL[r] (the paper's Fig. 3), plus the effective components (pseudo-counts more
  than one point above c0): ``RESULTS/factorial_kgrid.{json,png}``.
* ``compositional`` -- digits with a second, known discrete factor: every image also appears
  rotated by 90 degrees (factor 2: rotated or not). I = 2 with K = (10, 2), fitted unsupervised
  and with the digit labels of 40% of the training points (``delta`` = 1, eq. 8): per-factor
  held-out accuracy (Hungarian) and a generation grid over (k_1, k_2) like the paper's Fig. 1:
  ``RESULTS/factorial_compositional.json`` and ``RESULTS/factorial_compositional_<mode>.png``.

Each finished run is stored in ``RUNS/factorial/<name>.json``; a rerun skips it. ``RESULTS`` is
``--results`` (default ``experiments/results``), ``RUNS`` is ``--runs`` (default ``experiments/runs``);
the JSON files record the command. ``--quick`` (1 + 1 epochs, 16-16 networks) only checks that the
script runs.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from common import add_output_arguments, record_command, write_json
from pyro_mixvae import FactorialMixtureVAE
from pyro_mixvae.data import load_dataset
from pyro_mixvae.metrics import acc as hungarian_acc

def split(n: int, test_fraction: float = 0.2, seed: int = 0):
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return perm[n_test:], perm[:n_test]


def held_out(est, x_test) -> dict:
    model = est.model_
    x = torch.as_tensor(x_test, device=next(model.parameters()).device)
    model.eval()
    return model.diagnostics(x)


def run_once(out, name: str, build, x_train, x_test, fit_kwargs=None, evaluate=None) -> dict:
    path = out / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    print(name, flush=True)
    t0 = time.perf_counter()
    est = build().fit(x_train, **(fit_kwargs or {}))
    record = {"name": name, "train_seconds": time.perf_counter() - t0, **held_out(est, x_test)}
    if evaluate:
        record.update(evaluate(est))
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    return record


# ----------------------------------------------------------------------------------- K grid
# Fashion-MNIST (70k points, 700 steps per epoch): epochs scaled to fit a 2-core CPU
SCALED = {"fashion-mnist": {"pretrain_epochs": 5, "epochs": 10}}
QUICK = {"pretrain_epochs": 1, "epochs": 1, "hidden": (16, 16)}  # --quick: checks that the script runs


def kgrid(data: str, seeds, log2ks, args) -> list:
    ds = load_dataset(data)
    x = ds.x
    train, test = split(len(x))
    records = []
    for seed in seeds:
        for j in log2ks:
            k = 2 ** j
            rec = run_once(args.runs / "factorial", f"kgrid-{data}-K{k}-seed{seed}",
                           lambda: FactorialMixtureVAE(k, random_state=seed, device="cpu",
                                                       **{**SCALED.get(data, {}), **(QUICK if args.quick else {})}),
                           x[train], x[test], {"y": ds.y[train]},
                           lambda est: {"acc_test": hungarian_acc(ds.y[test], est.predict(x[test]))})
            records.append({**rec, "data": data, "K": k, "seed": seed})
    return records


def kgrid_figure(records, out) -> None:
    """One row per data set: the held-out bound against log2 K, and KL[z] / KL[r] bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["data"] for r in records})
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.6 * len(datasets)), squeeze=False)
    for (ax1, ax2), data in zip(axes, datasets):
        seed = min(r["seed"] for r in records if r["data"] == data)
        rs = sorted((r for r in records if r["data"] == data and r["seed"] == seed), key=lambda r: r["K"])
        ks = np.log2([r["K"] for r in rs])
        ax1.plot(ks, [r["predictive_bound"] for r in rs], "o-")
        for r, k in zip(rs, ks):
            ax1.annotate(f"{r['effective_components'][0]}", (k, r["predictive_bound"]), fontsize=7,
                         textcoords="offset points", xytext=(0, 5))
        ax1.set_xlabel("log2 K")
        ax1.set_ylabel("held-out bound, eq. 11 (nats/point)")
        ax1.set_title(f"{data}: predictive bound (labels: effective components)", fontsize=9)
        width = 0.35
        ax2.bar(ks - width / 2, [r["predictive_kl_z"] for r in rs], width, label="KL[z]")
        ax2.bar(ks + width / 2, [r["predictive_kl_r"] for r in rs], width, label="KL[r]")
        ax2.set_xlabel("log2 K")
        ax2.set_ylabel("nats per point")
        ax2.set_title(f"{data}: KL[z] and KL[r] on held-out data", fontsize=9)
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------- compositional
def compositional_data():
    """Digits and their 90-degree rotations: x (2N, 1, 8, 8), labels (2N, 2) = (digit, rotated)."""
    ds = load_dataset("digits")
    x = ds.x
    rotated = np.rot90(x, k=1, axes=(-2, -1)).copy()
    xs = np.concatenate([x, rotated]).astype(np.float32)
    labels = np.stack([np.concatenate([ds.y, ds.y]), np.repeat([0, 1], len(x))], axis=1)
    return xs, labels


def compositional(seeds, args, label_fraction: float = 0.4) -> list:
    x, labels = compositional_data()
    train, test = split(len(x))
    records = []
    for seed in seeds:
        for mode in ("unsupervised", "semi-supervised"):
            partial = np.full((len(train), 2), -1)
            if mode == "semi-supervised":
                rng = np.random.default_rng(seed)
                known = rng.random(len(train)) < label_fraction
                partial[known, 0] = labels[train][known, 0]
            fit_kwargs = {"labels": partial} if mode == "semi-supervised" else {}
            delta = 1.0 if mode == "semi-supervised" else 0.0

            def build(seed=seed, delta=delta):
                return FactorialMixtureVAE(10, factors=2, components=(10, 2), delta=delta, random_state=seed, device="cpu",
                                           **(QUICK if args.quick else {}))

            def evaluate(est, mode=mode, seed=seed):
                pred = est.predict(x[test])
                out = {f"acc_factor{i}": hungarian_acc(labels[test][:, i], pred[:, i]) for i in range(2)}
                if seed == seeds[0]:
                    grid_figure(est, args.results / f"factorial_compositional_{mode}.png", mode)
                return out

            rec = run_once(args.runs / "factorial", f"compositional-{mode}-seed{seed}", build, x[train], x[test], fit_kwargs, evaluate)
            records.append({**rec, "mode": mode, "seed": seed, "labelled_fraction": label_fraction
                            if mode == "semi-supervised" else 0.0})
    return records


def grid_figure(est, out, title) -> None:
    """E[x | z] with z_i from the Student-t of eq. 10 for every (k_1, k_2): the paper's Fig. 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = est.model_
    k1, k2 = model.components
    torch.manual_seed(0)
    fig, axes = plt.subplots(k2, k1, figsize=(k1 * 0.9, k2 * 1.0))
    for b in range(k2):
        for a in range(k1):
            xs, _ = model.sample(1, ks=[a, b])
            axes[b, a].imshow(xs[0].reshape(8, 8).cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[b, a].set_xticks([])
            axes[b, a].set_yticks([])
            if b == k2 - 1:
                axes[b, a].set_xlabel(f"k1={a}", fontsize=7)
        axes[b, 0].set_ylabel(f"k2={b}", fontsize=7)
    fig.suptitle(f"factorial prior, digits x rotation, {title}: one sample per (k1, k2)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", nargs="+", default=["kgrid", "compositional"])
    p.add_argument("--data", nargs="+", default=["digits"], help="data sets of the K grid")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--log2k", type=int, nargs="+", default=list(range(7)), help="the K grid as log2 K")
    p.add_argument("--figures-only", action="store_true", help="redraw factorial_kgrid.png from its JSON")
    p.add_argument("--quick", action="store_true", help="1 + 1 epochs, 16-16 networks: only checks that it runs")
    add_output_arguments(p, fits=False)
    args = p.parse_args()
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    if args.figures_only:
        kgrid_figure(json.loads((results / "factorial_kgrid.json").read_text()), results / "factorial_kgrid.png")
        return
    torch.set_num_threads(1)
    if "kgrid" in args.part:
        records = [dict(r, command=record_command()) for data in args.data
                   for r in kgrid(data, args.seeds, args.log2k, args)]
        old = results / "factorial_kgrid.json"  # keep the records of data sets not rerun now
        if old.exists():
            keep = [r for r in json.loads(old.read_text()) if r["data"] not in args.data]
            records = keep + records
        write_json(results / "factorial_kgrid.json", records)
        kgrid_figure(records, results / "factorial_kgrid.png")
        for r in records:
            print(f"{r['data']} K={r['K']}: bound {r['predictive_bound']:.2f} kl_z {r['predictive_kl_z']:.2f} "
                  f"kl_r {r['predictive_kl_r']:.3f} effective {r['effective_components']} acc {r['acc_test']:.3f}")
    if "compositional" in args.part:
        records = [dict(r, command=record_command()) for r in compositional(args.seeds, args)]
        write_json(results / "factorial_compositional.json", records)
        for r in records:
            print(f"{r['mode']} seed {r['seed']}: acc factor 1 (digit) {r['acc_factor0']:.3f}, "
                  f"factor 2 (rotation) {r['acc_factor1']:.3f}")


if __name__ == "__main__":
    main()
