"""Does a narrower network fit a small table better? Held-out bound per encoder width (issue 17).

    python experiments/archive/heldout_widths.py --model vade --data breast-cancer --seed 1 \\
        --widths 500,500,2000 128,128,512 64,64,256 [--likelihood gaussian]

For each width: the model with its defaults (that width) is trained on a random 80 % of a data set
of the robustness suite (or ``digits``), then its ELBO per point is computed on the training part
and on the 20 % held out, and its acc on all points. A training bound far above the held-out one
is a network that fits its points rather than the groups. Appends one record per run to
``experiments/results/archive/heldout_widths.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pyro_mixvae.data import load_dataset
from pyro_mixvae.evaluation import evaluate
from pyro_mixvae.infer.train import TrainConfig, fit, seed_everything
from pyro_mixvae.models import build
from pyro_mixvae.nets import resolve_likelihood
from pyro_mixvae.synthetic import robustness_suite

RESULTS = Path(__file__).resolve().parents[1] / "results" / "archive" / "heldout_widths.jsonl"


def one(model_name: str, data, seed: int, widths: str, likelihood: str) -> dict:
    k = len(np.unique(data.y))
    lik = resolve_likelihood(likelihood, data.x)
    perm = np.random.default_rng(100 + seed).permutation(len(data.x))
    train, test = perm[: int(0.8 * len(perm))], perm[int(0.8 * len(perm)):]
    seed_everything(seed)
    model = build(model_name, data.x.shape[1:], k, lik, {"hidden": widths})
    x = torch.as_tensor(data.x)
    history = fit(model, x[train], data.y[train], config=TrainConfig(seed=seed, device="cpu"), progress=False)
    held_out, trained, every = (evaluate(model, x[i], data.y[i]) for i in (test, train, np.arange(len(x))))
    return {"model": model_name, "data": data.name, "seed": seed, "hidden": widths, "likelihood": lik,
            "start_acc": history.pretrain.get("acc"), "train_elbo": trained["elbo"], "test_elbo": held_out["elbo"],
            "acc": every["acc"], "used": every["clusters_used"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vade")
    p.add_argument("--data", default="breast-cancer", help="a data set of the robustness suite, or digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--widths", nargs="+", default=["500,500,2000", "128,128,512", "64,64,256"])
    p.add_argument("--likelihood", default="auto")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("digits") if args.data == "digits" else robustness_suite(full=True)[args.data]
    for widths in args.widths:
        record = {**one(args.model, data, args.seed, widths, args.likelihood),
                  "command": "python experiments/archive/heldout_widths.py " + " ".join(sys.argv[1:] if argv is None else argv)}
        print(json.dumps(record), flush=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
