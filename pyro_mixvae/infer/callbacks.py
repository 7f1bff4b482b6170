"""What :func:`~pyro_mixvae.infer.train.fit` does around its epochs, as callbacks.

A callback is any callable ``cb(epoch, record)``, called after each epoch with that epoch's
record (the line of ``history.jsonl``), in the order of the list; a callback may add keys to
the record, and the ones after it see them. A callback may also have the methods

* ``start(run)`` -- once, before the first epoch of this call, with the
  :class:`~pyro_mixvae.infer.train.TrainingRun` (model, data, optimizer, schedule, history, ...);
* ``step(run)`` -- after every optimizer step;
* ``end(run)`` -- once, after the last epoch (not when training stopped with an error);
* ``close()`` -- always, last (also after an error).

``fit`` runs its own callbacks (:func:`builtin_callbacks`) before the user's: the metrics
against the labels, the progress bar, the history line of the epoch and its checkpoint when one is due
(written together, with SIGINT / SIGTERM held back: :class:`Together`), and the collapse watch.
:func:`read_history` reads the history file back (on resume, in ``mixvae report``).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import RunError
from ..metrics import clustering_metrics
from .checkpoint import CHECKPOINT, atomic_write, deferred_signals, rng_state, save_checkpoint
from .collapse import CollapseWatch
from .predict import predict_proba

HISTORY = "history.jsonl"


class LabelMetrics:
    """Accuracy, NMI, ARI and the clusters used (:func:`~pyro_mixvae.metrics.clustering_metrics`) of all the data,
    every ``eval_every`` epochs and at the last, on rank 0; their time is added to the epoch's ``seconds``."""

    def start(self, run) -> None:
        self.run = run

    def __call__(self, epoch: int, record: dict) -> None:
        run = self.run
        if run.ddp.is_main and (epoch % run.cfg.eval_every == 0 or epoch == run.last_epoch):  # [distributed] rank 0
            t0 = time.perf_counter()
            record.update(clustering_metrics(predict_proba(run.model, run.x).cpu().numpy(), run.y))
            record["seconds"] += time.perf_counter() - t0


class ProgressBar:
    """A tqdm bar counting the epochs of this call, moved on at every SVI step by a fraction of an epoch, showing
    the objective and the accuracy (rank 0, ``progress``)."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bar = enabled, None

    def start(self, run) -> None:
        self.key = run.objective_key
        self.per_step = 1.0 / run.steps_per_epoch
        self.bar = tqdm(total=run.last_epoch - run.start + 1, desc=f"{run.model.name} SVI", unit="epoch",
                        bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} epochs [{elapsed}<{remaining}{postfix}]",
                        disable=not (self.enabled and run.ddp.is_main), dynamic_ncols=True)

    def step(self, run) -> None:
        # the fractions of an epoch add up to a little over the total in floating point: stop at the total
        self.bar.update(min(self.per_step, self.bar.total - self.bar.n))

    def __call__(self, epoch: int, record: dict) -> None:
        self.bar.set_postfix({k: f"{record[k]:.3f}" for k in (self.key, "acc") if k in record})

    def end(self, run) -> None:
        self.close()  # before the collapse watch's warning

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class HistoryFile:
    """``history.jsonl``: rewritten at the start with the records so far (a line past the checkpoint, or torn,
    is gone), then one line appended per epoch; rank 0 only, and only with a run directory."""

    def start(self, run) -> None:
        self.out = run.out if run.ddp.is_main else None
        if self.out is not None:
            text = "".join(json.dumps(r) + "\n" for r in run.history.records)
            atomic_write(self.out / HISTORY, lambda f: f.write(text.encode()))

    def __call__(self, epoch: int, record: dict) -> None:
        if self.out is not None:
            with open(self.out / HISTORY, "a") as f:
                f.write(json.dumps(record) + "\n")


def read_history(run_dir, upto: int | None = None) -> list:
    """The records of ``history.jsonl`` with ``epoch <= upto``.

    A torn last line (a run killed while appending) is left out; any other line that is not a
    JSON record with an ``epoch`` is a one-line :class:`RunError`.
    """
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path} cannot be read: {e}") from None
    records = []
    for i, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("not an epoch record")
        except ValueError:
            if i == len(lines):
                break  # torn by an interruption
            raise RunError(f"{path} is damaged at line {i}") from None
        records.append(record)
    return [r for r in records if upto is None or r["epoch"] <= upto]


class Checkpointer:
    """The checkpoint (:func:`~.checkpoint.save_checkpoint`) of epoch 0 at the start of a new run, of the last
    epoch, and in between of the first epoch that ends ``cfg.checkpoint_seconds`` or more after the last
    checkpoint (0: every epoch). An interrupt loses at most that much training; the history lines past
    the checkpoint are dropped when the run resumes (:class:`HistoryFile`).

    Called on every rank: in a distributed job rank 0's clock decides for all, the ranks' RNG states are
    gathered (a collective) and rank 0 writes them with the rest. Without a run directory nothing is written.
    """

    def start(self, run) -> None:
        self.run, self.last = run, -math.inf
        if run.begins_at_zero:
            self.save(run.start - 1)

    def __call__(self, epoch: int, record: dict) -> None:
        run = self.run
        due = epoch == run.last_epoch or time.monotonic() - self.last >= run.cfg.checkpoint_seconds
        if run.ddp.broadcast_object(due):  # [distributed] rank 0's decision
            self.save(epoch)

    def save(self, epoch: int) -> None:
        run = self.run
        ranks = run.ddp.checkpoint_extra(rng_state())  # [distributed] every rank's RNG state (a collective)
        if run.out is not None and run.ddp.is_main:
            save_checkpoint(run.out / CHECKPOINT, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler,
                            epoch=epoch, generator=run.generator, config=run.config_dict,
                            extra={**run.carried, **ranks})
        self.last, run.saved_epoch = time.monotonic(), epoch


class Together:
    """Callbacks run as one: SIGINT / SIGTERM are held back until all have run (:func:`~.checkpoint.deferred_signals`),
    so that an interrupt never leaves an epoch's history line or its checkpoint half written."""

    def __init__(self, *callbacks):
        self.callbacks = callbacks

    def start(self, run) -> None:
        for cb in self.callbacks:
            cb.start(run)

    def __call__(self, epoch: int, record: dict) -> None:
        with deferred_signals():
            for cb in self.callbacks:
                cb(epoch, record)


class Collapse:
    """The collapse watch (:class:`~.collapse.CollapseWatch`) fed each record; at the end ``history.collapse``
    is its event, and its one warning is given."""

    def start(self, run) -> None:
        self.watch = CollapseWatch(run.model.n_clusters, run.history.pretrain.get("clusters_used"))
        for record in run.history.records:  # the epochs trained before (resumed or continued)
            self.watch(record["epoch"], record)

    def __call__(self, epoch: int, record: dict) -> None:
        self.watch(epoch, record)

    def end(self, run) -> None:
        run.history.collapse = self.watch.finish()


def builtin_callbacks(progress: bool = True) -> list:
    """What every :func:`~pyro_mixvae.infer.train.fit` runs, in this order, before the callbacks passed in."""
    return [LabelMetrics(), ProgressBar(progress), Together(HistoryFile(), Checkpointer()), Collapse()]
