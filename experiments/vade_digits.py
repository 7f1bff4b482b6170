"""VaDE on scikit-learn's digits with the default settings, seeds 0-2, as the README runs it.

    python experiments/vade_digits.py [--seeds 0 1 2] [--out experiments/runs]

Runs ``mixvae fit vade --data digits --seed S`` for each seed (resuming a run that was
interrupted), and writes ``experiments/results/vade_digits.json`` (one record per seed, the
metrics.json of the run) and ``experiments/results/vade_digits.md`` (a table).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default=str(HERE / "runs"))
    p.add_argument("extra", nargs="*", help="further arguments for mixvae fit")
    args = p.parse_args()
    records = []
    for seed in args.seeds:
        run = Path(args.out) / f"vade-digits-seed{seed}"
        if not (run / "metrics.json").exists():
            cmd = [sys.executable, "-m", "pyro_mixvae", "fit", "vade", "--data", "digits", "--seed", str(seed),
                   "--out", str(run), "--quiet", *args.extra]
            if (run / "checkpoint.pt").exists():
                cmd.append("--resume")
            t0 = time.time()
            subprocess.run(cmd, check=True)
            print(f"seed {seed}: {time.time() - t0:.0f} s wall", flush=True)
        record = json.loads((run / "metrics.json").read_text())
        if "pretrain" not in record:  # runs made before metrics.json carried it: read the checkpoint
            import torch

            state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
            record["pretrain"] = state["extra"].get("pretrain", {})
        records.append(record)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "vade_digits.json").write_text(json.dumps(records, indent=2) + "\n")
    keys = ("acc", "acc_cluster_label", "nmi", "ari", "elbo", "clusters_used", "train_seconds")
    lines = ["| seed | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
    for r in records:
        lines.append(f"| {r['seed']} | " + " | ".join(_fmt(r[k]) for k in keys) + " |")
    lines.append("| mean | " + " | ".join(_fmt(statistics.mean(r[k] for r in records)) for k in keys) + " |")
    (results / "vade_digits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
