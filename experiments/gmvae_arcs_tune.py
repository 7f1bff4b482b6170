"""One GMVAE training run on arcs (K = 8) for the tuning study of issue 3, with the accuracy over epochs.

    OMP_NUM_THREADS=1 python experiments/gmvae_arcs_tune.py NAME SEED [key=value ...] [--out FILE]

Keys: the model settings ``guide``, ``eta``, ``alpha``, ``lam``, ``eta_warmup``, ``eta_warmup_epochs``; the
training settings ``epochs``, ``lr``, ``lr_step``, ``lr_decay``, ``batch_size``, ``num_particles``
(the model's and the CLI's defaults where absent: 200 epochs, lr 0.002 x0.9 every 20 epochs, batch 100); ``sched=ATTR:START:STOP:EPOCHS[,...]`` -- linear schedules on attributes
of the ELBO object (``eta``, ``alpha``, ``lam``), passed to ``fit`` in place of the model's own schedules;
``init=NAME`` -- a change to the initialisation, one of :data:`INITS`.

Appends one JSON line to ``--out`` (default ``experiments/results/gmvae_arcs_tune.jsonl``) and prints
it: the command, name, seed, the final (epoch, acc_cluster_label, clusters used, training objective)
and the same at epochs 1-5 and every 10th epoch. Training is ``pyro_mixvae.infer.fit``, as in
``mixvae fit gmvae --data arcs --clusters 8`` (same seeding, same data), so a run without ``sched`` and
``init`` reproduces the CLI's run of the same settings and seed.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import RESULTS, record_command
from pyro.poutine.messenger import Messenger

from pyro_mixvae.data import load_dataset
from pyro_mixvae.infer.schedules import LinearSchedule
from pyro_mixvae.infer.train import TrainConfig, fit, seed_everything
from pyro_mixvae.metrics import acc_cluster_label, clusters_used
from pyro_mixvae.models.gmvae import COMPONENT_INIT_RADIUS, GMVAE

FLOAT_SETTINGS = ("eta", "alpha", "lam", "eta_warmup")
MODEL_KEYS = ("guide", "eta", "alpha", "lam", "eta_warmup", "eta_warmup_epochs")
TRAIN_KEYS = {"epochs": int, "lr": float, "lr_step": int, "lr_decay": float, "batch_size": int, "num_particles": int}


class _ScaleSite(Messenger):
    """Multiply the log-density of one named sample site by ``weight[0]`` (read at each call)."""

    def __init__(self, name, weight):
        super().__init__()
        self.name, self.weight = name, weight

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == self.name:
            msg["scale"] = msg["scale"] * self.weight[0]


def _w_warmup(model, config, callbacks, epochs=30):
    """Weight s on the w site's log-densities in model and guide (a KL warm-up on w only), s = epoch / 30,
    at least 0.01; the traced loss is off because s changes inside the programs."""
    weight = [0.01]
    model.model, model.guide = (_ScaleSite("w", weight)(model.model), _ScaleSite("w", weight)(model.guide))
    config["jit"] = False
    callbacks.append(lambda epoch, record: weight.__setitem__(0, max(0.01, min(1.0, epoch / epochs))))


def _encoder_decay(model, rate):
    """Decoupled weight decay on the encoder (z head and shared body): after each optimizer step every
    encoder weight is multiplied by 1 - lr * rate (lr 0.002, the CLI's start value)."""
    params = list(model.encoder.parameters())
    step = model.after_step

    def after_step(*args, **kwargs):
        step(*args, **kwargs)
        with torch.no_grad():
            for p in params:
                p.mul_(1.0 - 0.002 * rate)

    model.after_step = after_step


INITS = {
    "circle": lambda model, config, callbacks: model.place_components_on_circle(COMPONENT_INIT_RADIUS),
    "nocircle": lambda model, config, callbacks: model.components.net[-1].reset_parameters(),
    "r05": lambda model, config, callbacks: model.place_components_on_circle(COMPONENT_INIT_RADIUS / 3),
    "wbig": lambda model, config, callbacks: model.components.net[0].weight.data.mul_(5.0),
    "wwarm": _w_warmup,
    "wd0.1": lambda model, config, callbacks: _encoder_decay(model, 0.1),
    "wd1": lambda model, config, callbacks: _encoder_decay(model, 1.0),
}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("name", help="a name for the run, copied to the output")
    p.add_argument("seed", type=int)
    p.add_argument("settings", nargs="*", metavar="key=value", help="model / training settings, sched=, init=")
    p.add_argument("--out", type=Path, default=RESULTS / "gmvae_arcs_tune.jsonl", help="JSON lines file appended to")
    args = p.parse_args(argv)
    bad = [a for a in args.settings if "=" not in a]
    if bad:
        p.error(f"settings are key=value: {bad}")
    return args


def main(argv=None):
    args = parse(argv)
    name, seed = args.name, args.seed
    kw = dict(a.split("=", 1) for a in args.settings)
    settings = {k: (float(kw.pop(k)) if k in FLOAT_SETTINGS else kw.pop(k)) for k in list(kw) if k in MODEL_KEYS}
    schedules = [LinearSchedule(a, float(b), float(c), int(e))
                 for a, b, c, e in (s.split(":") for s in kw.pop("sched", "").split(",") if s)]
    config = {"seed": seed, "device": "cpu"}
    config.update({k: TRAIN_KEYS[k](kw.pop(k)) for k in list(kw) if k in TRAIN_KEYS})
    init = kw.pop("init", None)
    if kw:
        raise SystemExit(f"unknown keys: {sorted(kw)}")
    data = load_dataset("arcs")
    x = torch.as_tensor(data.x)
    seed_everything(seed)
    model = GMVAE(x.shape[1:], 8, "gaussian", **settings)
    callbacks = []
    if init:
        INITS[init](model, config, callbacks)
    trajectory = []

    def record(epoch, rec):
        if epoch % 10 == 0 or epoch <= 5:
            model.eval()
            proba = model.responsibilities(x).numpy()
            model.train()
            trajectory.append((epoch, round(acc_cluster_label(data.y, proba), 3), clusters_used(proba.argmax(1)),
                               round(rec.get("objective", rec.get("elbo", float("nan"))), 3)))

    start = time.time()
    fit(model, x, data.y, config=TrainConfig(**config), schedules=schedules or None, progress=False,
        callbacks=[record] + callbacks)
    line = json.dumps({"command": record_command(argv), "name": name, "seed": seed, "args": args.settings,
                       "final": trajectory[-1], "traj": trajectory, "sec": round(time.time() - start)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    main()
