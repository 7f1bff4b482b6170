"""``mixvae``: fit, evaluate and sample mixture-prior VAEs from the command line.

    mixvae fit MODEL --data DATA [--clusters K] [--epochs E] [--pretrain-epochs P]
                     [--batch-size B] [--lr LR] [--seed S] [--device cpu|cuda]
                     [--likelihood auto|bernoulli|gaussian|gaussian-shared] [--num-particles M]
                     [--out DIR] [--resume [--override key=value]...] [--guide NAME] [--set key=value]...
                     [--distributed]
    torchrun --nproc_per_node N -m pyro_mixvae fit ...      (data-parallel; see the README)
    mixvae evaluate DIR [--data DATA] [--iw-samples S]
    mixvae select --data DATA [--models vade,gmvae] [--clusters 2-10] [--restarts R] [--holdout F] [--out DIR]
    mixvae sample DIR --n N [--cluster k] --out FILE.png
    mixvae report DIR [--out DIR/report] [--num-samples S] [--max-points N] [--projection pca|tsne]

Everything a user can get wrong is checked before any work starts and reported in one line
(``mixvae: error: ...``) with exit status 2; a non-finite loss stops training with exit
status 1 and keeps the last good checkpoint. No half-written run directory is left behind.
SIGINT (Ctrl-C) and SIGTERM end the command with one line and exit status 130 / 143; a run
keeps its last complete checkpoint, and ``metrics.json`` says it is incomplete.

``--resume`` continues the run in ``--out`` with the settings recorded in its ``config.json``:
a flag left out takes the recorded value, a flag that contradicts it is refused (listing the
differences) unless ``--override key=value`` asks for the change -- training settings (``lr``,
``batch_size``, ...) or model settings whose parameters keep their shapes -- which is then
applied, listed under ``overrides`` in ``config.json`` and marked ``changed`` in the next
history line. ``--epochs``, ``--device``, ``--eval-every`` and ``--jit`` may change freely.
The data must be those the run was trained on (``config.json``'s ``data_fingerprint``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import __version__
from .analysis import DEFAULT_DRAWS, REPORT_MAX_POINTS
from .data import check_data, check_data_options, describe_labels, load_dataset, load_partial_labels
from .errors import ConfigError, MixVAEError, NonFiniteLossError, RunError, Terminated
from .evaluation import DEFAULT_IW_SAMPLES, evaluate
from .infer import distributed
from .infer.checkpoint import CHECKPOINT
from .infer.train import SMALL_DATA, TRAIN_DEFAULTS, TRAINING_VALUES, TrainConfig, seed_everything
from .metrics import format_metrics
from .models import MODELS, get_model_class
from .models.base import DEFAULT_CLUSTERS, DEFAULT_MAX_CLUSTERS, parse_settings
from .nets import LIKELIHOOD_HELP, LIKELIHOODS
from .runner import as_model_input, check_clusters, check_components, check_seed, fit_in_directory, prepare_data, restarts
from .runs import (CONFIG, METRICS, check_output_dir, check_output_file, check_same_data, check_writable, completion,
                   load_run, read_config, read_json, read_metrics, run_lock)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise ConfigError(message)


def _key_value(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


class _KeyValues(argparse.Action):
    """``--set`` / ``--override KEY=VALUE``, repeatable, gathered into a dict: a key given twice with two
    different values is refused naming both (the last would otherwise win silently)."""

    def __call__(self, parser, namespace, value, option_string=None):
        key, text = value
        given = dict(getattr(namespace, self.dest) or {})
        if key in given and given[key] != text:
            raise ConfigError(f"{option_string} gives {key} twice: {key}={given[key]} and {key}={text}; give it once")
        given[key] = text
        setattr(namespace, self.dest, given)


def _key_values(parser, flag: str, dest: str, help: str) -> None:
    parser.add_argument(flag, dest=dest, type=_key_value, action=_KeyValues, default={}, metavar="KEY=VALUE", help=help)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mixvae", description="Deep generative clustering with mixture-prior VAEs (Pyro).")
    p.add_argument("--version", action="version", version=f"pyro_mixvae {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_fit_parser(sub)
    _add_other_parsers(sub)
    return p


def _model_defaults(key: str) -> str:
    """'50; vade 200 (100 below 10,000 points), ...': a training value's default and the models that differ
    (before sizing to the data)."""
    def one(name, cls):
        value = f"{name} {cls.train_defaults.get(key, TRAIN_DEFAULTS[key])}"
        small = cls.small_data_defaults.get(key)
        return value if small is None else f"{value} ({small} below {SMALL_DATA:,} points)"

    differ = [one(*item) for item in sorted(MODELS.items())
              if key in item[1].train_defaults or key in item[1].small_data_defaults]
    by_arch = [f"{name} ({arch}) {values[key]}" for name, cls in sorted(MODELS.items())
               for arch, values in cls.arch_train_defaults.items() if key in values]
    return "; ".join([str(TRAIN_DEFAULTS[key]), *differ, *by_arch])


def _add_data_arguments(f) -> None:
    """The data, K and the model's settings: what ``fit`` and ``settings`` share."""
    f.add_argument("model", help=f"one of: {', '.join(sorted(MODELS))}")
    f.add_argument("--data", default=None,
                   help="digits (default), arcs, mnist, fashion-mnist, svhn, or PATH.npz / PATH.csv")
    f.add_argument("--split", default=None, help="train, test or all (default; for mnist, fashion-mnist, svhn)")
    f.add_argument("--clusters", "-k", type=_clusters_value, default=None,
                   help=f"K (default: the number of classes, else {DEFAULT_CLUSTERS}), or auto: K found in the run, "
                   "read off the posterior of the weights (vade, vib-gmm)")
    f.add_argument("--max-clusters", type=int, default=None,
                   help=f"with --clusters auto: the components the model has (default {DEFAULT_MAX_CLUSTERS})")
    f.add_argument("--likelihood", default="auto", choices=LIKELIHOODS, help=LIKELIHOOD_HELP)
    _key_values(f, "--set", "settings", "a model setting, repeatable (see `mixvae settings MODEL`)")
    f.add_argument("--guide", default=None,
                   help="the variational family, for models with a guide setting (gmvae: posterior or mean-field)")


def _clusters_value(text: str):
    """--clusters: an integer K, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer K or auto; got {text!r}") from None


def _clusters_auto(args, cls) -> None:
    """``--clusters auto``: the model gets ``--max-clusters`` components (:data:`DEFAULT_MAX_CLUSTERS`) and the
    setting ``start_clusters=auto``, so that its start fills the groups the data propose and the clusters found
    are read off q(pi) (``pyro_mixvae.infer.pretrain.proposed_clusters``)."""
    if args.clusters != "auto":
        if args.max_clusters is not None:
            raise ConfigError("--max-clusters applies only with --clusters auto")
        return
    if "start_clusters" not in cls.settings:
        auto = sorted(name for name, model in MODELS.items() if "start_clusters" in model.settings)
        raise ConfigError(f"--clusters auto needs a model with a Dirichlet prior on its weights ({', '.join(auto)}); "
                          f"{args.model} has none: give --clusters K, or choose K with `mixvae select`")
    if dict(args.settings).get("start_clusters", "auto") != "auto":
        raise ConfigError("--clusters auto and --set start_clusters=all contradict each other; give one")
    args.clusters = args.max_clusters if args.max_clusters is not None else DEFAULT_MAX_CLUSTERS
    args.settings = {**dict(args.settings), "start_clusters": "auto"}


def _add_training_values(f) -> None:
    """``--epochs``, ``--lr``, ...: the training values of :class:`TrainConfig` (``TRAINING_VALUES``), each left
    None to take the model's for the data (`mixvae settings MODEL --data D`)."""
    values = f.add_argument_group("training values", "a value left out is the model's for the data: `mixvae "
                                  "settings MODEL --data D` shows them")
    for name, value in TRAINING_VALUES.items():
        values.add_argument("--" + name.replace("_", "-"), type=value.metadata["type"], default=None,
                            help=f"{value.metadata['help']} (default: {_model_defaults(name)})")


def _training_config(args, **others) -> TrainConfig:
    """The :class:`TrainConfig` of the training values given on the command line, and ``others``."""
    return TrainConfig(**{name: getattr(args, name) for name in TRAINING_VALUES}, **others)


def _add_training_arguments(f) -> None:
    """The training values, the seed, the device and how often to evaluate and checkpoint."""
    _add_training_values(f)
    f.add_argument("--seed", type=int, default=None, help="default: 0")
    f.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    f.add_argument("--eval-every", type=int, default=TrainConfig.eval_every,
                   help="epochs between two evaluations of the metrics, and the last epoch (default: a twentieth "
                   "of the epochs)")
    f.add_argument("--checkpoint-seconds", type=float, default=TrainConfig.checkpoint_seconds,
                   help="at most one checkpoint per this many seconds, and the last epoch's; 0 = every epoch "
                   "(default: %(default)s)")


def _add_fit_parser(sub) -> None:
    f = sub.add_parser("fit", help="train a model and write a run directory")
    _add_data_arguments(f)
    f.add_argument("--download", action="store_true",
                   help="fetch mnist, fashion-mnist or svhn with torchvision first (into $MIXVAE_DATA_DIR, "
                        "else ~/.cache/pyro_mixvae/datasets)")
    _add_training_arguments(f)
    f.add_argument("--out", default=None, help="run directory (default: runs/MODEL-DATA-seedS)")
    f.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with its recorded settings")
    _key_values(f, "--override", "overrides", "with --resume: change a recorded setting (lr, lr_decay, lr_step, "
                "lr_warmup, batch_size, num_particles, or a model setting that keeps the parameters' shapes); repeatable")
    f.add_argument("--restarts", type=int, default=1,
                   help="train R seeds (--seed, --seed+1, ...) and keep the best training ELBO (labels unused)")
    f.add_argument("--labels", default=None,
                   help="partial labels for semi-supervision (.npy/.npz/.csv, (N,) or (N, I), -1 = unknown; "
                        "factorial model)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                   help="trace the training loss once per batch shape (default: on for models that allow it)")
    f.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes started by torchrun (on by itself when WORLD_SIZE > 1); "
                        "--batch-size is then the global batch")


def _add_other_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="print the metrics of a run as JSON")
    e.add_argument("run_dir")
    e.add_argument("--data", default=None, help="data to evaluate on (default: the run's)")
    e.add_argument("--split", default=None)
    e.add_argument("--device", default="cpu")
    e.add_argument("--iw-samples", type=int, default=DEFAULT_IW_SAMPLES,
                   help="importance samples per point for the held-out log p(x) (0: skip); pass held-out data with "
                        "--data / --split")

    s = sub.add_parser("sample", help="draw samples from a trained model into an image")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--cluster", type=int, default=None, help="draw from this cluster (default: from the prior)")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--seed", type=int, default=0)

    r = sub.add_parser("report", help="write DIR/report/: figures, posterior.nc (ArviZ) and summary.md")
    r.add_argument("run_dir")
    r.add_argument("--out", default=None, help="report folder (default: RUN_DIR/report)")
    r.add_argument("--num-samples", type=int, default=DEFAULT_DRAWS,
                   help="draws of the global sites and per cluster (default: %(default)s)")
    r.add_argument("--max-points", type=int, default=REPORT_MAX_POINTS,
                   help="points kept in posterior.nc and the figures (default: %(default)s)")
    r.add_argument("--iw-samples", type=int, default=DEFAULT_IW_SAMPLES,
                   help="importance samples per point for log_likelihood (0: none)")
    r.add_argument("--projection", default="pca", help="pca or tsne: how a latent space above 2-D is drawn")
    r.add_argument("--seed", type=int, default=0)

    _add_select_parser(sub)

    t = sub.add_parser("settings", help="every default of a model on a data set: training values and --set keys")
    _add_data_arguments(t)
    t.add_argument("--json", action="store_true", help="as one JSON object {\"train\": ..., \"settings\": ...}")


# ----------------------------------------------------------------------------- fit
def _run_fit(args) -> dict:
    """``mixvae fit``: one run, or ``--restarts R`` runs (seeds S..S+R-1) and the best training ELBO kept."""
    cls = get_model_class(args.model)
    _check_fit_flags(args)
    _clusters_auto(args, cls)
    out = args.out_dir = Path(args.out or f"runs/{args.model}-{Path(args.data or 'digits').stem}-seed{args.seed or 0}")
    args.changes = {}
    if args.resume:
        _resume_settings(args, cls, out)
    args.data, args.split, args.seed = args.data or "digits", args.split or "all", args.seed or 0
    check_seed(args.seed)
    check_seed(args.seed + args.restarts - 1, "--seed + --restarts - 1 (the last restart's seed)")
    job = _fit_job(args, cls)
    _say_labels(args.data, job["data"])
    if args.distributed or distributed.launched():  # one rank of a torchrun job: join the process group now
        if args.restarts != 1:
            raise ConfigError("--restarts is not supported in distributed training; run the seeds as separate jobs")
        distributed.setup(TrainConfig(device=args.device).check().device, args.seed, required=args.distributed)
    if not distributed.is_main_process():
        pass  # rank 0 checks and writes the run directory
    elif args.restarts == 1 or not args.resume:
        check_writable(out, args.resume)
    elif not out.is_dir():
        raise ConfigError(f"cannot resume: {out} does not exist")
    if args.restarts == 1:
        return _fit_one(args, job, args.seed, out, args.resume)
    return _fit_restarts(args, job, out)


def _say_labels(spec: str, data) -> None:
    """For a CSV, which column the labels were read from (or that none was): its header decides, so say it."""
    if str(spec).strip().lower().endswith(".csv") and distributed.is_main_process():
        print(describe_labels(data), flush=True)


def _check_fit_flags(args) -> None:
    """What the flags alone can tell: --override only with --resume, R >= 1, options that apply to the data."""
    if args.overrides and not args.resume:
        raise ConfigError("--override applies only with --resume; for a new run give the setting as its own flag")
    if args.restarts < 1:
        raise ConfigError(f"--restarts must be >= 1; got {args.restarts}")
    if args.data is not None or not args.resume:  # on resume without --data, the recorded data (checked there)
        check_data_options(args.data or "digits", args.split, args.download)


def _fit_job(args, cls) -> dict:
    """What every restart of ``mixvae fit`` shares: the model's settings, the data (checked) and K (checked)."""
    given = dict(args.settings)
    if args.guide is not None:
        if "guide" not in cls.settings:
            raise ConfigError(f"--guide does not apply to model {args.model!r}: it has no guide setting")
        if given.get("guide", args.guide) != args.guide:
            raise ConfigError(f"--guide {args.guide} contradicts --set guide={given['guide']}")
        given["guide"] = args.guide
    settings = parse_settings(args.model, cls.settings, given)
    data = load_dataset(args.data, split=args.split, download=args.download)
    x, likelihood = prepare_data(data.x, data.y, args.likelihood)
    k = args.clusters if args.clusters is not None else (data.n_classes or DEFAULT_CLUSTERS)
    check_clusters(cls, k, len(x))
    return dict(cls=cls, given=given, settings=settings, data=data, x=x, likelihood=likelihood, k=k)


# what --resume compares with config.json: flags that may change freely are not listed
TRAIN_FLAGS = {"lr": float, "lr_decay": float, "lr_step": int, "lr_warmup": int, "batch_size": int,
               "num_particles": int, "pretrain_epochs": int, "seed": int}
OVERRIDABLE = ("lr", "lr_decay", "lr_step", "lr_warmup", "batch_size", "num_particles")


def _recorded_flags(cfg: dict) -> dict:
    """The command-line values a run directory's ``config.json`` recorded, by argparse name."""
    train = cfg["train"]
    return {"data": cfg["data"], "split": cfg.get("split", "all"), "clusters": cfg["clusters"],
            "likelihood": cfg["likelihood"], "labels": cfg.get("labels"), **{k: train.get(k) for k in TRAIN_FLAGS}}


def _resume_settings(args, cls, out: Path) -> None:
    """Fill the flags left out from ``config.json``; refuse one that contradicts it unless ``--override`` asks.

    Sets ``args.changes`` to the overrides applied, {key: [recorded, new]}.
    """
    run = out / "restart-0" if args.restarts > 1 else out
    if args.restarts == 1 or (run / CHECKPOINT).is_file():
        check_writable(run, True)
    if not (run / CONFIG).is_file() and args.restarts > 1:
        return  # no restart got as far as a checkpoint: nothing recorded yet
    cfg = read_config(run)
    if cfg["model"] != args.model:
        raise RunError(f"cannot resume: {out} holds a run of {cfg['model']}, not {args.model}")
    overrides = _parse_overrides(args, cls, cfg)
    _check_override_against_flags(args, cls, overrides)
    recorded, differences = _recorded_flags(cfg), []
    for key, old in recorded.items():
        new = getattr(args, key)
        if new is None or (key == "likelihood" and new == "auto"):
            setattr(args, key, old)
        elif key not in overrides and new != old and not (key == "data" and _same_file(new, old)):
            differences.append(f"{key.replace('_', '-')} {old} -> {new}")
    wanted = parse_settings(args.model, cls.settings, {**dict(args.settings),
                                                       **({"guide": args.guide} if args.guide else {})})
    for key in {**dict(args.settings), **({"guide": None} if args.guide else {})}:
        old = cfg["settings"].get(key, cls.settings[key].default)
        if key not in overrides and _jsonable(wanted[key]) != _jsonable(old):
            differences.append(f"{key} {_jsonable(old)} -> {_jsonable(wanted[key])}")
    if differences:
        raise RunError(f"cannot resume: the command differs from the run in {run}: {'; '.join(differences)} "
                       "(leave the flags out to keep the recorded values, or change them with --override key=value)")
    args.settings = list({**cfg["settings"], **{k: v for k, v in overrides.items() if k in cls.settings}}.items())
    args.guide = None
    for key in OVERRIDABLE:
        if key in overrides:
            setattr(args, key, overrides[key])
    args.changes = {k: [recorded.get(k, cfg["settings"].get(k)), _jsonable(v)] for k, v in overrides.items()}


def _check_override_against_flags(args, cls, overrides: dict) -> None:
    """A value given both by its flag (``--lr``, ``--set key=``, ``--guide``) and by ``--override`` must agree;
    otherwise one of the two would be dropped silently."""
    settings = {**dict(args.settings), **({"guide": args.guide} if args.guide else {})}
    for key, value in overrides.items():
        if key in TRAIN_FLAGS and getattr(args, key, None) is not None and getattr(args, key) != value:
            flag = f"--{key.replace('_', '-')} {getattr(args, key)}"
        elif key in settings and _jsonable(parse_settings(args.model, cls.settings, {key: settings[key]})[key]) \
                != _jsonable(value):
            flag = f"--guide {settings[key]}" if key == "guide" and args.guide else f"--set {key}={settings[key]}"
        else:
            continue
        raise ConfigError(f"{flag} and --override {key}={args.overrides[key]} give {key} two values; give one "
                          "(--override, to change the recorded value on resume)")


def _parse_overrides(args, cls, cfg: dict) -> dict:
    """``--override key=value`` pairs as typed values; a key that cannot be overridden is refused."""
    overrides = {}
    for key, raw in args.overrides.items():
        if key in OVERRIDABLE:
            try:
                value = TRAIN_FLAGS[key](raw)
            except ValueError:
                raise ConfigError(f"--override {key}={raw!r} is not a valid {TRAIN_FLAGS[key].__name__}") from None
            TrainConfig(**{key: value}).check()  # in range
            overrides[key] = value
        elif key in cls.settings:
            overrides[key] = parse_settings(args.model, cls.settings, {key: raw})[key]
        else:
            raise ConfigError(f"--override {key}: not a setting that can change on resume; these can: "
                              f"{', '.join(OVERRIDABLE)} and the model's settings ({', '.join(cls.settings)})")
    return overrides


def _same_file(a: str, b: str) -> bool:
    """Whether two --data values name the same file (a relative and an absolute path, say)."""
    try:
        return os.path.samefile(os.path.expanduser(a), os.path.expanduser(b))
    except (OSError, TypeError):
        return False


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _fit_one(args, job, seed: int, out: Path, resume: bool, show: bool = True) -> dict:
    """Train one model with ``seed`` into the run directory ``out`` (:func:`~pyro_mixvae.runner.fit_in_directory`);
    returns its metrics."""
    cls, x, data = job["cls"], job["x"], job["data"]
    config = _training_config(args, seed=seed, device=args.device, eval_every=args.eval_every,
                              checkpoint_seconds=args.checkpoint_seconds, jit=args.jit)
    config.check()
    seed_everything(seed)
    model = cls(x.shape[1:], job["k"], job["likelihood"], **job["settings"])
    check_components(model, len(x))
    observed = {}
    if args.labels is not None:
        if not model.accepts_labels:
            raise ConfigError(f"--labels does not apply to model {args.model!r}: it has no observed cluster sites")
        observed["labels"] = load_partial_labels(args.labels, len(x), model.cluster_counts)
    record = {"model": args.model, "data": args.data, "split": args.split, "settings_given": job["given"],
              "labels": args.labels}
    result = fit_in_directory(model, x, data.y, out, config=config, observed=observed, resume=resume,
                              progress=not args.quiet, record=record, changes=args.changes, received=args.received)
    if show and result.metrics:
        _show(out, result.metrics, result.history.pretrain)
    return result.metrics


def _show(out: Path, metrics: dict, pretrain: dict) -> None:
    print(f"run directory: {out}")
    print(format_metrics({k_: v for k_, v in metrics.items()
                          if k_ not in ("definitions", "pretrain", "restarts") and not (k_ == "collapse" and v is None)}))
    if pretrain:
        shown = {k_: pretrain[k_] for k_ in ("acc", "nmi", "ari") if k_ in pretrain}
        print("after pretraining  " + ", ".join(f"{k_} {v:.4f}" for k_, v in shown.items()))
    if pretrain and "start_clusters" in pretrain:  # --clusters auto: what the start proposed, before SVI
        print(f"start proposed     {pretrain['start_clusters']} clusters ({pretrain['start_clusters_by']}); "
              f"found {metrics.get('effective_clusters')} (q(pi))")


def _fit_restarts(args, job, out: Path) -> dict:
    """R runs with seeds S..S+R-1 in ``out/restart-r`` (:func:`~pyro_mixvae.runner.restarts`); the one with the
    best training ELBO (labels unused) is copied to ``out`` and ``metrics.json`` lists all R under ``restarts``."""
    seeds = [args.seed + r for r in range(args.restarts)]
    best, _ = restarts(seeds, lambda seed, sub, resume: _fit_one(args, job, seed, sub, resume, show=False),
                       out_dir=out, resume=args.resume, log=lambda line: print(line, flush=True))
    metrics = read_json(out / METRICS)
    print(f"kept restart {best} (the best training ELBO)")
    _show(out, metrics, metrics.get("pretrain") or {})
    return metrics


# ----------------------------------------------------------------------------- evaluate / sample
def _run_evaluate(args) -> dict:
    if args.iw_samples < 0:
        raise ConfigError(f"--iw-samples must be >= 0; got {args.iw_samples}")
    model, cfg = load_run(args.run_dir, device=args.device, what="evaluate")
    name, split = args.data or cfg["data"], args.split or cfg.get("split", "all")
    if args.split is not None:
        check_data_options(name, args.split)
    data = load_dataset(name, split=split)
    x = as_model_input(data.x)
    if x.shape[1:] != tuple(model.data_shape):
        raise ConfigError(f"data {args.data} has shape {x.shape[1:]} per point; the run was trained on {tuple(model.data_shape)}")
    if (name, split) == (cfg["data"], cfg.get("split", "all")):  # the run's own data: they must not have changed
        check_same_data(cfg, x, data.y, "evaluate", args.run_dir)
    check_data(x, data.y, likelihood=model.likelihood_name)
    metrics = evaluate(model, torch.as_tensor(x, device=torch.device(args.device)), data.y, iw_samples=args.iw_samples)
    note = completion(cfg, _stored_metrics(Path(args.run_dir), cfg))
    metrics.update({"dataset": name, "model": cfg["model"], "epochs": cfg["checkpoint_epoch"], "complete": not note})
    print(json.dumps(metrics, indent=2, sort_keys=True))
    if note:
        print(f"mixvae: note: {note}", file=sys.stderr)
    return metrics


def _stored_metrics(run: Path, cfg: dict) -> Optional[dict]:
    """``metrics.json`` if it is there, readable and this run's (evaluate does not need it), else None."""
    try:
        return read_metrics(run, cfg)
    except RunError:
        return None


MAX_SAMPLE_FIGURE = 10_000  # the images one figure of `mixvae sample` shows


def _run_sample(args) -> None:
    if not 1 <= args.n <= MAX_SAMPLE_FIGURE:
        raise ConfigError(f"--n must be between 1 and {MAX_SAMPLE_FIGURE:,} (the images of one figure); got {args.n}")
    check_seed(args.seed)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file; got {out}")
    check_output_file(out)
    model, cfg = load_run(args.run_dir, what="sample from")
    model.check_cluster(args.cluster)
    seed_everything(args.seed)
    x, c = model.sample(args.n, args.cluster)
    title = f"{cfg['model']} on {cfg['data']}: " + (f"cluster {args.cluster}" if args.cluster is not None else "prior")
    from .plots import sample_figure  # matplotlib: imported by the commands that draw, not by `mixvae fit`
    sample_figure(x.cpu().numpy(), c.cpu().numpy(), out, title=title)
    print(f"wrote {out}")


def _run_report(args) -> None:
    from .report import write_report  # matplotlib and ArviZ: imported by the commands that draw
    if not Path(args.run_dir).is_dir():
        raise ConfigError(f"{args.run_dir} is not a run directory")
    with run_lock(args.run_dir, "report", required=False):  # a read-only run may be reported elsewhere (--out)
        out = write_report(args.run_dir, args.out, num_samples=args.num_samples, max_points=args.max_points,
                           seed=args.seed, projection=args.projection, iw_samples=args.iw_samples)
    print(f"wrote {out}")


# ----------------------------------------------------------------------------- select
def _add_select_parser(sub) -> None:
    s = sub.add_parser("select", help="choose K (and the model) without labels: held-out log-likelihood and "
                                      "stability across restarts")
    s.add_argument("--data", default="digits", help="as for fit")
    s.add_argument("--split", default=None, help="as for fit")
    s.add_argument("--models", default="vade", help="comma-separated models (default vade)")
    s.add_argument("--clusters", "-k", default="2-10", help="the K grid: 2-10 or 2,4,8")
    s.add_argument("--restarts", type=int, default=3, help="seeds per candidate (stability needs >= 2)")
    s.add_argument("--holdout", type=float, default=0.2, help="fraction of the points held out")
    s.add_argument("--se-factor", type=float, default=2.0,
                   help="reported (and the rule with one restart): within this many SE of the best log-likelihood")
    s.add_argument("--stability-tie", type=float, default=0.0,
                   help="candidates whose stability (mean pairwise ARI of restarts) is within this of the highest "
                        "are ranked by held-out log-likelihood")
    s.add_argument("--iw-samples", type=int, default=DEFAULT_IW_SAMPLES, help="importance samples per held-out point")
    _add_training_values(s)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=None)
    s.add_argument("--likelihood", default="auto", choices=LIKELIHOODS)
    _key_values(s, "--set", "settings", "a setting for every model that has it, repeatable")
    s.add_argument("--out", default=None, help="output folder, resumable (default runs/select-DATA)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _k_grid(text: str) -> list:
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--clusters expects a range like 2-10 or a list like 2,4,8; got {text!r}") from None


def _run_select(args) -> None:
    """``mixvae select``: :func:`pyro_mixvae.selection.select_n_clusters` and its report."""
    from .selection import select_n_clusters, write_selection  # its report draws (matplotlib)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    given = dict(args.settings)
    unknown = [key for key in given if not any(key in get_model_class(m).settings for m in models)]
    if unknown:
        raise ConfigError(f"setting {unknown[0]!r} belongs to none of the models {', '.join(models)}")
    settings = {m: {k: v for k, v in given.items() if k in get_model_class(m).settings} for m in models}
    config = _training_config(args, device=args.device)
    check_seed(args.seed)
    if args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1; got {args.iw_samples}")
    check_data_options(args.data, args.split)
    out = Path(args.out or f"runs/select-{Path(args.data).stem}")
    check_output_dir(out)
    data = load_dataset(args.data, split=args.split or "all")
    _say_labels(args.data, data)
    selection = select_n_clusters(data.x, _k_grid(args.clusters), models=models, restarts=args.restarts,
                                  holdout=args.holdout, se_factor=args.se_factor,
                                  stability_tie=args.stability_tie, settings=settings, config=config,
                                  likelihood=args.likelihood, iw_samples=args.iw_samples, seed=args.seed,
                                  out_dir=out, y=data.y, progress=not args.quiet)
    report = write_selection(selection, out, args.command_line)
    print(selection.to_frame().drop(columns=["model"] if len(models) == 1 else []).to_string(index=False))
    print(selection.reason)
    print(f"wrote {report}")


def _run_settings(args) -> None:
    """``mixvae settings MODEL``: every default that ``mixvae fit`` with the same data arguments would use --
    the training values (its flags, :meth:`TrainConfig.for_model`) and the model's settings (``--set``)."""
    cls = get_model_class(args.model)
    _clusters_auto(args, cls)
    args.data, args.split, args.download = args.data or "digits", args.split or "all", False
    job = _fit_job(args, cls)
    model = cls(job["x"].shape[1:], job["k"], job["likelihood"], **job["settings"])
    config = asdict(TrainConfig().for_model(model, len(job["x"])))
    train = {key: config[key] for key in TRAIN_DEFAULTS}
    if args.json:
        print(json.dumps({"train": train, "settings": _jsonable(model.hparams)}))
        return
    print(f"training values of `mixvae fit` on {job['data'].name} ({len(job['x'])} points, K = {job['k']}, "
          f"{job['likelihood']} likelihood):")
    for key, value in train.items():
        print(f"  --{key.replace('_', '-'):<17} {value}")
    print("model settings (--set KEY=VALUE):")
    width = max(len(key) for key in cls.settings)
    for key, s in cls.settings.items():
        print(f"  {key:<{width}} {model.hparams[key]!r:<22} {s.help}")


@contextlib.contextmanager
def _signal_handlers():
    """SIGINT and SIGTERM raise (KeyboardInterrupt, :class:`Terminated`); yields the list of the signals received,
    first first (a signal's exception may surface as another one: a traced graph's RuntimeError)."""
    received = []

    def on_signal(signum, frame):
        received.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _interrupted(args, signum: int) -> str:
    """The one line for an interrupted command: what is kept, and how to continue it (only if true)."""
    name = signal.Signals(signum).name
    out = getattr(args, "out_dir", None)
    if getattr(args, "command", None) != "fit" or out is None:
        return f"interrupted by {name}"
    if (out / CHECKPOINT).is_file() or any(out.glob(f"restart-*/{CHECKPOINT}")):
        return (f"interrupted by {name}; {out} keeps its last complete checkpoint: continue with the same "
                f"command and --resume")
    if out.is_dir():
        return f"interrupted by {name} before the first checkpoint; nothing of this run was kept in {out}"
    return f"interrupted by {name} before the first checkpoint; nothing was kept ({out} was removed)"


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"mixvae: warning: {message}\n"


@contextlib.contextmanager
def _one_line_warnings():
    """Warnings (a cluster collapse, say) print as ``mixvae: warning: ...`` while the command runs."""
    previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = None
    with _signal_handlers() as received, _one_line_warnings():
        try:
            args = build_parser().parse_args(argv)
            args.received = received
            args.command_line = "mixvae " + " ".join(sys.argv[1:] if argv is None else argv)
            {"fit": _run_fit, "evaluate": _run_evaluate, "sample": _run_sample, "report": _run_report,
             "select": _run_select, "settings": _run_settings}[args.command](args)
        except SystemExit:
            raise
        except BaseException as e:  # a signal may surface as another exception (a traced graph's RuntimeError)
            signum = received[0] if received else signal.SIGTERM if isinstance(e, Terminated) else \
                signal.SIGINT if isinstance(e, KeyboardInterrupt) else None
            if signum is not None:
                print(f"mixvae: {_interrupted(args, signum)}", file=sys.stderr)
                return 128 + int(signum)
            if isinstance(e, BrokenPipeError):  # the reader of stdout went away (`mixvae evaluate RUN | head`)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
                return 128 + int(signal.SIGPIPE)
            if not isinstance(e, MixVAEError):
                raise
            print(f"mixvae: error: {e}", file=sys.stderr)
            return 1 if isinstance(e, (NonFiniteLossError, distributed.DistributedError)) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
