"""Probe (issue 17): does a mixture that follows the codes keep a start's clusters?

    python experiments/archive/mixture_mstep.py vade arcs 2 --set gmm_assign=full
    python experiments/archive/mixture_mstep.py vade iris 2

Trains MODEL (VaDE or VIB-GMM) with its defaults on DATA of the robustness suite, twice from the same
seed: as ``mixvae fit`` does (pi, mu_c, sigma_c^2 moved by Adam with the networks), and with the
mixture set after every epoch to the maximiser of the bound in those parameters, the networks held:
with gamma_nc = p(c | mu~(x_n)) (VaDE eq. 16 at the encoder mean),

    pi_c = (1/N) sum_n gamma_nc,   mu_c = sum_n gamma_nc mu~_n / N_c,
    sigma_c^2 = sum_n gamma_nc (sigma~_n^2 + (mu~_n - mu_c)^2) / N_c,

the M-step of a GMM fitted to q(z | x) (VaDE eq. 12's terms in pi, mu_c, sigma_c). Prints acc and the
cluster sizes per epoch and appends a record per run to ``experiments/results/archive/mixture_mstep.jsonl``.
A probe, not a default: the library does not do this.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pyro_mixvae.infer.train import TrainConfig, fit
from pyro_mixvae.metrics import acc
from pyro_mixvae.synthetic import robustness_suite

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/robustness.py
from robustness import add_set_argument, build_for, settings_of  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "archive" / "mixture_mstep.jsonl"


@torch.no_grad()
def mixture_mstep(model, x: torch.Tensor) -> None:
    """Set pi, mu_c, log sigma_c^2 to the module docstring's maximiser, the encoder held."""
    loc, scale = model.encoder(x)
    gamma = torch.softmax(model.component_log_prob(loc), -1)
    n_c = gamma.sum(0) + torch.finfo(x.dtype).tiny
    mu = gamma.T @ loc / n_c[:, None]
    var = gamma.T @ (scale ** 2 + loc ** 2) / n_c[:, None] - mu ** 2
    model.pi_logits.copy_(torch.log(n_c / n_c.sum()))
    model.mu_c.copy_(mu)
    model.log_var_c.copy_(torch.log(var.clamp_min(1e-6)))


def one_run(model_name: str, data, seed: int, settings: dict, mstep: bool) -> dict:
    model, _ = build_for(model_name, data, seed, settings or None)
    x = torch.as_tensor(data.x)
    trace = []

    def after_epoch(epoch: int, record: dict) -> None:
        if mstep:
            mixture_mstep(model, x)
        with torch.no_grad():
            labels = model.responsibilities(x).argmax(1).numpy()
        sizes = np.bincount(labels, minlength=model.n_clusters).tolist()
        trace.append({"epoch": epoch, "acc": acc(data.y, labels), "sizes": sizes,
                      "bound": record.get("elbo", record.get("objective"))})

    history = fit(model, x, data.y, config=TrainConfig(seed=seed, device="cpu"), progress=False,
                  callbacks=[after_epoch])
    return {"model": model_name, "data": data.name, "seed": seed, "settings": settings, "mstep": mstep,
            "start_acc": history.pretrain.get("acc"), "end_acc": trace[-1]["acc"],
            "end_used": sum(s > 0 for s in trace[-1]["sizes"]), "collapse": history.collapse, "trace": trace}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=["vade", "vib-gmm"])
    p.add_argument("data")
    p.add_argument("seed", type=int)
    add_set_argument(p)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = robustness_suite(full=True)[args.data]
    settings = settings_of(args)
    command = "python experiments/archive/mixture_mstep.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for mstep in (False, True):
        record = {"command": command, **one_run(args.model, data, args.seed, settings, mstep)}
        shown = [t for t in record["trace"] if t["epoch"] in (1, 2, 3, 5, 10, 50) or t is record["trace"][-1]]
        print(f"{'M-step every epoch' if mstep else 'Adam only'}: start acc {record['start_acc']:.3f}")
        for t in shown:
            print(f"  epoch {t['epoch']:3d}  acc {t['acc']:.3f}  sizes {t['sizes']}")
        with open(OUT, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
