"""The synthetic study of both GMVAE papers on the 5-arcs data with K = 8, through the CLI.

    python experiments/gmvae_arcs.py [--settings NAME ...] [--seeds 0 1 2] [--figures-only]
                                     [--results DIR] [--runs DIR] [-- EXTRA mixvae fit ARGS]

Settings (``SETTINGS`` below):

* consistency-violation paper (Sect. 4.1, Fig. 2c-f), mean-field guide q(c|x):
  ``mf-eta1-alpha0`` (the standard ELBO), ``mf-eta0-alpha0``, ``mf-eta0-alpha1``, ``mf-eta1-alpha2``;
* minimum-information paper (Sect. 4.1, Figs. 2-3), posterior guide p_beta(c|z,w):
  ``post-elbo`` (the standard ELBO) and ``post-lam`` (the threshold of its eq. 7, ``lam=LAM``).

Each (setting, seed) runs ``python -m pyro_mixvae fit gmvae --data arcs --clusters 8 --guide G
--set eta=.. --set alpha=.. [--set lam=..] --seed S`` with the model's default epochs and the CLI's
training defaults (plus ``TRAIN_ARGS`` and any EXTRA arguments) into ``RUNS/gmvae-arcs/<setting>-seed<S>``
(``--runs``, default ``experiments/runs``).
A run whose ``metrics.json`` exists is skipped; one with a ``checkpoint.pt`` is resumed. Only one
training process runs at a time, with ``OMP_NUM_THREADS=1``.

Writes, from every finished run found there for the requested settings and seeds, into ``RESULTS``
(``--results``, default ``experiments/results``):

* ``RESULTS/gmvae_arcs.json`` -- one record per run: setting, seed, acc_cluster_label,
  acc, nmi, clusters_used, train_seconds (and the command);
* ``RESULTS/gmvae_arcs.md`` -- per-setting mean and per-seed values, and this script's command;
* ``RESULTS/gmvae_arcs_latent_<setting>.png`` -- seed 0: z = E q(z|x) coloured by the
  assigned cluster, with the 2-sigma ellipses of the K components at w = 0 (the papers' Fig. 2);
* ``RESULTS/gmvae_arcs_zprior.png`` -- the z-prior term KL(q(c|.) || p(c)) per epoch
  for the posterior guide with and without the threshold (minimum-information Fig. 3).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, add_output_arguments, record_command

LAM = 1.5  # nats per point for post-lam (log 8 = 2.08 is the largest possible KL(p(c|z,w) || p(c)))
TRAIN_ARGS: list = []  # training flags beyond the CLI's defaults (none: the defaults are used)

SETTINGS = {
    "mf-eta1-alpha0": ("mean-field", {"eta": 1, "alpha": 0}, "mean-field, standard ELBO (eta=1, alpha=0)"),
    "mf-eta0-alpha0": ("mean-field", {"eta": 0, "alpha": 0}, "mean-field, no z-prior (eta=0, alpha=0)"),
    "mf-eta0-alpha1": ("mean-field", {"eta": 0, "alpha": 1}, "mean-field, CV only (eta=0, alpha=1)"),
    "mf-eta1-alpha2": ("mean-field", {"eta": 1, "alpha": 2}, "mean-field, z-prior + CV (eta=1, alpha=2)"),
    "post-elbo": ("posterior", {}, "posterior guide, standard ELBO"),
    "post-lam": ("posterior", {"lam": LAM}, f"posterior guide, threshold lam={LAM}"),
}
ORDER = ["mf-eta1-alpha2", "post-lam", "mf-eta1-alpha0", "post-elbo", "mf-eta0-alpha0", "mf-eta0-alpha1"]
KEYS = ("acc_cluster_label", "acc", "nmi", "clusters_used", "train_seconds")


def command(setting: str, seed: int, run: Path, extra: list) -> list:
    guide, sets, _ = SETTINGS[setting]
    cmd = [sys.executable, "-m", "pyro_mixvae", "fit", "gmvae", "--data", "arcs", "--clusters", "8",
           "--guide", guide, "--seed", str(seed), "--out", str(run), "--quiet"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd + TRAIN_ARGS + list(extra)


def run_one(setting: str, seed: int, out: Path, extra: list) -> None:
    run = out / f"{setting}-seed{seed}"
    if (run / "metrics.json").exists():
        return
    cmd = command(setting, seed, run, extra)
    if (run / "checkpoint.pt").exists():
        cmd.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.time()
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    print(f"{setting} seed {seed}: {time.time() - t0:.0f} s wall", flush=True)


def collect(settings, seeds, out: Path, extra: list) -> list:
    records = []
    for setting in settings:
        for seed in seeds:
            run = out / f"{setting}-seed{seed}"
            if not (run / "metrics.json").exists():
                continue
            m = json.loads((run / "metrics.json").read_text())
            rec = {"setting": setting, "seed": seed, **{k: m[k] for k in KEYS},
                   "epochs": m.get("epochs"), "elbo": m.get("elbo"),
                   "command": "python -m pyro_mixvae " + " ".join(command(setting, seed, _rel(run), extra)[3:])}
            records.append(rec)
    return records


def _rel(path: Path) -> Path:
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def write_tables(records: list, settings, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "gmvae_arcs.json").write_text(json.dumps(records, indent=2) + "\n")
    lines = ["# GMVAE on arcs (K = 8)", "", f"Generated by `{record_command()}`.", "",
             "Per setting: mean over the seeds that ran, then one row per seed. "
             "acc_cluster_label is the GMVAE papers' protocol (each cluster takes the label of its most "
             "probable point); acc is the one-to-one Hungarian accuracy (at most 5/8 of the clusters can "
             "match a label, unmatched ones count as wrong).", "",
             "| setting | seed | " + " | ".join(KEYS) + " |", "|" + " --- |" * (len(KEYS) + 2)]
    for setting in settings:
        rows = [r for r in records if r["setting"] == setting]
        if not rows:
            continue
        mean = {k: statistics.mean(r[k] for r in rows) for k in KEYS}
        lines.append(f"| **{setting}** | mean of {len(rows)} | " + " | ".join(_fmt(mean[k]) for k in KEYS) + " |")
        for r in rows:
            lines.append(f"| {setting} | {r['seed']} | " + " | ".join(_fmt(r[k]) for k in KEYS) + " |")
    lines += ["", "Settings:", ""] + [f"* `{s}`: {SETTINGS[s][2]}" for s in settings]
    if records:
        lines += ["", "Commands (seed 0 shown; `--seed` and `--out` vary):", ""]
        for setting in settings:
            rows = [r for r in records if r["setting"] == setting]
            if rows:
                lines.append(f"* `{rows[0]['command']}`")
    (results / "gmvae_arcs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------- figures
def latent_figure(run: Path, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from matplotlib.patches import Ellipse

    from pyro_mixvae.data import load_dataset
    from pyro_mixvae.runs import load_run

    torch.set_num_threads(1)
    model, _ = load_run(run)
    data = load_dataset("arcs")
    x = torch.as_tensor(data.x)
    with torch.no_grad():
        z = model.encode(x)[0].numpy()
        cluster = model.responsibilities(x).argmax(-1).numpy()
        loc, scale = model.components(torch.zeros(1, model.w_dim))
    loc, scale = loc[0].numpy(), scale[0].numpy()
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    axes[0].scatter(data.x[:, 0], data.x[:, 1], s=1, c=[cmap(k % 10) for k in cluster])
    axes[0].set_title("data, coloured by assigned cluster")
    axes[0].set_aspect("equal")
    axes[1].scatter(z[:, 0], z[:, 1], s=1, c=[cmap(k % 10) for k in cluster])
    used = set(cluster.tolist())
    for k in range(model.n_clusters):
        axes[1].add_patch(Ellipse(loc[k], 4 * scale[k, 0], 4 * scale[k, 1], fill=False, color=cmap(k % 10),
                                  lw=1.5, ls="-" if k in used else ":"))
        axes[1].annotate(str(k), loc[k], ha="center", va="center", fontsize=8)
    lo = np.minimum(z.min(0), (loc - 2 * scale).min(0))
    hi = np.maximum(z.max(0), (loc + 2 * scale).max(0))
    pad = 0.05 * (hi - lo)
    axes[1].set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    axes[1].set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    axes[1].set_title("latent z = E q(z|x); 2-sigma ellipses of the components at w = 0\n"
                      "(dotted: clusters no point is assigned to)", fontsize=9)
    m = json.loads((run / "metrics.json").read_text())
    fig.suptitle(f"{title} ({run.name}): acc_cluster_label {m['acc_cluster_label']:.3f}, "
                 f"{m['clusters_used']} clusters used")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def zprior_figure(out: Path, seeds, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    drawn = False
    for ax, setting in zip(axes, ("post-elbo", "post-lam")):
        for seed in seeds:
            hist = out / f"{setting}-seed{seed}" / "history.jsonl"
            if not hist.exists():
                continue
            rows = [json.loads(line) for line in hist.read_text().splitlines() if line.strip()]
            ax.plot([r["epoch"] for r in rows], [-r["z_prior"] for r in rows], label=f"seed {seed}")
            drawn = True
        if setting == "post-lam":
            ax.axhline(-LAM, ls=":", color="k", label=f"threshold -lam = -{LAM}")
        ax.set_title(SETTINGS[setting][2])
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("z-prior term  -KL(p(c|z,w) || p(c))  [nats/point]")
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=80)
    plt.close(fig)
    return drawn


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=ORDER, choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_output_arguments(p, fits=False)
    p.add_argument("--figures-only", action="store_true", help="train nothing; tables and figures from what ran")
    p.add_argument("extra", nargs="*", help="further arguments for mixvae fit (after --)")
    args = p.parse_args()
    out, results = args.runs / "gmvae-arcs", args.results
    settings = [s for s in ORDER if s in args.settings]
    if not args.figures_only:
        for setting in settings:
            for seed in args.seeds:
                run_one(setting, seed, out, args.extra)
    records = collect(settings, args.seeds, out, args.extra)
    write_tables(records, settings, results)
    for setting in settings:
        run = out / f"{setting}-seed0"
        if (run / "metrics.json").exists():
            latent_figure(run, results / f"gmvae_arcs_latent_{setting}.png", SETTINGS[setting][2])
    if zprior_figure(out, args.seeds, results / "gmvae_arcs_zprior.png"):
        print(f"wrote {results / 'gmvae_arcs_zprior.png'}")


if __name__ == "__main__":
    main()
