"""The run orchestrator: the data and K checks, one run into a run directory, and restarts.

Shared by ``mixvae fit`` (:mod:`pyro_mixvae.cli`) and the estimators (:mod:`pyro_mixvae.estimator`);
training in memory is :func:`pyro_mixvae.infer.fit`, which this module writes into run directories:

* :func:`prepare_data` -- the model input (float32, images as (N, C, H, W)), the likelihood
  resolved (``auto``: Bernoulli when every value lies in [0, 1], else Gaussian) and the data
  checked against it; :func:`check_clusters` -- K between the model's minimum and N.
* :func:`fit_in_directory` -- one run of the training loop written as a complete run directory
  (``config.json``, ``checkpoint.pt``, ``history.jsonl``, ``metrics.json``; :mod:`pyro_mixvae.runs`) that
  ``mixvae evaluate / sample / report`` read, locked while it trains, marked incomplete when
  stopped, and removed when it stops before its first checkpoint.
* :func:`restarts` -- R runs with seeds S, S+1, ...; the one with the best training ELBO is kept
  (the labels are never used to choose). With a directory, restart r lives in ``restart-r/`` (a
  resumed set trains only the restarts not complete), the best one's files are copied up and
  ``metrics.json`` lists all R under ``restarts``. :func:`fit_best` is the in-memory form for
  the estimators' ``n_init``.
"""
from __future__ import annotations

import contextlib
import signal
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .data import check_data
from .errors import ConfigError, NonFiniteLossError, RunError, Terminated
from .evaluation import elbo_per_point, evaluate
from .infer import distributed
from .infer.checkpoint import CHECKPOINT, atomic_write, deferred_signals, load_checkpoint, run_identity, state_mismatch
from .infer.train import History, TrainConfig, fit, saved_state, seed_everything, train
from .metrics import DEFINITIONS
from .nets import resolve_likelihood, with_identity_units
from .runs import (CONFIG, HISTORY, METRICS, check_identity, check_same_data, check_writable, data_fingerprint,
                   read_config, read_history, read_json, run_directory, run_lock, write_json)

DATA_FILE = "data.npz"  # the data of a run fitted from Python without a data set's name
RESTART_FILES = (CONFIG, CHECKPOINT, "history.jsonl")


# ----------------------------------------------------------------------------- data and K
def as_model_input(X) -> np.ndarray:
    """float32 array with images as (N, C, H, W): (N, H, W) gains a channel axis."""
    X = np.asarray(X, dtype=np.float32)
    return X[:, None] if X.ndim == 3 else X


def prepare_data(X, y=None, likelihood: str = "auto"):
    """``(x, likelihood)``: the model input of ``X``, the likelihood resolved, both checked (one-line errors)."""
    x = as_model_input(X)
    likelihood = resolve_likelihood(likelihood, x)
    check_data(x, y, likelihood=likelihood)
    return x, likelihood


def check_clusters(cls, k: int, n: int, name: str = "--clusters") -> None:
    """K must lie between the model's minimum (``cls.min_clusters``) and the number of points N."""
    if isinstance(k, bool) or int(k) != k or not cls.min_clusters <= k <= n:
        raise ConfigError(f"{name} must be between {cls.min_clusters} and the number of points ({n}); got {k!r}")


def check_components(model, n: int, name: str = "--set components") -> None:
    """Each factor's number of clusters (``model.cluster_counts``; the factorial prior's ``components``) must be
    at most the number of points N, as K is (:func:`check_clusters`): a mixture start cannot place more
    components than points."""
    ks = [int(k) for k in model.cluster_counts]
    over = [(i, k) for i, k in enumerate(ks) if k > n]
    if over:
        i, k = over[0]
        raise ConfigError(f"{name}={','.join(map(str, ks))}: factor {i} has {k} components but the data have only "
                          f"{n} points; use at most {n}")


SEED_MAX = 2 ** 32 - 1  # NumPy's seeds lie in [0, 2**32 - 1]


def check_seed(seed, name: str = "--seed") -> None:
    """A seed must be an integer that NumPy, torch and Python all accept: 0 .. 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{name} must be an integer between 0 and 2**32 - 1; got {seed!r}")


# ----------------------------------------------------------------------------- one run in a directory
@dataclass
class RunResult:
    """What :func:`fit_in_directory` gives back: the history, ``metrics.json`` and ``config.json``."""

    history: History
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def fit_in_directory(model, x, y, out_dir, *, config: Optional[TrainConfig] = None, observed=None,
                     resume: bool = False, pretrain: Optional[bool] = None, progress: bool = True,
                     data: Optional[str] = None, record: Optional[dict] = None, changes: Optional[dict] = None,
                     received: Sequence[int] = (), **train_kwargs) -> RunResult:
    """Train ``model`` (:func:`~pyro_mixvae.infer.train.train`) into the complete run directory ``out_dir``.

    ``config.json`` records the model, K, the likelihood, the settings, every training value used
    (``epochs``: the last epoch the run will reach), the data's fingerprint and ``data``: the data
    set's name, or -- left None on a new run -- the path of ``out_dir/data.npz``, where ``x`` and ``y``
    are saved. ``record`` adds or replaces keys (the command line: ``split``, ``settings_given``,
    ``labels``); ``changes`` are the settings a resume overrides ({key: [old, new]}, listed under
    ``overrides``). ``resume=True`` restores the checkpoint of ``out_dir`` (every RNG included) and trains up
    to ``epochs`` in total: an interrupted run resumed equals an uninterrupted one. A model that
    :func:`~pyro_mixvae.infer.fit` trained before continues its run (``pretrain``: see there), into the same
    directory or a new one. ``received``: the signals the caller's handlers caught (the command line's list, first
    first), what a stop is put down to in ``metrics.json`` when the exception a signal raised surfaced as another.
    """
    out = Path(out_dir)
    cfg = (config or TrainConfig()).check().for_model(model, num_data=len(x))
    distributed.setup(cfg.device, cfg.seed)  # [distributed] join the job first: rank 0 alone writes
    main = distributed.is_main_process()
    x_np = x.detach().cpu().numpy() if torch.is_tensor(x) else as_model_input(x)
    state = None if resume else saved_state(model, pretrain)
    going_on = resume or (state is not None and (out / CHECKPOINT).is_file())  # the directory's run goes on
    run_config = {}
    if main:
        check_writable(out, going_on)
        run_config = _run_config(model, x_np, y, cfg, data, state, record)
        if going_on:
            run_config = _continued_config(model, out, x_np, y, run_config, changes or {}, check_fits=resume)
    with run_directory(out, going_on) if main else contextlib.nullcontext():
        if main:
            _write_config(out, run_config, x_np, y)
        try:
            with run_identity(run_config.get("data_fingerprint")):  # the checkpoints carry the data's fingerprint
                history = train(model, x_np, y, config=cfg, observed=observed, out_dir=out, resume=resume,
                                pretrain=pretrain, progress=progress, **train_kwargs)
        except BaseException as e:
            if main:
                mark_stopped(out, run_config, e, received)
            raise
        if not main:
            return RunResult(history)
        metrics = _final_metrics(model, x_np, y, history, run_config)
        write_json(out / METRICS, metrics)
    return RunResult(history, metrics, run_config)


def _run_config(model, x, y, cfg: TrainConfig, data: Optional[str], state: Optional[dict], record) -> dict:
    """``config.json`` of a run of ``model`` with the training settings ``cfg``."""
    construction = model.construction()
    planned = cfg.epochs + (state["epoch"] if state is not None else 0)
    return {"model": model.name, "data": data, "split": "all", "clusters": model.n_clusters,
            "likelihood": model.likelihood_name, "settings": construction["settings"], "settings_given": {},
            "train": {**asdict(cfg), "epochs": planned}, "labels": None, "construction": construction,
            "data_fingerprint": data_fingerprint(x, y), **(record or {})}


def _continued_config(model, out: Path, x, y, run_config: dict, changes: dict, check_fits: bool) -> dict:
    """On resume (or continuation) in ``out``: the data must be the run's; on resume the checkpoint must belong to
    ``config.json`` (:func:`~pyro_mixvae.runs.check_identity`), hold this model and have its history beside it."""
    old = read_config(out)
    check_same_data(old, x, y, "resume", out)
    if check_fits:
        state = load_checkpoint(out / CHECKPOINT)
        check_identity(old, state, out, "resume")
        check_checkpoint_fits(model, out, changes, state)
        check_history(out, state["epoch"])
    data = run_config["data"] if run_config["data"] is not None else old["data"]
    return {**run_config, "data": data, "overrides": old.get("overrides", []) + ([changes] if changes else [])}


def check_history(out: Path, epoch: int) -> None:
    """On resume: ``history.jsonl`` must hold one record for each epoch 1..``epoch`` of the checkpoint (lines past
    it are dropped by the resume); a history emptied, removed or cut would make the run report fewer epochs."""
    found = [r["epoch"] for r in read_history(out, upto=epoch)]
    if found != list(range(1, epoch + 1)):
        have = "no epochs" if not found else f"epochs {found[0]}-{found[-1]} ({len(found)} records)"
        raise RunError(f"cannot resume: {out / HISTORY} holds {have} but {out / CHECKPOINT} is from epoch {epoch}; "
                       "the history cannot be rebuilt: restore it, or start a new run in another --out")


def _write_config(out: Path, run_config: dict, x, y) -> None:
    """``config.json``; a run without a data set's name gets ``data.npz`` (x, and y when given) beside it."""
    if run_config["data"] is None:
        path = (out / DATA_FILE).resolve()
        atomic_write(path, lambda f: np.savez(f, **({"x": x} if y is None else {"x": x, "y": np.asarray(y)})))
        run_config["data"] = str(path)
    write_json(out / CONFIG, run_config)


def _final_metrics(model, x, y, history: History, run_config: dict) -> dict:
    """``metrics.json`` of a finished run: :func:`~pyro_mixvae.evaluation.evaluate` on the training data, and the run."""
    device = next(model.parameters()).device
    metrics = evaluate(model, torch.as_tensor(x, device=device), y)
    metrics.update({"train_seconds": history.train_seconds(), "pretrain": history.pretrain,
                    "collapse": history.collapse, "dataset": run_config["data"], "model": run_config["model"],
                    "seed": run_config["train"]["seed"], "clusters": run_config["clusters"],
                    "epochs": history.records[-1]["epoch"] if history.records else 0, "epochs_planned": run_config["train"]["epochs"],
                    "complete": True, "definitions": {k: DEFINITIONS[k] for k in metrics if k in DEFINITIONS}})
    return metrics


def check_checkpoint_fits(model, out: Path, overrides: dict, state: Optional[dict] = None) -> None:
    """Before anything is written on resume: the checkpoint (``state``, else read from ``out``) must hold this
    model (construction and shapes)."""
    state = load_checkpoint(out / CHECKPOINT) if state is None else state
    mine, theirs = model.construction(), state["construction"]
    settings = dict(theirs.get("settings") or {})
    diff = [(k, theirs.get(k), mine.get(k)) for k in ("model", "data_shape", "n_clusters", "likelihood")
            if mine.get(k) != theirs.get(k)]
    diff += [(k, settings.get(k), mine["settings"].get(k)) for k in sorted(set(mine["settings"]) | set(settings))
             if k not in overrides and mine["settings"].get(k) != settings.get(k)]
    if diff:
        raise RunError(f"cannot resume: {out / CHECKPOINT} holds another model than this command asks for: "
                       + "; ".join(f"{k} {a} in the checkpoint, {b} asked" for k, a, b in diff))
    problem = state_mismatch(model.state_dict(), with_identity_units(model, state["model"]))
    if problem:
        raise RunError(f"cannot resume: {out / CHECKPOINT} does not fit the model asked for ({problem})")


def mark_stopped(out: Path, run_config: dict, error: BaseException, received: Sequence[int] = ()) -> None:
    """After a stop with a checkpoint on disk, ``metrics.json`` says the run is incomplete, where and why."""
    if not (out / CHECKPOINT).is_file():
        (out / DATA_FILE).unlink(missing_ok=True)
        return  # nothing kept: the run directory goes
    signum = received[0] if received else (signal.SIGTERM if isinstance(error, Terminated) else
                                           signal.SIGINT if isinstance(error, KeyboardInterrupt) else None)
    why = (f"interrupted by {signal.Signals(signum).name}" if signum is not None
           else "stopped by a non-finite loss or parameters" if isinstance(error, NonFiniteLossError)
           else f"stopped by an error ({type(error).__name__})")
    try:
        epochs = read_history(out)
    except RunError:
        epochs = []
    with deferred_signals():
        write_json(out / METRICS, {"complete": False, "stopped": why, "epochs": epochs[-1]["epoch"] if epochs else 0,
                                   "epochs_planned": run_config["train"]["epochs"], "model": run_config["model"],
                                   "dataset": run_config["data"], "seed": run_config["train"]["seed"],
                                   "clusters": run_config["clusters"]})


# ----------------------------------------------------------------------------- restarts
def best_index(results: Sequence[dict]) -> int:
    """The restart with the best (highest) training ELBO; the labels play no part."""
    return max(range(len(results)), key=lambda i: results[i]["elbo"])


def restarts(seeds: Sequence[int], train_one: Callable, *, out_dir=None, resume: bool = False,
             log: Optional[Callable[[str], None]] = None):
    """Train one run per seed with ``train_one(seed, directory, resume) -> result`` (a dict with ``elbo``);
    returns ``(best, results)``, ``best`` the index of the best training ELBO.

    With ``out_dir`` restart r trains in ``out_dir/restart-r`` (``directory``; None without ``out_dir``),
    a complete one (its ``metrics.json`` says so) is read back instead of trained again, the best one's
    files are copied to ``out_dir`` and ``metrics.json`` there lists every restart. ``out_dir`` is
    locked meanwhile, and removed again if it was new and nothing was trained.
    """
    if out_dir is None:
        results = [train_one(seed, None, False) for seed in seeds]
        return best_index(results), results
    out = Path(out_dir)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be created: {e.strerror}") from None
    try:
        with run_lock(out, "fit"):
            results = [_restart(r, seed, train_one, out, resume, log) for r, seed in enumerate(seeds)]
            return _keep_best(out, results), results
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was trained: leave no empty run directory behind
        raise


def _restart(r: int, seed: int, train_one: Callable, out: Path, resume: bool, log) -> dict:
    sub = out / f"restart-{r}"
    metrics = read_json(sub / METRICS) if (sub / METRICS).exists() else {}
    if not metrics.get("complete", bool(metrics)):  # not finished (an interrupted one says complete: false)
        again = resume and (sub / CHECKPOINT).exists()
        if not again:
            check_writable(sub, False)
        metrics = train_one(seed, sub, again)
    if log is not None:
        log(f"restart {r} (seed {seed}): elbo {metrics['elbo']:.4f}"
            + (f", acc {metrics['acc']:.4f}" if "acc" in metrics else ""))
    return metrics


def _keep_best(out: Path, results: list) -> int:
    """Copy the best restart's files up to ``out`` (each atomically) and write the summary ``metrics.json``."""
    best = best_index(results)
    for name in RESTART_FILES:  # atomically: an interrupt leaves the old file or the new one
        atomic_write(out / name, lambda f, src=out / f"restart-{best}" / name: f.write(src.read_bytes()))
    keep = ("seed", "elbo", "acc", "nmi", "ari", "clusters_used", "train_seconds")
    write_json(out / METRICS, dict(results[best], selected_restart=best, selected_by="elbo",
                                   restarts=[{k: m[k] for k in keep if k in m} for m in results]))
    return best


def fit_best(build: Callable, x, y=None, *, seeds: Sequence[int], config: Optional[TrainConfig] = None,
             progress: bool = False):
    """Restarts in memory (the estimators' ``n_init``): ``build(seed) -> (model, observed)`` once per seed, each
    trained by :func:`~pyro_mixvae.infer.fit`; returns ``(best, results)``, each result ``{seed, elbo, model,
    history}`` and the last epoch's acc / NMI / ARI when ``y`` is given. The ELBO is that of the training data
    (:func:`~pyro_mixvae.evaluation.elbo_per_point`), computed only when there is a choice to make."""
    config = config or TrainConfig()

    def one(seed, directory, resume):
        seed_everything(seed)
        model, observed = build(seed)
        history = fit(model, x, y, config=replace(config, seed=seed), observed=observed, progress=progress)
        elbo = elbo_per_point(model, torch.as_tensor(x, device=next(model.parameters()).device)) \
            if len(seeds) > 1 else None
        last = history.last()
        return {"seed": seed, "elbo": elbo, "model": model, "history": history,
                **{k: last[k] for k in ("acc", "nmi", "ari") if k in last}}

    return restarts(seeds, one)
