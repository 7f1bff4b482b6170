"""Schedules: a scalar of the objective that changes with the epoch, run by the training loop.

A schedule is an object with ``attr`` (the name of an attribute of the ELBO object) and
``value(epoch)`` (epochs count from 1). Before each epoch :func:`pyro_mixvae.infer.fit` sets
``elbo.<attr> = schedule.value(epoch)`` and records the value in that epoch's history line, so
a resumed run recomputes the same value from the epoch number alone.

* :class:`GeometricSchedule` -- VIB-GMM's annealing of ``s`` (``vib-gmm.txt``, Algorithm 2):
  start at ``s_min`` and multiply by ``(1 + step)`` every ``every`` epochs, held at ``s_max``
  once it would exceed it;
* :class:`LinearSchedule` -- a KL warm-up: from ``start`` to ``stop`` linearly over ``epochs``
  epochs, then held (with :class:`~pyro_mixvae.infer.elbo.InformationBottleneckELBO`'s
  ``kl="sampled"``, ``s`` from 0 to 1 is the usual warm-up of the KL term).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError


def _check_finite(**values) -> None:
    for key, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ConfigError(f"{key} must be a finite number; got {value!r}")


@dataclass(frozen=True)
class GeometricSchedule:
    """value(epoch) = min(stop, start * (1 + step) ** floor((epoch - 1) / every)).

    Algorithm 2 of VIB-GMM with s_min = ``start``, s_max = ``stop``, epsilon = ``step`` and
    n_epoch = ``every``. ``stop`` is reached exactly (the last multiplication is capped).
    """

    attr: str
    start: float
    stop: float
    step: float
    every: int = 1

    def __post_init__(self):
        _check_finite(start=self.start, stop=self.stop, step=self.step)
        if self.start <= 0:
            raise ConfigError(f"the schedule of {self.attr} must start above 0; got start={self.start}")
        if self.stop < self.start:
            raise ConfigError(f"the schedule of {self.attr} must end at or above its start; got {self.start} -> {self.stop}")
        if self.step < 0:
            raise ConfigError(f"the schedule of {self.attr} needs step >= 0; got {self.step}")
        if int(self.every) != self.every or self.every < 1:
            raise ConfigError(f"the schedule of {self.attr} needs every >= 1 epochs; got {self.every}")

    def value(self, epoch: int) -> float:
        k = (max(int(epoch), 1) - 1) // int(self.every)
        if self.step == 0:
            return float(self.start)
        # log form: no overflow for long runs with a large step
        log_v = math.log(self.start) + k * math.log1p(self.step)
        return float(self.stop) if log_v >= math.log(self.stop) else math.exp(log_v)


@dataclass(frozen=True)
class LinearSchedule:
    """value(epoch) = start + (stop - start) * min(1, (epoch - 1) / epochs); ``epochs = 0`` is ``stop`` throughout."""

    attr: str
    start: float
    stop: float
    epochs: int

    def __post_init__(self):
        _check_finite(start=self.start, stop=self.stop)
        if int(self.epochs) != self.epochs or self.epochs < 0:
            raise ConfigError(f"the schedule of {self.attr} needs epochs >= 0; got {self.epochs}")

    def value(self, epoch: int) -> float:
        if self.epochs == 0:
            return float(self.stop)
        frac = min(1.0, (max(int(epoch), 1) - 1) / self.epochs)
        return float(self.start + (self.stop - self.start) * frac)
