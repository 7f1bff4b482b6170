"""A torch module's parameters as Pyro param sites, without Pyro's global parameter store.

The models' ``model`` and ``guide`` call :func:`announce_params` first (``MixtureVAE`` wraps them so),
so that stock ``pyro.infer.SVI`` finds and trains the module's parameters; the package's own loop
holds them in its optimizer already and turns the sites off (:func:`param_sites_off`).
"""
from __future__ import annotations

import contextlib
import weakref

import torch
from pyro.distributions import constraints
from pyro.params.param_store import param_with_module_name
from pyro.poutine.runtime import am_i_wrapped, effectful
from torch import nn


def announce_params(module: nn.Module, prefix: str) -> None:
    """``pyro.module(prefix, module)`` without Pyro's global parameter store.

    One ``param`` statement per trainable parameter, named ``prefix$$$name``, whose value has
    ``.unconstrained()`` -> the parameter itself: what ``pyro.infer.SVI`` collects and hands to
    its optimizer, and what ``poutine.trace(param_only=True)`` records. Nothing is stored, so two
    models never share a parameter -- what ``PyroModule`` does under
    ``pyro.settings.set(module_local_params=True)``, without depending on that setting. Nothing
    happens outside Pyro's handlers (a plain call) or while ``torch.jit.trace`` records a loss
    (the traced graph takes the module's parameters as its own).
    """
    if _quiet[0] or torch.jit.is_tracing() or not am_i_wrapped():
        return
    for name, param in module.named_parameters():
        if param.requires_grad:
            _announce(param_with_module_name(prefix, name), param)


_quiet = [0]


@contextlib.contextmanager
def param_sites_off():
    """Within: :func:`announce_params` does nothing. For a loop that hands the module's parameters
    to its own optimizer (:func:`~pyro_mixvae.infer.fit`, through
    :func:`~pyro_mixvae.infer.compiled.compiled_loss`), where the param sites would only cost time."""
    _quiet[0] += 1
    try:
        yield
    finally:
        _quiet[0] -= 1


def _announce(name: str, param: nn.Parameter) -> None:
    value = param.detach()  # an alias carries the reference, so the Parameter itself stays picklable
    value.unconstrained = weakref.ref(param)
    effectful(lambda *_, **__: value, type="param")(name, value, constraint=constraints.real, name=name)
