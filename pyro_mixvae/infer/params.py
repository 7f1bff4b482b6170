"""A torch module's parameters as Pyro param sites, without Pyro's global parameter store.

The models' ``model`` and ``guide`` call :func:`announce_params` first (``MixtureVAE`` wraps them so),
so that stock ``pyro.infer.SVI`` finds and trains the module's parameters; the package's own loop
holds them in its optimizer already and turns the sites off (:func:`param_sites_off`).

Pyro's JIT ELBOs (``JitTrace_ELBO``, ``JitTraceEnum_ELBO``, ``JitTraceGraph_ELBO``) need one thing
more: ``pyro.ops.jit.trace`` records the param sites' names and then reads each one back with
``pyro.param(name)`` *outside* the programs, from the global store, before every step. Within
:func:`module_param_scope` the store holds the module's own ``nn.Parameter`` objects under those names
(and nothing else of it); on leaving it the store is as it was. See ``docs/stock_elbos.md``.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Dict, Iterator, Optional

import pyro
import torch
from pyro.distributions import constraints
from pyro.params.param_store import param_with_module_name
from pyro.poutine.runtime import am_i_wrapped, effectful
from torch import nn

from ..errors import ConfigError


def announce_params(module: nn.Module, prefix: str) -> None:
    """``pyro.module(prefix, module)`` without Pyro's global parameter store.

    One ``param`` statement per trainable parameter, named ``prefix$$$name``, whose value has
    ``.unconstrained()`` -> the parameter itself: what ``pyro.infer.SVI`` collects and hands to
    its optimizer, and what ``poutine.trace(param_only=True)`` records. Nothing is stored, so two
    models never share a parameter -- what ``PyroModule`` does under
    ``pyro.settings.set(module_local_params=True)``, without depending on that setting. Nothing
    happens outside Pyro's handlers (a plain call) or while ``torch.jit.trace`` records a loss
    (the traced graph takes the module's parameters as its own). A module that declares
    ``jit_compatible = False`` refuses to be recorded by a stock JIT ELBO (:func:`check_traceable`).
    """
    if _quiet[0] or not am_i_wrapped():
        return
    if torch.jit.is_tracing():
        check_traceable(module)
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


# the names that an open module_param_scope holds in the global store, and the Parameter each one holds
_scoped: Dict[str, torch.Tensor] = {}


@contextlib.contextmanager
def module_param_scope(module: nn.Module, prefix: Optional[str] = None) -> Iterator[Dict[str, torch.Tensor]]:
    """Within: Pyro's global parameter store holds ``module``'s trainable parameters under the names
    :func:`announce_params` gives them (``prefix$$$name``; ``prefix`` defaults to ``module.name``, a
    model's). For Pyro's JIT ELBOs, which read the parameters back from the store::

        with module_param_scope(m):
            svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}), JitTraceEnum_ELBO(max_plate_nesting=1))
            for xb in batches:
                svi.step(xb, num_data=N)   # N by keyword: a JIT ELBO traces tensors only

    The store holds the ``nn.Parameter`` objects themselves (``set_state``, unconstrained = constrained
    under ``constraints.real``), not copies: ``torch.jit.trace`` sees them as the graph's inputs, the
    optimizer steps them, and the module is trained. Nothing else in the store changes: on leaving,
    the names are removed (a stale entry of the same name found on entry -- say, from an earlier
    ``pyro.module`` -- is put back) and the ``unconstrained`` attribute that the store's reads leave
    on each Parameter is dropped, so the module pickles again; an exception leaves it the same way.

    Nested scopes for the same Parameters are harmless (the outer one keeps them); another module's
    Parameter under a name an open scope holds raises ``ValueError``, since a JIT ELBO would then
    trace one model's parameters as the other's. The non-JIT ELBOs need no scope (the param sites
    carry the Parameters) and run the same inside one. Yields {name: Parameter} as held.
    """
    prefix = _scope_prefix(module, prefix)
    store = pyro.get_param_store()
    wanted = {param_with_module_name(prefix, name): p for name, p in module.named_parameters() if p.requires_grad}
    held = dict(store.named_parameters())
    added: Dict[str, torch.Tensor] = {}
    for name, param in wanted.items():
        if held.get(name) is param:
            continue  # an enclosing scope holds it already
        if _scoped.get(name, param) is not param:
            raise ValueError(f"{name!r} is held by another module's module_param_scope: two modules with the "
                             f"prefix {prefix!r} cannot share one; give one of them another prefix")
        added[name] = param
    shadowed = {"params": {}, "constraints": {}}
    if any(name in held for name in added):  # stale entries of the same names, put back on leaving
        state = store.get_state()
        for name in added:
            if name in held:
                shadowed["params"][name] = state["params"][name]
                shadowed["constraints"][name] = state["constraints"][name]
    store.set_state({"params": dict(added), "constraints": {name: constraints.real for name in added}})
    registered = [name for name in added if name not in _scoped]  # not already an enclosing scope's
    _scoped.update((name, added[name]) for name in registered)
    try:
        yield wanted
    finally:
        for name in registered:
            del _scoped[name]
        held = dict(store.named_parameters())
        for name, param in added.items():
            if held.get(name) is param:  # unless the caller cleared or replaced it meanwhile
                del store[name]
            param.__dict__.pop("unconstrained", None)
        store.set_state(shadowed)


def _scope_prefix(module: nn.Module, prefix: Optional[str]) -> str:
    if prefix is None:
        prefix = getattr(module, "name", None)
    if not isinstance(prefix, str) or not prefix:
        raise TypeError(f"module_param_scope needs the prefix that announce_params uses for a "
                        f"{type(module).__name__} (it has no str attribute 'name')")
    return prefix


def check_traceable(module: nn.Module) -> None:
    """Refuse a module that declares ``jit_compatible = False`` while ``torch.jit.trace`` records its
    programs with their param sites on (a stock JIT ELBO; the package's own trace turns the sites
    off and decides with :func:`~pyro_mixvae.infer.compiled.compiled_loss`).

    A stock JIT ELBO makes only the param store's tensors and its call's tensor arguments inputs of
    the graph; every other tensor the programs read is recorded as a constant. A model whose programs
    read state that changes between steps -- the factorial prior's conjugate buffers, which
    ``conjugate_step`` rewrites after every step -- would be replayed with the values of the step it
    was traced at: a wrong loss, without an error. Hence the error here.
    """
    if getattr(module, "jit_compatible", True) is False:
        raise ConfigError(
            f"{type(module).__name__} ({getattr(module, 'name', '')}) cannot be traced by a JIT ELBO: its "
            "programs read state that changes between steps (jit_compatible = False; for the factorial "
            "model, the conjugate buffers that conjugate_step updates), which a torch.jit trace would freeze "
            "as constants. Train it with a non-JIT ELBO, e.g. its make_elbo() (TraceEnum_ELBO).")
