"""The SVI training loop shared by every model.

:func:`fit` maximises an ELBO of a :class:`~pyro_mixvae.models.MixtureVAE` by stochastic
variational inference: each step draws a minibatch, asks the ELBO object (``TraceEnum_ELBO``
by default, or any subclass passed in) for its differentiable loss of ``model.model`` and
``model.guide`` and takes one step of a single torch Adam optimizer over all the module's
parameters (:func:`svi_step`, :func:`make_optimizer`). For a static model
(``model.jit_compatible``) the loss is traced once per batch shape and replayed as a graph
(:mod:`.compiled`; ``TrainConfig.jit`` / ``--jit``, ``--no-jit``). The loss is divided by N, so that the number printed and recorded is the ELBO
per data point in nats; the plate inside the model scales the minibatch by N / B.

Per epoch the loop writes one line of ``history.jsonl`` (ELBO — or ``objective`` when the
ELBO object adds terms to the bound — metrics against the labels
when there are labels, seconds, learning rate, and any term an ELBO subclass reports) and an
atomic checkpoint (:mod:`.checkpoint`). ``resume=True`` restores the checkpoint, every RNG
included, so that an interrupted run resumed ends with the same parameters as an
uninterrupted one. On CPU (and in a distributed job) a NaN or infinite loss stops the run
before the optimizer applies it, with a :class:`~pyro_mixvae.errors.NonFiniteLossError` naming
the epoch and step; the last good checkpoint stays on disk. On CUDA the loss is read on the host
only every :data:`SYNC_EVERY` steps, at the last step of an epoch and as the epoch's sum, so that
the device is not waited for at every step: there the run stops at the first check after the
loss went bad, and the epoch's checkpoint is not written. The last update of an epoch is seen by
no later loss, so after it -- before the epoch's metrics and checkpoint -- the parameters, buffers
and the last batch's responsibilities are checked too (:func:`_all_finite`, also after
pretraining): every checkpoint written evaluates. An epoch's history line and checkpoint are
written with SIGINT / SIGTERM held back (:func:`~.checkpoint.deferred_signals`), so that an
interrupt leaves them consistent; on resume a history line past the checkpoint, or torn, is dropped.

Under ``torchrun`` (several processes) the same loop trains data-parallel: each rank its shard,
gradients averaged, the conjugate statistics summed, rank 0 alone writing
(:mod:`.distributed`, which marks every line of :func:`fit` it needs with ``[distributed]``).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pyro
import torch
from pyro.infer import TraceEnum_ELBO
from tqdm.auto import tqdm

from ..errors import ConfigError, NonFiniteLossError
from ..metrics import clustering_metrics
from ..nets import eval_mode
from . import distributed
from .collapse import CollapseWatch
from .compiled import compiled_loss
from .checkpoint import CHECKPOINT, atomic_write, deferred_signals, rng_state, save_checkpoint, set_rng_state

HISTORY = "history.jsonl"
SYNC_EVERY = 50  # on CUDA, steps between two host reads of the loss (the non-finite check)


# VaDE Sect. 4.2: Adam, lr 0.002 decayed x0.9 every 10 epochs, batches of 100
# plus a linear warm-up of the learning rate over the first lr_warmup steps (WarmupStepDecay)
TRAIN_DEFAULTS = {"batch_size": 100, "lr": 2e-3, "lr_decay": 0.9, "lr_step": 10, "lr_warmup": 100, "num_particles": 1}
# a model's default pretraining lasts at least this many optimizer steps: on a small data set its
# default epochs are too few steps for the autoencoder to separate the groups (TrainConfig.for_model)
MIN_PRETRAIN_STEPS = 300


@dataclass
class TrainConfig:
    """Settings of :func:`fit`.

    A field left as None takes the model's value (``model.default_epochs``,
    ``model.default_pretrain_epochs``, ``model.train_defaults``) and otherwise
    :data:`TRAIN_DEFAULTS` (VaDE Sect. 4.2); :meth:`for_model` fills them in.
    """

    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    lr_decay: Optional[float] = None
    lr_step: Optional[int] = None
    lr_warmup: Optional[int] = None
    num_particles: Optional[int] = None
    pretrain_epochs: Optional[int] = None
    seed: int = 0
    device: Optional[str] = None
    eval_every: int = 1
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

        With ``num_data`` N, a model's default pretraining (when it has one) is lengthened to at least
        :data:`MIN_PRETRAIN_STEPS` optimizer steps, ceil(MIN_PRETRAIN_STEPS / ceil(N / batch_size))
        epochs; with batches of 100 that changes no default from N = 1500 points up.
        """
        filled = {"epochs": int(model.default_epochs), "pretrain_epochs": int(model.default_pretrain_epochs),
                  **TRAIN_DEFAULTS, **model.train_defaults}
        mine = {k: v for k, v in asdict(self).items() if v is not None}
        cfg = replace(self, **{k: v for k, v in filled.items() if k not in mine})
        if num_data is not None and "pretrain_epochs" not in mine and cfg.pretrain_epochs > 0:
            steps_per_epoch = -(-int(num_data) // int(cfg.batch_size))
            cfg.pretrain_epochs = max(cfg.pretrain_epochs, -(-MIN_PRETRAIN_STEPS // steps_per_epoch))
        return cfg.check()


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
    (``experiments/results/perf.md``). It falls back to the ``foreach`` implementation where the
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
    and ``model.after_step`` (the conjugate updates). Returns the detached loss, or None -- with
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
    model.after_step(x, num_data, **observed)
    return loss.detach()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (what ``pyro.set_rng_seed`` does)."""
    pyro.set_rng_seed(int(seed))


def default_elbo(model, num_particles: int = 1):
    """``TraceEnum_ELBO`` with the model's plate nesting and vectorised particles.

    This is the plain bound; a model's training objective (``model.make_elbo``) may add terms
    to it, but the ELBO that is reported (:mod:`pyro_mixvae.evaluation`) is always this one.
    """
    return TraceEnum_ELBO(max_plate_nesting=model.max_plate_nesting, num_particles=num_particles,
                          vectorize_particles=True)


@torch.no_grad()
def predict_proba(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """(N, K) responsibilities of all of ``x``, in evaluation mode, batch by batch."""
    with eval_mode(model):
        return torch.cat([model.responsibilities(xb) for xb in x.split(batch_size)])


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


def fit(model, x: torch.Tensor, y: Optional[np.ndarray] = None, *, config: Optional[TrainConfig] = None,
        elbo=None, schedules: Optional[Sequence] = None, observed: Optional[dict] = None, out_dir=None,
        resume: bool = False, progress: bool = True,
        callbacks: Sequence[Callable[[int, dict], None]] = ()) -> History:
    """Train ``model`` on ``x`` by SVI; see the module docstring.

    ``observed`` maps keyword names to per-point tensors (N, ...) -- e.g. the factorial model's
    partial ``labels`` -- whose minibatch rows are passed to ``model.model``, ``model.guide`` and
    ``model.after_step`` with every step. After each optimizer step the loop calls
    ``model.after_step(x_batch, N, **batch)`` (the conjugate updates of the factorial prior).

    ``elbo`` defaults to ``model.make_elbo(num_particles)`` and ``schedules`` to
    ``model.schedules()``: before each epoch every schedule sets its attribute of the ELBO object
    (:mod:`.schedules`) and the value goes into that epoch's record.
    ``callbacks`` are called as ``cb(epoch, record)`` after each epoch's record is written.
    Returns the :class:`History`.
    """
    cfg = (config or TrainConfig()).check().for_model(model, num_data=len(x))
    ddp = distributed.setup(cfg.device, cfg.seed)  # [distributed] this rank of a torchrun job, or a no-op
    device = ddp.device
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT if out is not None else None
    if out is not None and not resume and ddp.is_main:
        out.mkdir(parents=True, exist_ok=True)

    model.to(device)
    x = torch.as_tensor(x, dtype=torch.float32).to(device)
    n = x.shape[0]
    observed = {k: torch.as_tensor(v).to(device) for k, v in (observed or {}).items()}
    for key, value in observed.items():
        if value.shape[0] != n:
            raise ConfigError(f"observed {key!r} has {value.shape[0]} rows; the data has {n} points")
    optimizer = make_optimizer(model.parameters(), cfg.lr)
    ddp.attach(optimizer, n, cfg.batch_size)  # [distributed] gradients averaged across ranks before each step
    steps_per_epoch = ddp.steps_per_epoch(n, cfg.batch_size)
    scheduler = WarmupStepDecay(optimizer, cfg.lr, cfg.lr_decay, cfg.lr_step, cfg.lr_warmup)
    generator = torch.Generator().manual_seed(cfg.seed)
    # the loss is traced (infer/compiled.py) if asked, else where the model allows it (jit=None), but
    # not for an ELBO object passed in (it may not be static) nor with validation (graphs do not validate)
    jit = cfg.jit
    if jit is None and (elbo is not None or cfg.validate):
        jit = False
    elbo = elbo if elbo is not None else model.make_elbo(cfg.num_particles)
    loss_fn = compiled_loss(elbo, model, jit)
    schedules = list(model.schedules() if schedules is None else schedules)
    for sched in schedules:
        if not hasattr(elbo, sched.attr):
            raise ConfigError(f"a schedule sets {sched.attr!r}, which the ELBO object {type(elbo).__name__} does not have")
    history = History()
    config_dict = {**asdict(cfg), "world_size": ddp.world_size}

    def checkpoint(epoch):
        ranks = ddp.checkpoint_extra(rng_state())  # [distributed] every rank's RNG state (a collective)
        if ckpt_path is not None and ddp.is_main:
            save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                            generator=generator, config=config_dict, extra={"pretrain": history.pretrain, **ranks})

    if resume:
        if ddp.is_main and (ckpt_path is None or not ckpt_path.exists()):
            raise ConfigError(f"cannot resume: no {CHECKPOINT} in {out_dir}")
        state = ddp.load_checkpoint(ckpt_path)  # [distributed] read on rank 0, sent to all; world size checked
        from ..runs import load_parameters, read_history  # (runs imports this module)

        load_parameters(model, state, ckpt_path)  # a different architecture is one line, not a size mismatch
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        changed = _apply_changed_schedule(optimizer, scheduler, cfg, state["config"])
        generator.set_state(state["generator"])
        set_rng_state(ddp.rank_rng_state(state))  # [distributed] this rank's own stream
        start = state["epoch"] + 1
        history.pretrain = state["extra"].get("pretrain", {})
        history.records = read_history(out, upto=state["epoch"]) if ddp.is_main else []  # a torn line dropped
    else:
        changed = {}
        seed_everything(cfg.seed)
        if cfg.pretrain_epochs > 0 and ddp.is_main:  # [distributed] once, on rank 0, then broadcast
            t0 = time.perf_counter()
            history.pretrain = model.pretrain(x, cfg.pretrain_epochs, cfg.batch_size, cfg.seed, progress=progress,
                                              **observed)
            history.pretrain["seconds"] = time.perf_counter() - t0
            if not _all_finite(model, x[:cfg.batch_size]):
                raise NonFiniteLossError("the parameters became non-finite in pretraining; nothing was saved")
            history.pretrain.update(clustering_metrics(predict_proba(model, x).cpu().numpy(), y))
        history.pretrain = ddp.broadcast_state(model, history.pretrain)  # [distributed] rank 0's state to all
        ddp.seed_ranks(cfg.seed)  # [distributed] each rank its own RNG stream for the guide's draws
        checkpoint(0)
        start = 1
    if out is not None and ddp.is_main:
        _write_history(out, history.records)

    # the plain ELBO, or the penalised objective when the ELBO object adds terms to it (or may, as scheduled)
    objective_key = "objective" if getattr(elbo, "adds_terms", False) or schedules else "elbo"
    watch = CollapseWatch(model.n_clusters, history.pretrain.get("clusters_used"))
    for record in history.records:  # resumed: the epochs already trained
        watch(record["epoch"], record)
    bar = tqdm(total=(cfg.epochs - start + 1) * steps_per_epoch, desc=f"{model.name} SVI",
               disable=not (progress and ddp.is_main), dynamic_ncols=True)

    def non_finite(where: str, epoch: int, what: str = "the loss") -> NonFiniteLossError:
        bar.close()
        kept = f"; the last good checkpoint (epoch {epoch - 1}) is kept in {out}" if out else ""
        return NonFiniteLossError(f"{what} became non-finite {where}{kept}; try a lower --lr")

    model.train()
    with pyro.validation_enabled(cfg.validate), ddp.training():  # [distributed] conjugate statistics summed
        for epoch in range(start, cfg.epochs + 1):
            t0 = time.perf_counter()
            scheduled = {}
            for sched in schedules:
                scheduled[sched.attr] = sched.value(epoch)
                setattr(elbo, sched.attr, scheduled[sched.attr])
            total = torch.zeros((), device=device)
            terms: dict = {}
            for step, idx in enumerate(ddp.batches(n, cfg.batch_size, generator, epoch), 1):  # [distributed] shard
                idx = idx.to(device, non_blocking=True)
                xb = x[idx]
                batch = {k: v[idx] for k, v in observed.items()}
                # on CPU checking the loss costs nothing; on CUDA it waits for the device, so only every
                # SYNC_EVERY steps -- but every step across ranks, which must stop together [distributed]
                check = ddp.distributed or device.type == "cpu" or step % SYNC_EVERY == 0 or step == steps_per_epoch
                loss = svi_step(model, loss_fn, optimizer, xb, n, batch, is_finite=ddp.all_finite if check else None)
                if loss is None:
                    raise non_finite(f"at epoch {epoch}, step {step}", epoch)
                scheduler.step()
                total += loss * len(idx)
                for key, value in getattr(elbo, "last_terms", {}).items():
                    terms[key] = terms.get(key, 0.0) + torch.as_tensor(value).detach() * len(idx)
                bar.update(1)
            total, terms = ddp.reduce_epoch(total, terms, n)  # [distributed] over all ranks' points
            if not torch.isfinite(total):  # a step left unchecked on CUDA went bad: keep the last good checkpoint
                raise non_finite(f"during epoch {epoch}", epoch)
            # the last step's update, before metrics and the checkpoint; all ranks agree [distributed]
            if not ddp.all_finite(torch.tensor(0.0 if _all_finite(model, xb) else math.nan, device=device)):
                raise non_finite(f"at epoch {epoch}, step {step}", epoch, "the parameters")
            scheduler.end_epoch()
            record = {"epoch": epoch, objective_key: -float(total) / n, "lr": optimizer.param_groups[0]["lr"], **scheduled}
            if changed and epoch == start:
                record["changed"] = changed  # settings a resume changed (mixvae fit --resume --override)
            record.update({k: float(v) / n for k, v in terms.items()})
            if ddp.is_main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):  # [distributed] rank 0
                record.update(clustering_metrics(predict_proba(model, x).cpu().numpy(), y))
            record["seconds"] = time.perf_counter() - t0
            history.records.append(record)
            bar.set_postfix({k: f"{record[k]:.3f}" for k in (objective_key, "acc") if k in record})
            with deferred_signals():  # the history line and the checkpoint of an epoch are written together
                if out is not None and ddp.is_main:
                    _append_history(out, record)
                checkpoint(epoch)
            watch(epoch, record)
            for cb in callbacks:
                cb(epoch, record)
    bar.close()
    history.collapse = watch.finish()
    return history


def _append_history(out: Path, record: dict) -> None:
    with open(out / HISTORY, "a") as f:
        f.write(json.dumps(record) + "\n")


def _write_history(out: Path, records: list) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(out / HISTORY, lambda f: f.write(text.encode()))


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
