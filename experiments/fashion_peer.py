"""Fashion-MNIST against the peer, side by side (issue 34): accuracy for the time.

    python experiments/fashion_peer.py --side peer [--seeds 0 1 2]      # ClustPy's VaDE with its defaults
    python experiments/fashion_peer.py --side ours [--seeds 0 1 2] [--model vade] [--epochs 300]
    python experiments/fashion_peer.py --side ours --model gmvae --label gmvae-mlp --fit-args "--set arch=mlp"
    python experiments/fashion_peer.py --table                           # results/fashion_peer.md

The peer is ClustPy's VaDE (``clustpy.deep.VaDE``, its defaults: 100 autoencoder and 150 clustering
epochs, batches of 256) on the 70,000 images (train and test), installed in a folder of its own and
never a dependency of this project: ``pip install --no-deps --target ~/peer/site clustpy`` (its other
requirements -- torch, scikit-learn, ... -- are this project's); ``--peer-site`` names the folder.
Each peer run is one process (``OMP_NUM_THREADS=1``); its acc, NMI (this package's metrics) and wall
time are appended to ``RESULTS/fashion_peer.jsonl``. A peer run cannot resume: a killed one starts over.

Our side is one long ``mixvae fit MODEL --data fashion-mnist --seed S --epochs E`` per seed into
``RUNS/fashion_peer/MODEL-sS`` (default ``~/mixvae-runs``, outside the checkout), finished runs skipped and
interrupted ones resumed (``--resume``), one thread each. Its ``history.jsonl`` gives accuracy against
time: the step decay of the learning rate does not depend on the planned epochs, so the run's state at
epoch e is that of a run of e epochs; the time at epoch e is the pretraining's seconds plus the epochs'.
``--table`` reads, for each budget (the peer's mean wall time, over the records not marked ``"loaded"`` -- a run
the machine's load slowed -- and half of it), every seed's last epoch
within it: acc and NMI as mean ± sd, and the run with the best training objective at that epoch, chosen
without labels. ``--data`` and ``--fit-args`` run the same on other data (the suite's test uses a small file).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import ROOT, add_output_arguments, record_command, run_fit  # noqa: E402

PEER_SITE = Path.home() / "peer" / "site"
RUNS = Path.home() / "mixvae-runs"
BUDGETS = (("the peer's time", 1.0), ("half the peer's time", 0.5))


def peer_one(seed: int, data: str) -> dict:
    """One ClustPy VaDE run with its defaults (in the peer's process); returns its record."""
    import numpy as np
    from clustpy.deep import VaDE

    from pyro_mixvae.data import load_dataset
    from pyro_mixvae.metrics import acc, nmi

    dataset = load_dataset(data, split="all") if not data.endswith(".npz") else load_dataset(data)
    x = dataset.x.reshape(len(dataset.x), -1).astype(np.float32)
    start = time.perf_counter()
    labels = VaDE(n_clusters=int(np.unique(dataset.y).size), random_state=seed).fit(x).labels_
    wall = time.perf_counter() - start
    return {"side": "peer", "model": "clustpy.deep.VaDE", "seed": seed, "points": len(x),
            "acc": acc(dataset.y, labels), "nmi": nmi(dataset.y, labels), "wall_seconds": wall}


def recorded(results: Path) -> list:
    path = results / "fashion_peer.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def append(results: Path, record: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "fashion_peer.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def run_peer(args) -> None:
    done = {(r["seed"], r.get("data")) for r in recorded(args.results) if r["side"] == "peer"}
    for seed in args.seeds:
        if (seed, args.data) in done:
            print(f"peer seed {seed}: recorded, skipped", flush=True)
            continue
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(args.peer_site), str(ROOT)])}
        out = subprocess.run([sys.executable, __file__, "--peer-one", str(seed), "--data", args.data],
                             env=env, check=True, capture_output=True, text=True).stdout
        record = {**json.loads(out.strip().splitlines()[-1]), "data": args.data, "script": record_command()}
        append(args.results, record)
        print(f"peer seed {seed}: acc {record['acc']:.4f}, {record['wall_seconds']:.0f} s", flush=True)


def curve(run: Path) -> list:
    """[(seconds since the start of pretraining, acc, nmi, objective)] per epoch of a run directory."""
    metrics = json.loads((run / "metrics.json").read_text())
    elapsed = (metrics.get("pretrain") or {}).get("seconds") or 0.0
    points = []
    for line in (run / "history.jsonl").read_text().splitlines():
        r = json.loads(line)
        elapsed += r["seconds"]
        points.append((elapsed, r.get("acc"), r.get("nmi"), r.get("objective", r.get("elbo"))))
    return points


def run_ours(args) -> None:
    for seed in args.seeds:
        run = args.runs / "fashion_peer" / f"{args.label}-s{seed}"
        metrics = run_fit(args.model, args.data, seed, run, ["--epochs", str(args.epochs), *args.fit_args])
        done = {(r["seed"], label_of(r), r.get("data")) for r in recorded(args.results) if r["side"] == "ours"}
        if (seed, args.label, args.data) not in done:
            append(args.results, {"side": "ours", "model": args.model, "label": args.label, "seed": seed,
                                  "data": args.data, "acc": metrics["acc"], "nmi": metrics["nmi"], "curve": curve(run),
                                  "command": metrics["command"], "script": record_command()})
        print(f"ours {args.label} seed {seed}: acc {metrics['acc']:.4f}", flush=True)


def label_of(record: dict) -> str:
    """A configuration's name in the records: ``--label`` (the model's name where none was given)."""
    return record.get("label", record["model"])


def at_budget(points: list, seconds: float):
    """The last evaluated epoch (acc not None: the metrics are computed every eval_every epochs) within ``seconds``."""
    within = [p for p in points if p[0] <= seconds and p[1] is not None]
    return within[-1] if within else None


def mean_sd(values) -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(args) -> str:
    records = [r for r in recorded(args.results) if r.get("data") == args.data]
    peer = [r for r in records if r["side"] == "peer"]
    ours = [r for r in records if r["side"] == "ours"]
    labels = sorted({label_of(r) for r in ours})
    lines = ["# Fashion-MNIST against ClustPy's VaDE, side by side (issue 34)", "",
             f"Made by `{record_command()}` from `fashion_peer.jsonl`; every run one thread on one machine, at most "
             "two at a time. Budget: wall seconds from the start of pretraining (ours: read off the run's history, "
             "see the script's docstring). ELBO-selected: the seed with the best training objective at that "
             "epoch, chosen without labels.", "",
             "| side | budget | seeds | acc | nmi | ELBO-selected acc |", "| --- | --- | --- | --- | --- | --- |"]
    if peer:
        timed = [r["wall_seconds"] for r in peer if not r.get("loaded")]  # a run on an oversubscribed machine: no budget
        wall = statistics.mean(timed)
        lines.append(f"| ClustPy VaDE (defaults) | {wall / 60:.1f} min ({len(timed)} of {len(peer)} seeds timed) | "
                     f"{len(peer)} | {mean_sd(r['acc'] for r in peer)} | {mean_sd(r['nmi'] for r in peer)} | |")
        for name, share in BUDGETS:
            for model in labels:
                hits = [(r["seed"], at_budget(r["curve"], share * wall)) for r in ours if label_of(r) == model]
                hits = [(s, p) for s, p in hits if p is not None]
                if hits:
                    best = max(hits, key=lambda h: h[1][3])
                    lines.append(f"| pyro_mixvae {model} | {name} ({share * wall / 60:.1f} min) | {len(hits)} | "
                                 f"{mean_sd(p[1] for _, p in hits)} | {mean_sd(p[2] for _, p in hits)} | "
                                 f"{best[1][1]:.3f} (seed {best[0]}) |")
    for model in labels:
        rs = [r for r in ours if label_of(r) == model]
        lines.append(f"| pyro_mixvae {model} | whole run ({statistics.mean(r['curve'][-1][0] for r in rs) / 60:.1f} min) | "
                     f"{len(rs)} | {mean_sd(r['acc'] for r in rs)} | {mean_sd(r['nmi'] for r in rs)} | |")
    text = "\n".join(lines) + "\n"
    (args.results / "fashion_peer.md").write_text(text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", choices=("peer", "ours"))
    p.add_argument("--table", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--model", default="vade")
    p.add_argument("--label", default=None, help="the configuration's name: its run directories LABEL-sS and its "
                   "rows in the table (default: the model's name; give one with --fit-args)")
    p.add_argument("--epochs", type=int, default=300, help="our runs' planned SVI epochs (default 300)")
    p.add_argument("--peer-site", type=Path, default=PEER_SITE)
    p.add_argument("--peer-one", type=int, default=None, help=argparse.SUPPRESS)
    add_output_arguments(p)
    p.set_defaults(runs=RUNS)
    args = p.parse_args(argv)
    args.label = args.label or args.model
    if args.peer_one is not None:
        print(json.dumps(peer_one(args.peer_one, args.data)))
    elif args.side == "peer":
        run_peer(args)
    elif args.side == "ours":
        run_ours(args)
    if args.table:
        print(table(args))


if __name__ == "__main__":
    main()
