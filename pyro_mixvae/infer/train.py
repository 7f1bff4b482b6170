"""The SVI training loop shared by every model.

:func:`fit` maximises an ELBO of a :class:`~pyro_mixvae.models.MixtureVAE` by stochastic
variational inference: each step draws a minibatch, asks the ELBO object (``TraceEnum_ELBO``
by default, or any subclass passed in) for its differentiable loss of ``model.model`` and
``model.guide`` and takes one step of a single torch Adam optimizer over all the module's
parameters (:func:`svi_step`, :func:`make_optimizer`). For a static model
(``model.jit_compatible``) the loss is traced once per batch shape and replayed as a graph
(:mod:`.compiled`; ``TrainConfig.jit`` / ``--jit``, ``--no-jit``). The loss is divided by N, so that the number printed and recorded is the ELBO
per data point in nats; the plate inside the model scales the minibatch by N / B.

``fit`` is a composition of small parts: :func:`prepare` (the :class:`TrainingRun`: config,
device, optimizer, schedule, ELBO), :func:`begin` (a new run -- seeded and pretrained --, the
model's own run continued, or a checkpoint resumed), :func:`train_epochs` / :func:`run_epoch`
(the SVI steps of :func:`svi_step`, the epoch's checks and its record) and the callbacks of
:mod:`.callbacks`, built-in ones first: the metrics against the labels, the progress bar, the
epoch's line of ``history.jsonl`` (ELBO -- or ``objective`` when the ELBO object adds terms to
the bound --, metrics when there are labels, seconds, learning rate, and any term an ELBO
subclass reports) and its atomic checkpoint (:mod:`.checkpoint`), and the collapse watch.
``resume=True`` (of :func:`train`, and of :func:`pyro_mixvae.runner.fit_in_directory`)
restores the checkpoint, every RNG included, so that an interrupted run resumed ends with the same
parameters as an uninterrupted one; a second ``fit`` on a trained model continues its run from the
state the first left on it, just as exactly.

On CPU (and in a distributed job) a NaN or infinite loss stops the run
before the optimizer applies it, with a :class:`~pyro_mixvae.errors.NonFiniteLossError` naming
the epoch and step; the last good checkpoint stays on disk. On CUDA the loss is read on the host
only every :data:`SYNC_EVERY` steps, at the last step of an epoch and as the epoch's sum, so that
the device is not waited for at every step: there the run stops at the first check after the
loss went bad, and the epoch's checkpoint is not written. The last update of an epoch is seen by
no later loss, so after it -- before the epoch's metrics and checkpoint -- the parameters, buffers
and the last batch's responsibilities are checked too (:func:`_all_finite`, also after
pretraining): every checkpoint written evaluates. An epoch's history line and checkpoint are
written with SIGINT / SIGTERM held back (:class:`~.callbacks.Together`), so that an
interrupt leaves them consistent; on resume a history line past the checkpoint, or torn, is dropped.

Under ``torchrun`` (several processes) the same loop trains data-parallel: each rank its shard,
gradients averaged, the conjugate statistics summed, rank 0 alone writing
(:mod:`.distributed`, which marks every line here and in :mod:`.callbacks` it needs with ``[distributed]``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pyro
import torch

from ..errors import ConfigError, NonFiniteLossError
from ..metrics import clustering_metrics
from ..nets import SMALL_DATA, fit_data_units
from . import distributed
from .callbacks import builtin_callbacks, read_history
from .checkpoint import CHECKPOINT, load_parameters, rng_state, set_rng_state
from .compiled import compiled_loss
from .elbo import MixtureELBO, default_elbo  # noqa: F401 (default_elbo: imported from here by infer and experiments)
from .predict import predict_proba

SYNC_EVERY = 50  # on CUDA, steps between two host reads of the loss (the non-finite check)
# the metrics (a pass over all the data) are evaluated about this many times a run unless eval_every says
# otherwise, and at the last epoch: evaluated every epoch they cost about 5 % of a default run on digits
EVALUATIONS = 20


# every model's training values unless its ``train_defaults`` says otherwise. VaDE Sect. 4.2: Adam,
# lr 0.002 decayed x0.9 every 10 epochs, batches of 100; plus a linear warm-up of the learning rate
# over the first lr_warmup steps (WarmupStepDecay)
TRAIN_DEFAULTS = {"epochs": 50, "pretrain_epochs": 0, "batch_size": 100, "lr": 2e-3, "lr_decay": 0.9, "lr_step": 10,
                  "lr_warmup": 100, "num_particles": 1}
# a model's default pretraining lasts at least this many optimizer steps: on a small data set its
# default epochs are too few steps for the autoencoder to separate the groups (TrainConfig.for_model)
MIN_PRETRAIN_STEPS = 300
# below SMALL_DATA points (imported above from pyro_mixvae.nets, where it also chooses the likelihood) a
# model's ``small_data_defaults`` replace its ``train_defaults`` where they say so (a shorter SVI schedule
# where the training bound has stopped rising: docs/studies/main_job.md)


def _training_value(kind: type, help: str):
    """A field of :class:`TrainConfig` that the command line (``--epochs``, ...) and the estimators (``epochs=``)
    take: its type and help are declared here once; its default None is the model's value for the data."""
    return field(default=None, metadata={"type": kind, "help": help})


@dataclass
class TrainConfig:
    """Settings of :func:`fit`.

    A field left as None takes the model's value (``model.train_defaults``) and otherwise
    :data:`TRAIN_DEFAULTS` (VaDE Sect. 4.2); :meth:`for_model` fills them in, sized to the data.
    """

    epochs: Optional[int] = _training_value(int, "SVI epochs")
    batch_size: Optional[int] = _training_value(int, "points per minibatch")
    lr: Optional[float] = _training_value(float, "Adam's learning rate")
    lr_decay: Optional[float] = _training_value(float, "the learning rate's factor every lr_step epochs")
    lr_step: Optional[int] = _training_value(int, "epochs between two decays of the learning rate")
    lr_warmup: Optional[int] = _training_value(int, "optimizer steps of linear learning-rate warm-up at the start "
                                                    "of SVI, 0 = none")
    num_particles: Optional[int] = _training_value(int, "Monte Carlo draws per data point")
    pretrain_epochs: Optional[int] = _training_value(int, "epochs of the model's pretraining, 0 = none (a default "
                                                          f"one lasts at least {MIN_PRETRAIN_STEPS} optimizer steps)")
    seed: int = 0
    device: Optional[str] = None
    eval_every: Optional[int] = None  # epochs between two evaluations of the metrics; None: EVALUATIONS a run
    checkpoint_seconds: float = 10.0  # at most one checkpoint per this many seconds, and the last epoch's; 0 = every epoch
    validate: bool = False  # Pyro's argument validation: off for speed in training, on in tests
    jit: Optional[bool] = None  # trace the loss once per batch shape (None: the model's jit_compatible)

    def check(self) -> "TrainConfig":
        """Refuse values out of range (fields still None are checked once filled in)."""
        for name in ("epochs", "pretrain_epochs"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0; got {getattr(self, name)}")
        for name in ("batch_size", "num_particles", "lr_step", "eval_every"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1; got {getattr(self, name)}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or not 0 <= int(self.seed) <= 2 ** 32 - 1:
            raise ConfigError(f"seed must be an integer between 0 and 2**32 - 1 (NumPy's range); got {self.seed!r}")
        if not self.checkpoint_seconds >= 0:
            raise ConfigError(f"checkpoint-seconds must be >= 0; got {self.checkpoint_seconds}")
        if self.lr_warmup is not None and int(self.lr_warmup) < 0:
            raise ConfigError(f"lr-warmup must be >= 0; got {self.lr_warmup}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number; got {self.lr}")
        if self.lr_decay is not None and not (0 < self.lr_decay <= 1):
            raise ConfigError(f"lr-decay must be in (0, 1]; got {self.lr_decay}")
        self.device = str(resolve_device(self.device))
        return self

    def for_model(self, model, num_data: Optional[int] = None) -> "TrainConfig":
        """A checked copy with every field left as None filled from the model, then from TRAIN_DEFAULTS.

        With ``num_data`` N below :data:`SMALL_DATA`, the model's ``small_data_defaults`` take the place
        of its ``train_defaults``, as one schedule: not when a value they hold was given.
        ``eval_every`` left as None is epochs // :data:`EVALUATIONS` (at least 1). A model's
        default pretraining (when it has one) is lengthened to at least :data:`MIN_PRETRAIN_STEPS`
        optimizer steps, ceil(MIN_PRETRAIN_STEPS / ceil(N / batch_size)) epochs; with batches of 100
        that changes no default from N = 1500 points up.
        """
        mine = {k: v for k, v in asdict(self).items() if v is not None}
        small = num_data is not None and num_data < SMALL_DATA and not set(model.small_data_defaults) & set(mine)
        filled = {**TRAIN_DEFAULTS, **model.train_defaults, **(model.small_data_defaults if small else {})}
        cfg = replace(self, **{k: v for k, v in filled.items() if k not in mine})
        if cfg.eval_every is None:
            cfg.eval_every = max(1, int(cfg.epochs) // EVALUATIONS)
        if num_data is not None and "pretrain_epochs" not in mine and cfg.pretrain_epochs > 0:
            steps_per_epoch = -(-int(num_data) // int(cfg.batch_size))
            cfg.pretrain_epochs = max(cfg.pretrain_epochs, -(-MIN_PRETRAIN_STEPS // steps_per_epoch))
        return cfg.check()


# the fields a user sets through `mixvae fit --epochs ...` and the estimators' parameters: {name: dataclass field}
TRAINING_VALUES = {f.name: f for f in fields(TrainConfig) if "help" in f.metadata}


def resolve_device(name: Optional[str]) -> torch.device:
    """``None`` -> CUDA when present, else CPU; refuses devices that do not exist here."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}: expected cpu, cuda or cuda:N")
    return device


def make_optimizer(params, lr: float) -> torch.optim.Optimizer:
    """One torch Adam over all the parameters, with the fused kernel where torch has one.

    The fused kernel updates every tensor in one pass; torch's default on CPU loops over the
    parameters in Python: on the DEC network its step took 3-6x as long as the fused one, and
    the whole SVI step went from 1.46x to 1.10x the hand-written limit
    (``docs/studies/perf.md``). It falls back to the ``foreach`` implementation where the
    parameters' device or dtype has no fused kernel.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class WarmupStepDecay:
    """The learning rate of every step: a linear warm-up, then VaDE's step decay (Sect. 4.2).

    ``lr_t = lr * min(1, (t + 1) / lr_warmup) * lr_decay ** floor(e / lr_step)`` for the optimizer's
    step t = 0, 1, ... taken in epoch e = 0, 1, ... (``lr_warmup = 0``: no warm-up). :meth:`step`
    follows each optimizer step, :meth:`end_epoch` each epoch; the state is the two counters.

    The warm-up is there because Adam's first steps are ``lr * sign(g)`` in every coordinate
    whatever the gradient's size (its moment estimates hold one draw): in a wide network that
    moves every code at once by more than a mixture component's width, and a clustering that the
    pretraining and the mixture start got right can be lost in the first steps (``docs/studies/robustness.md``).
    """

    def __init__(self, optimizer, lr: float, lr_decay: float, lr_step: int, lr_warmup: int):
        self.optimizer = optimizer
        self.lr, self.lr_decay, self.lr_step, self.lr_warmup = float(lr), float(lr_decay), int(lr_step), int(lr_warmup)
        self.steps = 0
        self.epochs = 0
        self.apply()

    def rate(self) -> float:
        warm = min(1.0, (self.steps + 1) / self.lr_warmup) if self.lr_warmup > 0 else 1.0
        return self.lr * warm * self.lr_decay ** (self.epochs // self.lr_step)

    def apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate()

    def step(self) -> None:
        self.steps += 1
        self.apply()

    def end_epoch(self) -> None:
        self.epochs += 1
        self.apply()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.epochs = int(state["steps"]), int(state["epochs"])
        self.apply()


def svi_step(model, loss_fn, optimizer, x: torch.Tensor, num_data: int, observed: Optional[dict] = None,
             is_finite: Optional[Callable[[torch.Tensor], bool]] = None) -> Optional[torch.Tensor]:
    """One SVI step on the minibatch ``x`` of ``num_data`` points; what :func:`fit` does per step.

    ``loss_fn(x, num_data, **observed)`` is the ELBO's ``differentiable_loss`` of ``model.model``
    and ``model.guide`` (eager, or traced: :func:`~pyro_mixvae.infer.compiled.compiled_loss`);
    the loss is divided by ``num_data`` (nats per data point); then backward, one optimizer step,
    and ``model.conjugate_step`` (the conjugate updates). Returns the detached loss, or None -- with
    nothing applied -- when ``is_finite(loss)`` (e.g. ``lambda l: bool(torch.isfinite(l))``, or the
    agreement of all ranks of a distributed job) says False; with ``is_finite=None`` nothing is
    checked. Checking reads the loss on the host, a device synchronisation on CUDA.
    """
    observed = observed or {}
    loss = loss_fn(x, num_data, **observed) / num_data
    if is_finite is not None and not is_finite(loss):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.conjugate_step(x, num_data, **observed)
    return loss.detach()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (what ``pyro.set_rng_seed`` does)."""
    pyro.set_rng_seed(int(seed))


@dataclass
class History:
    """The per-epoch records of a run (also written to ``history.jsonl``)."""

    records: list = field(default_factory=list)
    pretrain: dict = field(default_factory=dict)
    collapse: Optional[dict] = None  # the first epoch at which clusters used by the start were lost (.collapse)

    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def column(self, key: str) -> list:
        return [r.get(key) for r in self.records]

    def train_seconds(self) -> float:
        """Pretraining plus SVI time over all epochs, resumed sessions included."""
        return self.pretrain.get("seconds", 0.0) + sum(r.get("seconds", 0.0) for r in self.records)


@dataclass
class TrainingRun:
    """What the parts of :func:`fit` share: the model and data, the optimizer and its schedule, the history,
    the epochs of this call (``start`` .. ``last_epoch``) and the run directory ``out`` (or None)."""

    model: object
    x: torch.Tensor
    y: Optional[np.ndarray]
    observed: dict
    cfg: TrainConfig
    ddp: object  # [distributed] this rank (infer/distributed.py), or the single process
    elbo: object
    loss_fn: Callable
    schedules: list
    optimizer: torch.optim.Optimizer
    scheduler: WarmupStepDecay
    generator: torch.Generator
    out: Optional[Path] = None
    history: History = field(default_factory=History)
    start: int = 1
    last_epoch: int = 0
    begins_at_zero: bool = True  # a new run: its epoch-0 checkpoint is written at the start
    changed: dict = field(default_factory=dict)  # settings a resume or a continuation changed, {key: [old, new]}
    saved_epoch: Optional[int] = None  # the epoch of the checkpoint in ``out`` (set by the Checkpointer)

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def steps_per_epoch(self) -> int:
        return self.ddp.steps_per_epoch(self.n, self.cfg.batch_size)  # [distributed] this rank's share

    @property
    def objective_key(self) -> str:
        """The plain ELBO, or the penalised objective when the ELBO object adds terms to it (or may, as scheduled)."""
        return "objective" if getattr(self.elbo, "adds_terms", False) or self.schedules else "elbo"

    @property
    def carried(self) -> dict:
        """What a checkpoint keeps besides the parameters, optimizer, schedule and streams: the pretraining's
        record, and the held start's responsibilities while a schedule may still use them (:func:`hold_start`)."""
        held = self.observed.get(MixtureELBO.HELD)
        return {"pretrain": self.history.pretrain, **({MixtureELBO.HELD: held} if held is not None else {})}

    @property
    def config_dict(self) -> dict:
        """The settings recorded in every checkpoint (``epochs``: the last epoch of the run so far)."""
        return {**asdict(self.cfg), "epochs": self.last_epoch, "world_size": self.ddp.world_size}


def fit(model, x: torch.Tensor, y: Optional[np.ndarray] = None, *, config: Optional[TrainConfig] = None,
        elbo=None, schedules: Optional[Sequence] = None, observed: Optional[dict] = None,
        pretrain: Optional[bool] = None, progress: bool = True,
        callbacks: Sequence[Callable[[int, dict], None]] = ()) -> History:
    """Train ``model`` on ``x`` by SVI, in memory; see the module docstring. Returns the :class:`History`.

    ``observed`` maps keyword names to per-point tensors (N, ...) -- e.g. the factorial model's
    partial ``labels`` -- whose minibatch rows are passed to ``model.model``, ``model.guide`` and
    ``model.conjugate_step`` (the conjugate updates) with every step.
    ``elbo`` defaults to ``model.make_elbo(num_particles)`` and ``schedules`` to
    ``model.schedules()``: before each epoch every schedule sets its attribute of the ELBO object
    (:mod:`.schedules`) and the value goes into that epoch's record. ``callbacks``: see
    :mod:`.callbacks`; they run after the built-in ones (metrics, progress bar, history, checkpoint).

    **A new run or a continued one.** The first call on a model pretrains it (``model.pretrain``,
    ``pretrain_epochs``: the autoencoder and the mixture's initialisation) and trains ``epochs`` SVI
    epochs. The model keeps the state of its training (optimizer, schedule, random streams, history);
    calling ``fit`` on it again (``pretrain=None``, the default) continues that run for ``epochs``
    more epochs, with no pretraining and no initialisation: two calls of E epochs give the parameters
    of one call of 2E. ``pretrain=True`` starts a new run from scratch; ``pretrain=False`` never
    pretrains (on a model without a training state: SVI from its current parameters, a fresh optimizer).

    A run directory (``config.json``, checkpoints, ``history.jsonl``, ``metrics.json``; ``resume``) is the
    runner's: :func:`pyro_mixvae.runner.fit_in_directory` trains by this loop into one.
    """
    return train(model, x, y, config=config, elbo=elbo, schedules=schedules, observed=observed,
                 pretrain=pretrain, progress=progress, callbacks=callbacks)


def train(model, x, y=None, *, config=None, elbo=None, schedules=None, observed=None, out_dir=None,
          resume: bool = False, pretrain: Optional[bool] = None, progress: bool = True, callbacks=()) -> History:
    """The training loop of :func:`fit`, writing only ``checkpoint.pt`` and ``history.jsonl`` into ``out_dir``."""
    run = prepare(model, x, y, config=config, elbo=elbo, schedules=schedules, observed=observed, out_dir=out_dir)
    if run.out is not None and not resume and run.ddp.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
    begin(run, resume, pretrain, progress)
    callbacks = builtin_callbacks(progress) + list(callbacks)
    try:
        for cb in callbacks:
            getattr(cb, "start", _nothing)(run)
        train_epochs(run, callbacks)
        for cb in callbacks:
            getattr(cb, "end", _nothing)(run)
    finally:
        for cb in callbacks:
            getattr(cb, "close", _nothing)()
    setattr(model, STATE, training_state(run))
    return run.history


def _nothing(*args) -> None:
    pass


def prepare(model, x, y=None, *, config=None, elbo=None, schedules=None, observed=None, out_dir=None) -> TrainingRun:
    """The :class:`TrainingRun` before its first epoch: config filled in, data and model on the device,
    the optimizer, its schedule, the ELBO object (traced where it may be) and the schedules checked."""
    cfg = (config or TrainConfig()).check().for_model(model, num_data=len(x))
    ddp = distributed.setup(cfg.device, cfg.seed)  # [distributed] this rank of a torchrun job, or a no-op
    model.to(ddp.device)
    x = torch.as_tensor(x, dtype=torch.float32).to(ddp.device)
    observed = {k: torch.as_tensor(v).to(ddp.device) for k, v in (observed or {}).items()}
    for key, value in observed.items():
        if value.shape[0] != x.shape[0]:
            raise ConfigError(f"observed {key!r} has {value.shape[0]} rows; the data has {x.shape[0]} points")
    optimizer = make_optimizer(model.parameters(), cfg.lr)
    ddp.attach(optimizer, x.shape[0], cfg.batch_size)  # [distributed] gradients averaged across ranks before each step
    # the loss is traced (infer/compiled.py) if asked, else where the model allows it (jit=None), but
    # not for an ELBO object passed in (it may not be static) nor with validation (graphs do not validate)
    jit = False if cfg.jit is None and (elbo is not None or cfg.validate) else cfg.jit
    elbo = elbo if elbo is not None else model.make_elbo(cfg.num_particles)
    if schedules is None:  # the model's; its held start is a term of its own objective, kept where the ELBO has it
        schedules = [sched for sched in model.schedules() if sched.attr != "hold" or hasattr(elbo, "hold")]
    schedules = list(schedules)
    for sched in schedules:
        if not hasattr(elbo, sched.attr):
            raise ConfigError(f"a schedule sets {sched.attr!r}, which the ELBO object {type(elbo).__name__} does not have")
    return TrainingRun(model=model, x=x, y=y, observed=observed, cfg=cfg, ddp=ddp, elbo=elbo,
                       loss_fn=compiled_loss(elbo, model, jit), schedules=schedules, optimizer=optimizer,
                       scheduler=WarmupStepDecay(optimizer, cfg.lr, cfg.lr_decay, cfg.lr_step, cfg.lr_warmup),
                       generator=torch.Generator().manual_seed(cfg.seed),
                       out=Path(out_dir) if out_dir is not None else None)


# the attribute under which a model trained by fit keeps the state of its training (training_state)
STATE = "_mixvae_training_state"


def saved_state(model, pretrain: Optional[bool] = None) -> Optional[dict]:
    """The training state ``fit`` left on ``model`` that a call with ``pretrain`` continues, else None."""
    return None if pretrain else getattr(model, STATE, None)


def training_state(run: TrainingRun) -> dict:
    """What a later :func:`fit` on the same model continues from: the checkpoint's fields, in memory (the
    optimizer's state is that of the optimizer this call leaves behind, not a copy)."""
    return {"epoch": run.last_epoch, "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "generator": run.generator.get_state(), "rng": rng_state(),
            "config": run.config_dict, "extra": run.carried, "records": list(run.history.records)}


def begin(run: TrainingRun, resume: bool, pretrain: Optional[bool], progress: bool) -> None:
    """Resume from the run directory's checkpoint, continue the model's own training state, or start anew."""
    if resume:
        _resume(run)
    elif saved_state(run.model, pretrain) is not None:  # a model fit trained before: its training goes on
        state = saved_state(run.model, pretrain)
        _restore(run, state, state["records"], state["rng"])
        run.last_epoch = run.start - 1 + run.cfg.epochs
    else:
        _start(run, pretrain is not False, progress)


def _resume(run: TrainingRun) -> None:
    """Everything from the checkpoint in ``run.out``; training goes on up to ``cfg.epochs``."""
    ckpt_path = run.out / CHECKPOINT if run.out is not None else None
    if run.ddp.is_main and (ckpt_path is None or not ckpt_path.exists()):
        raise ConfigError(f"cannot resume: no {CHECKPOINT} in {run.out}")
    state = run.ddp.load_checkpoint(ckpt_path)  # [distributed] read on rank 0, sent to all; world size checked
    load_parameters(run.model, state, ckpt_path)  # a different architecture is one line, not a size mismatch
    records = read_history(run.out, upto=state["epoch"]) if run.ddp.is_main else []  # a torn line dropped
    _restore(run, state, records, run.ddp.rank_rng_state(state))  # [distributed] this rank's own stream
    run.last_epoch, run.saved_epoch = run.cfg.epochs, state["epoch"]


def _restore(run: TrainingRun, state: dict, records: list, rng: dict) -> None:
    """The optimizer, its schedule (with the changed settings applied), the minibatch order and the RNGs."""
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.changed = _apply_changed_schedule(run.optimizer, run.scheduler, run.cfg, state["config"])
    run.generator.set_state(state["generator"])
    set_rng_state(rng)
    run.start, run.begins_at_zero = state["epoch"] + 1, False
    run.history.pretrain = state["extra"].get("pretrain", {})
    held = state["extra"].get(MixtureELBO.HELD)
    if held is not None:
        run.observed[MixtureELBO.HELD] = torch.as_tensor(held).to(run.x.device)
    else:  # the run held nothing (hold_start)
        _hold_nothing(run)
    run.history.records = list(records)


def _start(run: TrainingRun, pretrain: bool, progress: bool) -> None:
    """A new run: seeded, pretrained (once, on rank 0, then broadcast), each rank its own stream."""
    cfg, ddp, model, x = run.cfg, run.ddp, run.model, run.x
    seed_everything(cfg.seed)
    if pretrain:  # a run from scratch: the networks' units from this data (pretrain=False keeps the model's)
        fit_data_units(model, x)
    if pretrain and cfg.pretrain_epochs > 0 and ddp.is_main:  # [distributed] once, on rank 0, then broadcast
        t0 = time.perf_counter()
        run.history.pretrain = model.pretrain(x, cfg.pretrain_epochs, cfg.batch_size, cfg.seed, progress=progress,
                                              **run.observed)
        run.history.pretrain["seconds"] = time.perf_counter() - t0
        if not _all_finite(model, x[:cfg.batch_size]):
            raise NonFiniteLossError("the parameters became non-finite in pretraining; nothing was saved")
        run.history.pretrain.update(clustering_metrics(predict_proba(model, x).cpu().numpy(), run.y))
    run.history.pretrain = ddp.broadcast_state(model, run.history.pretrain)  # [distributed] rank 0's state to all
    hold_start(run)
    ddp.seed_ranks(cfg.seed)  # [distributed] each rank its own RNG stream for the guide's draws
    run.start, run.last_epoch = 1, cfg.epochs


def hold_start(run: TrainingRun) -> None:
    """When a schedule sets the ELBO's ``hold`` (a model's ``hold_start`` epochs), the responsibilities that
    decided the mixture start (the model's ``start_responsibilities``, rank 0's, broadcast) become the
    per-point observed ``held_responsibilities`` that :class:`~.elbo.MixtureELBO` holds q(c | x) at, with
    p(c | mu(x)) of the pretrained model for the points they leave out (computed on every rank from the same
    broadcast model; the random streams are left as they were). A start without them (a diagonal GMM on the
    codes, whose posterior the mixture already is; no pretraining) holds nothing: the schedule is dropped."""
    if not (hasattr(run.elbo, "hold") and any(sched.attr == "hold" for sched in run.schedules)):
        return
    x = run.x
    decided = run.ddp.broadcast_object(run.model.start_responsibilities)  # [distributed] pretrained on rank 0
    if decided is None:
        return _hold_nothing(run)
    decided = torch.as_tensor(decided).to(x)
    left_out = torch.isnan(decided)
    if left_out.any():  # only points outside a t-SNE subset need the pretrained model's p(c | mu(x))
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            decided = torch.where(left_out, predict_proba(run.model, x).detach().to(x), decided)
    run.observed[MixtureELBO.HELD] = decided


def _hold_nothing(run: TrainingRun) -> None:
    """Drop the held start's schedule: the run trains the model's plain objective from its first epoch."""
    run.schedules = [sched for sched in run.schedules if sched.attr != "hold"]


def train_epochs(run: TrainingRun, callbacks: Sequence) -> None:
    """Epochs ``run.start`` .. ``run.last_epoch``: each one's record goes to the history, then to every callback."""
    step_hooks = [cb.step for cb in callbacks if hasattr(cb, "step")]
    run.model.train()
    with pyro.validation_enabled(run.cfg.validate), run.ddp.training():  # [distributed] conjugate statistics summed
        for epoch in range(run.start, run.last_epoch + 1):
            record = run_epoch(run, epoch, step_hooks)
            run.history.records.append(record)
            for cb in callbacks:
                cb(epoch, record)


def run_epoch(run: TrainingRun, epoch: int, step_hooks: Sequence = ()) -> dict:
    """One epoch of SVI steps (:func:`svi_step`), its checks, and its record: objective, lr, schedules, terms."""
    t0 = time.perf_counter()
    scheduled = {}
    for sched in run.schedules:
        scheduled[sched.attr] = sched.value(epoch)
        setattr(run.elbo, sched.attr, scheduled[sched.attr])
    total, terms, xb, step = _epoch_steps(run, epoch, step_hooks)
    total, terms = run.ddp.reduce_epoch(total, terms, run.n)  # [distributed] over all ranks' points
    if not torch.isfinite(total):  # a step left unchecked on CUDA went bad: keep the last good checkpoint
        raise _non_finite(run, f"during epoch {epoch}")
    # the last step's update, before metrics and the checkpoint; all ranks agree [distributed]
    device = run.x.device
    if not run.ddp.all_finite(torch.tensor(0.0 if _all_finite(run.model, xb) else math.nan, device=device)):
        raise _non_finite(run, f"at epoch {epoch}, step {step}", "the parameters")
    run.scheduler.end_epoch()
    record = {"epoch": epoch, run.objective_key: -float(total) / run.n, "lr": run.optimizer.param_groups[0]["lr"],
              **scheduled}
    if run.changed and epoch == run.start:
        record["changed"] = run.changed  # settings a resume changed (mixvae fit --resume --override)
    record.update({k: float(v) / run.n for k, v in terms.items()})
    record["seconds"] = time.perf_counter() - t0
    return record


def _epoch_steps(run: TrainingRun, epoch: int, step_hooks: Sequence):
    """The SVI steps of one epoch: (sum of loss x batch size, sums of the ELBO's terms, last batch, steps)."""
    ddp, x, device, steps = run.ddp, run.x, run.x.device, run.steps_per_epoch
    total = torch.zeros((), device=device)
    terms: dict = {}
    for step, idx in enumerate(ddp.batches(run.n, run.cfg.batch_size, run.generator, epoch), 1):  # [distributed] shard
        idx = idx.to(device, non_blocking=True)
        xb = x[idx]
        batch = {k: v[idx] for k, v in run.observed.items()}
        # on CPU checking the loss costs nothing; on CUDA it waits for the device, so only every
        # SYNC_EVERY steps -- but every step across ranks, which must stop together [distributed]
        check = ddp.distributed or device.type == "cpu" or step % SYNC_EVERY == 0 or step == steps
        loss = svi_step(run.model, run.loss_fn, run.optimizer, xb, run.n, batch,
                        is_finite=ddp.all_finite if check else None)
        if loss is None:
            raise _non_finite(run, f"at epoch {epoch}, step {step}")
        run.scheduler.step()
        total += loss * len(idx)
        for key, value in getattr(run.elbo, "last_terms", {}).items():
            terms[key] = terms.get(key, 0.0) + torch.as_tensor(value).detach() * len(idx)
        for hook in step_hooks:
            hook(run)
    return total, terms, xb, step


def _non_finite(run: TrainingRun, where: str, what: str = "the loss") -> NonFiniteLossError:
    saved = run.saved_epoch
    kept = f"; the last good checkpoint (epoch {saved}) is kept in {run.out}" if run.out and saved is not None else ""
    return NonFiniteLossError(f"{what} became non-finite {where}{kept}; try a lower --lr")


def _all_finite(model, xb: torch.Tensor) -> bool:
    """The non-finite guard after an epoch's last step (and after pretraining), before metrics and the checkpoint.

    Every step's loss was checked before its update, but the last update of an epoch is seen by no
    later loss: it may leave parameters, buffers or the responsibilities of the batch ``xb``
    non-finite. Checked here, the checkpoint of every epoch evaluates. The responsibilities are
    computed under a forked RNG, so the check changes no random stream.
    """
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        return False
    with torch.random.fork_rng(devices=[xb.device] if xb.device.type == "cuda" else []):
        return bool(torch.isfinite(predict_proba(model, xb)).all())


def _apply_changed_schedule(optimizer, scheduler: WarmupStepDecay, cfg: "TrainConfig", saved: dict) -> dict:
    """On resume, the settings of ``cfg`` that differ from the checkpoint's config, {key: [old, new]}.

    A changed ``lr``, ``lr_decay``, ``lr_step`` or ``lr_warmup`` is applied to the restored schedule,
    whose counters (steps and epochs done) stay; ``batch_size`` and ``num_particles`` take effect by
    themselves.
    """
    keys = ("lr", "lr_decay", "lr_step", "lr_warmup", "batch_size", "num_particles")
    changed = {k: [saved.get(k), getattr(cfg, k)] for k in keys if saved.get(k) != getattr(cfg, k)}
    if any(k in changed for k in ("lr", "lr_decay", "lr_step", "lr_warmup")):
        scheduler.lr, scheduler.lr_decay = float(cfg.lr), float(cfg.lr_decay)
        scheduler.lr_step, scheduler.lr_warmup = int(cfg.lr_step), int(cfg.lr_warmup)
        scheduler.apply()
    return changed
