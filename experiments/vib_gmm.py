"""VIB-GMM against VaDE on digits and Fashion-MNIST, 3 seeds each (issue: vib-gmm.txt, Sect. 4).

    python experiments/vib_gmm.py [--data digits fashion-mnist] [--seeds 0 1 2] [--figures-only]

Each (model, data, seed) is one ``mixvae fit`` run under ``experiments/runs/vib/`` (resumable:
start the script again after an interruption). Digits use each model's defaults. Fashion-MNIST
(70k images, train and test together; ``apt-get install dataset-fashion-mnist``) uses the same
settings with the epochs scaled down to fit a 2-core CPU (``SCALED`` below, stated in the
results). Writes

* ``experiments/results/vib_gmm.json`` -- one record per run (metrics.json plus the command);
* ``experiments/results/vib_gmm.md`` -- mean ± std of acc, nmi, ari per model and data set, and
  the per-seed rows;
* ``experiments/results/vib_gmm_infoplane_<data>.png`` -- VIB-GMM's information plane (the
  paper's Fig. 5): the reconstruction term against D_vKL per epoch, coloured by epoch, seed 0.
"""
from __future__ import annotations

import argparse

from common import RESULTS, RUNS, mean_std, read_history, run_fit, write_json

MODELS = ("vib-gmm", "vade")
# Fashion-MNIST: 70k points (700 steps per epoch against digits' 18): 5 pretraining and 10 SVI
# epochs per run (about 8 minutes on one CPU core); VIB-GMM's s goes 0.1 -> 1 by x1.5 per epoch
# (s = 1 from epoch 7) instead of x1.1 every 2 epochs
SCALED = {"fashion-mnist": {"vade": ["--pretrain-epochs", "5", "--epochs", "10"],
                            "vib-gmm": ["--pretrain-epochs", "5", "--epochs", "10",
                                        "--set", "s_every=1", "--set", "s_step=0.5"]}}
KEYS = ("acc", "nmi", "ari", "elbo", "clusters_used", "train_seconds")


def infoplane(data: str, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = read_history(RUNS / "vib" / f"vib-gmm-{data}-seed0")
    if not hist:
        return
    recon = [r["recon"] for r in hist]
    dvkl = [r["d_vkl"] for r in hist]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(dvkl, recon, color="0.7", lw=0.8, zorder=1)
    sc = ax.scatter(dvkl, recon, c=[r["epoch"] for r in hist], cmap="viridis", s=12, zorder=2)
    fig.colorbar(sc, ax=ax, label="epoch")
    for r in hist:
        if r["epoch"] == 1 or r["s"] != hist[r["epoch"] - 2]["s"] and r["epoch"] % 5 == 0:
            ax.annotate(f"s={r['s']:.2g}", (r["d_vkl"], r["recon"]), fontsize=7, color="0.3")
    ax.set_xlabel("D_vKL (nats per point)")
    ax.set_ylabel("reconstruction -log p(x|u) (nats per point)")
    ax.set_title(f"VIB-GMM information plane, {data}, seed 0")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=["digits", "fashion-mnist"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--figures-only", action="store_true", help="only tables and figures from finished runs")
    args = p.parse_args()
    records = []
    for data in args.data:
        for seed in args.seeds:
            for model in args.models:
                run = RUNS / "vib" / f"{model}-{data}-seed{seed}"
                if args.figures_only and not (run / "metrics.json").exists():
                    continue
                extra = SCALED.get(data, {}).get(model, [])
                records.append(dict(run_fit(model, data, seed, run, extra), seed=seed))
    write_json(RESULTS / "vib_gmm.json", records)
    lines = ["| data | model | seeds | " + " | ".join(KEYS) + " |", "|" + " --- |" * (len(KEYS) + 3)]
    for data in args.data:
        for model in args.models:
            rs = [r for r in records if r["dataset"] == data and r["model"] == model]
            if rs:
                lines.append(f"| {data} | **{model}** | {len(rs)} | " + " | ".join(mean_std([r[k] for r in rs]) for k in KEYS) + " |")
    lines += ["", "Per seed:", "", "| data | model | seed | " + " | ".join(KEYS) + " |", "|" + " --- |" * (len(KEYS) + 3)]
    for r in records:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['seed']} | " + " | ".join(mean_std([r[k]]) for k in KEYS) + " |")
    lines += ["", "Commands (per run):", ""] + [f"* `{r['command']}`" for r in records]
    (RESULTS / "vib_gmm.md").write_text("# VIB-GMM and VaDE\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines[:2 + len(args.data) * len(args.models)]))
    for data in args.data:
        infoplane(data, RESULTS / f"vib_gmm_infoplane_{data}.png")


if __name__ == "__main__":
    main()
