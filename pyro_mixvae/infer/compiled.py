"""The training loss, traced once with ``torch.jit.trace`` and replayed as a graph.

Each SVI step of a Pyro program pays for the Python around the tensor work: the effect
handlers that trace the model and the guide, the enumeration of the cluster site, and
``TraceEnum_ELBO``'s contraction of the log-factors. For a *static* model -- one whose sites,
shapes and control flow are the same at every step -- that Python computes the same graph of
tensor operations every time. :class:`CompiledLoss` records the graph once (``torch.jit.trace``
of the ELBO's ``differentiable_loss``) and afterwards runs only the graph, which brings the step
close to a hand-written torch step (``docs/studies/perf.md``).

This is what Pyro's ``JitTraceEnum_ELBO`` does, with two differences that matter here:

* the models keep their parameters on the ``nn.Module`` (not in Pyro's parameter store), so the
  loss is traced as a module holding the model, whose parameters and buffers are the graph's
  parameters -- gradients reach them and optimizer updates are seen by the next call;
* a graph is kept per *shape* of the batch, per N and per value of the ELBO's scalar settings
  (``s``, ``eta``, ``alpha``, ``lam``), because the trace bakes them in as constants (the plate's
  scale N / B among them): the last, smaller batch of an epoch and every change of an annealed
  ``s`` get their own trace (a fraction of a second each). Pyro's cache is keyed by the number
  of arguments only. The weights an ELBO names in ``traced_weights`` (``MixtureELBO``'s ``hold``,
  which the held start lowers every epoch, and VIB-GMM's annealed ``s``) are inputs of the graph
  instead, so that one graph serves every value; only whether such a weight is 0 or 1 (where the
  ELBO's code branches) is in the key.

The graph runs without TorchScript's optimising executor (``torch.jit.optimized_execution(False)``):
its specialised backward made the DEC network's step slower than eager Pyro (1.16x against
1.09x the hand-written step, one run interleaved); plain replay with torch's autograd does not.

The terms an ELBO reports in ``last_terms`` are outputs of the graph, so they stay per-step values.
The draws inside the graph come from torch's generator as in eager mode; tracing itself runs under
a forked RNG and restores the model's buffers, so that it changes neither the random stream nor
batch-normalisation statistics (a resumed run stays equal to an uninterrupted one).

Only for models that declare ``jit_compatible = True`` (:class:`~pyro_mixvae.models.base.MixtureVAE`),
with the model's own ELBO object, and in training mode: called on a model in evaluation mode it
runs the Python programs as they are. Pyro's argument validation does not run inside a graph, so
``fit`` does not trace when ``TrainConfig.validate`` is on (unless ``jit=True`` is asked for).
An ELBO attribute that is not a scalar (a tensor with more than one value, an object) is not part
of the key: an ELBO whose behaviour depends on such a value between steps must not be traced.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import pyro
import torch
from torch import nn

from .params import param_sites_off


class _LossModule(nn.Module):
    """``forward(x, *observed) -> (loss, *reported terms)`` for one batch shape; the model is a
    submodule, so its parameters and buffers are the traced graph's."""

    def __init__(self, model, elbo, num_data: int, observed_names: tuple):
        super().__init__()
        self.model = model
        self.__dict__["_elbo"] = elbo  # not a submodule
        self.num_data = num_data
        self.observed_names = observed_names
        self.term_names: tuple = ()

    def forward(self, x, *inputs):
        observed, weights = inputs[:len(self.observed_names)], inputs[len(self.observed_names):]
        kwargs = dict(zip(self.observed_names, observed))
        names = traced_weights(self._elbo)
        kept = [getattr(self._elbo, k) for k in names]
        for k, w in zip(names, weights):  # the weight as the graph's input while it runs
            setattr(self._elbo, k, w)
        try:
            loss = self._elbo.differentiable_loss(self.model.model, self.model.guide, x, self.num_data, **kwargs)
        finally:
            for k, v in zip(names, kept):
                setattr(self._elbo, k, v)
        terms = getattr(self._elbo, "last_terms", None) or {}
        self.term_names = tuple(terms)
        return (loss,) + tuple(torch.as_tensor(terms[k]) for k in self.term_names)


class CompiledLoss:
    """``elbo.differentiable_loss(model.model, model.guide, x, num_data, **observed)``, traced per batch shape.

    Call it like the ELBO method it replaces (without the two programs); it returns the same
    loss and sets ``elbo.last_terms`` as the ELBO would.
    """

    def __init__(self, elbo, model):
        self.elbo = elbo
        self.model = model
        self._graphs: dict = {}
        self._settings = None
        self.traces = 0  # how many graphs were recorded (tests, diagnostics)

    def _elbo_settings(self) -> tuple:
        """The ELBO's scalar attributes (a schedule's ``s``, ``eta``, ...), as Python values."""
        weights = traced_weights(self.elbo)
        out = []
        for k, v in vars(self.elbo).items():
            if k.lstrip("_") in weights:  # a graph input (or the attribute behind its property)
                continue
            if isinstance(v, np.generic) or (torch.is_tensor(v) and v.dim() == 0):
                v = v.item()
            if isinstance(v, (bool, int, float, str)):
                out.append((k, v))
        for k in weights:  # only where the ELBO's code branches on the value
            v = float(getattr(self.elbo, k))
            out.append((k, (v == 0, v == 1)))
        return tuple(sorted(out))

    def __call__(self, x: torch.Tensor, num_data: int, **observed) -> torch.Tensor:
        if not self.model.training:  # the graphs are recorded in training mode (batch normalisation, dropout)
            return _eager_loss(self.elbo, self.model, x, num_data, **observed)
        settings = self._elbo_settings()
        if settings != self._settings:  # a schedule changed s (or eta, ...): the old graphs are stale
            self._graphs.clear()
            self._settings = settings
        names = tuple(sorted(observed))
        key = (tuple(x.shape), x.dtype, x.device, int(num_data), tuple(tuple(observed[k].shape) for k in names))
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._trace(x, int(num_data), names, [observed[k] for k in names])
        with torch.jit.optimized_execution(False):
            out = graph[0](x, *[observed[k] for k in names], *self._weight_inputs(x))
        if graph[1].term_names:
            self.elbo.last_terms = dict(zip(graph[1].term_names, out[1:]))
        return out[0]

    def _weight_inputs(self, x: torch.Tensor) -> list:
        """The current values of the ELBO's :func:`traced_weights`, as the graph's inputs (0-dim, like ``x``)."""
        return [torch.tensor(float(getattr(self.elbo, k)), dtype=x.dtype, device=x.device)
                for k in traced_weights(self.elbo)]

    def _trace(self, x, num_data: int, names: tuple, observed: list):
        module = _LossModule(self.model, self.elbo, num_data, names)
        buffers = {k: v.clone() for k, v in self.model.named_buffers()}
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings from Pyro's Python-side shape checks
            graph = torch.jit.trace(module, (x, *observed, *self._weight_inputs(x)), check_trace=False)
        with torch.no_grad():
            for k, v in self.model.named_buffers():
                v.copy_(buffers[k])
        self.traces += 1
        return graph, module


def traced_weights(elbo) -> tuple:
    """The names of the ELBO's scalar weights that a graph takes as inputs (``elbo.traced_weights``, else none)."""
    return tuple(getattr(elbo, "traced_weights", ()))


def compiled_loss(elbo, model, enabled: Optional[bool] = None):
    """A :class:`CompiledLoss` when ``enabled`` (None: the model's ``jit_compatible``), else the eager
    ``lambda x, n, **obs: elbo.differentiable_loss(model.model, model.guide, x, n, **obs)``
    (run without the programs' param sites, which only stock ``pyro.infer.SVI`` needs)."""
    if enabled is None:
        enabled = bool(model.jit_compatible)
    if enabled:
        return CompiledLoss(elbo, model)
    return lambda x, num_data, **observed: _eager_loss(elbo, model, x, num_data, **observed)


def _eager_loss(elbo, model, x, num_data, **observed):
    """The ELBO's loss of the Python programs, without their param sites (the caller's optimizer
    holds the module's parameters already; :func:`~.params.param_sites_off`)."""
    with param_sites_off():
        return elbo.differentiable_loss(model.model, model.guide, x, num_data, **observed)
