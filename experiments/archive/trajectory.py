"""The epochs of one run on a data set of the robustness suite: the training bound, acc and clusters used.

    python experiments/archive/trajectory.py MODEL DATA SEED [--likelihood auto] [--every 5]

Trains MODEL with its defaults on DATA (``pyro_mixvae.synthetic.robustness_suite``), K = its number
of groups, one thread, and prints the start (after pretraining) and every ``--every``-th epoch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pyro_mixvae.infer.train import TrainConfig, fit
from pyro_mixvae.synthetic import robustness_suite

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/robustness.py
from robustness import build_for  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("seed", type=int)
    p.add_argument("--likelihood", default="auto")
    p.add_argument("--every", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = robustness_suite(full=True)[args.data]
    model, likelihood = build_for(args.model, data, args.seed, likelihood=args.likelihood)
    history = fit(model, torch.as_tensor(data.x), data.y, config=TrainConfig(seed=args.seed, device="cpu"),
                  progress=False)
    print(f"{args.model} on {args.data}, seed {args.seed}, {likelihood} likelihood")
    if "acc" in history.pretrain:
        print(f"start     acc {history.pretrain['acc']:.3f}  clusters used {history.pretrain['clusters_used']}")
    for r in history.records:
        if r["epoch"] == 1 or r["epoch"] % args.every == 1 or r["epoch"] == len(history.records):
            bound = r.get("elbo", r.get("objective"))
            print(f"epoch {r['epoch']:3d} bound {bound:9.3f}  acc {r['acc']:.3f}  clusters used {r['clusters_used']}")


if __name__ == "__main__":
    main()
