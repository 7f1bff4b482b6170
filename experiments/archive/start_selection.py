"""Which mixture start to keep: the diagonal GMM, the full GMM and the t-SNE start on the codes (issue 17).

    python experiments/archive/start_selection.py --data digits --seeds 0 1 2 3 4
    python experiments/archive/start_selection.py --data arcs --seeds 0 1 2 3 4

For each seed, VaDE is pretrained as ``mixvae fit vade`` does (its default pretraining), then the three
starts are fitted on the autoencoder's codes: ``gmm_assign=diag``, ``full`` and ``tsne``
(:func:`pyro_mixvae.infer.pretrain.fit_diag_gmm`). For each: the acc of its hard labels, and two
label-free scores of those labels -- the silhouette on the codes and on the standardised codes.
``--data`` names a set of the robustness suite (``pyro_mixvae.synthetic.robustness_suite``), of
``experiments/other_sets.py``, or of ``mixvae fit --data``. Appends the records, with the command, to
``experiments/results/archive/start_selection.json`` (one process at a time: each rewrites the file).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import silhouette_score

from pyro_mixvae.data import load_dataset
from pyro_mixvae.infer.pretrain import encode_means, fit_diag_gmm
from pyro_mixvae.infer.train import TrainConfig, fit, seed_everything
from pyro_mixvae.metrics import acc
from pyro_mixvae.models import build
from pyro_mixvae.nets import resolve_likelihood
from pyro_mixvae.synthetic import robustness_suite

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/other_sets.py
from other_sets import other_sets  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "archive" / "start_selection.json"
ASSIGNS = ("diag", "full", "tsne")


def labels_of(z: np.ndarray, weights, means, variances) -> np.ndarray:
    """Hard labels under the diagonal Gaussian mixture (weights, means, variances)."""
    log_p = (np.log(weights) - 0.5 * (np.log(2 * np.pi * variances).sum(1))
             - 0.5 * (((z[:, None] - means[None]) ** 2) / variances[None]).sum(-1))
    return log_p.argmax(1)


def one_seed(data, seed: int) -> dict:
    k = len(np.unique(data.y))
    seed_everything(seed)
    model = build("vade", data.x.shape[1:], k, resolve_likelihood("auto", data.x))
    x = torch.as_tensor(data.x)
    fit(model, x, config=TrainConfig(seed=seed, device="cpu", epochs=0), progress=False)
    z = encode_means(model.encoder, x).numpy().astype(np.float64)
    zs = (z - z.mean(0)) / z.std(0)
    record = {"seed": seed}
    for assign in ASSIGNS:
        labels = labels_of(z, *fit_diag_gmm(z, k, seed, n_init=10, assign=assign)[:3])
        several = len(np.unique(labels)) > 1
        record[assign] = {"acc": acc(data.y, labels),
                          "silhouette_codes": float(silhouette_score(z, labels)) if several else -1.0,
                          "silhouette_standardised": float(silhouette_score(zs, labels)) if several else -1.0}
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    named = {**robustness_suite(full=True), **other_sets()}
    data = named[args.data] if args.data in named else load_dataset(args.data)
    records = json.loads(OUT.read_text()) if OUT.exists() else []
    command = "python experiments/archive/start_selection.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for seed in args.seeds:
        record = {"data": args.data, "command": command, **one_seed(data, seed)}
        print(json.dumps(record), flush=True)
        records.append(record)
        OUT.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
