"""Choose a model's network widths and epochs for a data set without its labels: train each
candidate for seeds 0-4 and compare the training ELBO (a bound on log p(x), comparable across
networks on the same data), its curve over the epochs, and the time; labels only score the runs.

    python experiments/archive/size_defaults.py --data digits --model vade \\
        --widths 500,500,2000 256,256,1024 128,128,512 64,64,256 --jobs 2

Writes ``size_defaults-DATA-MODEL.md`` (the table, with the command) and ``.json`` (every run's
ELBO and accuracy per epoch, its seconds) under ``--results`` (default ``experiments/results/archive``). For VIB-GMM the curve is its
objective, the cost of Algorithm 2, which is the ELBO once the annealed weight s has reached 1. Resumable: finished runs are read back.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/common.py

from common import RESULTS, add_output_arguments, mean_std, read_history, record_command, run_fit, write_json  # noqa: E402


def suffix(fit_args: list) -> str:
    """'-epochs100lr-step5' for ``--epochs 100 --lr-step 5``: runs and results of other --fit-args apart."""
    tag = "".join(a.lstrip("-") for a in fit_args).replace("=", "")
    return f"-{tag}" if tag else ""


def one(model: str, data: str, widths: str, seed: int, runs: Path, fit_args: list) -> dict:
    run = runs / f"size-{model}-{data}-h{widths.replace(',', '-')}{suffix(fit_args)}-s{seed}"
    metrics = run_fit(model, data, seed, run, ["--set", f"hidden={widths}", *fit_args])
    history = read_history(run)
    return {"widths": widths, "seed": seed, "elbo": metrics["elbo"], "acc": metrics["acc"],
            "pretrain_acc": metrics["pretrain"].get("acc"), "train_seconds": metrics["train_seconds"],
            "elbo_curve": [r.get("elbo", r.get("objective")) for r in history], "acc_curve": [r.get("acc") for r in history],
            "command": metrics["command"]}


def plateau_epoch(curves: list, within: float) -> int:
    """The first epoch from which the seeds' mean ELBO stays within ``within`` nats of its last value."""
    mean = [statistics.mean(c[i] for c in curves) for i in range(min(len(c) for c in curves))]
    last = mean[-1]
    for i in range(len(mean)):
        if all(abs(v - last) <= within for v in mean[i:]):
            return i + 1
    return len(mean)


def table(records: list, within: float) -> str:
    rows = ["| widths | training ELBO | acc | ELBO-selected acc | epoch of the plateau | train seconds |",
            "| --- | --- | --- | --- | --- | --- |"]
    for widths in dict.fromkeys(r["widths"] for r in records):
        rs = [r for r in records if r["widths"] == widths]
        best = max(rs, key=lambda r: r["elbo"])
        rows.append(f"| {widths} | {mean_std([r['elbo'] for r in rs])} | {mean_std([r['acc'] for r in rs])} | "
                    f"{best['acc']:.3f} (seed {best['seed']}) | {plateau_epoch([r['elbo_curve'] for r in rs], within)} | "
                    f"{mean_std([r['train_seconds'] for r in rs])} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--model", default="vade")
    p.add_argument("--widths", nargs="+", default=["500,500,2000", "256,256,1024", "128,128,512", "64,64,256"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--within", type=float, default=0.5, help="nats per point that count as the plateau")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, one thread each")
    add_output_arguments(p)
    p.set_defaults(results=RESULTS / "archive")
    args = p.parse_args(argv)
    jobs = [(args.model, args.data, w, s, args.runs, args.fit_args) for w in args.widths for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(lambda job: one(*job), jobs))
    stem = args.results / f"size_defaults-{args.data}-{args.model}{suffix(args.fit_args)}"
    write_json(stem.with_suffix(".json"), records)
    text = (f"Written by `{record_command(argv)}` (one thread per run, {args.jobs} at a time).\n\n"
            f"{table(records, args.within)}\n\nThe plateau: the first epoch from which the seeds' mean training "
            f"ELBO stays within {args.within} nats per point of its last value.\n")
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
