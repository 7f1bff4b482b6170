"""The models, one file per generative story, and the registry name -> class.

``mixvae fit NAME`` and :func:`build` look models up here; a user's own model becomes
available to the CLI and the estimators with :func:`register`.
"""
from __future__ import annotations

from typing import Dict, Type

from ..errors import ConfigError
from .base import MixtureVAE, Setting, data_plate
from .factorial import FactorialMixtureVAE
from .gmvae import GMVAE
from .vade import VaDE
from .vib_gmm import VIBGMM

MODELS: Dict[str, Type[MixtureVAE]] = {}


def register(cls: Type[MixtureVAE]) -> Type[MixtureVAE]:
    """Make ``cls`` available under ``cls.name`` (usable as a class decorator)."""
    MODELS[cls.name] = cls
    return cls


def get_model_class(name: str) -> Type[MixtureVAE]:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: expected one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build(model: str, data_shape, n_clusters: int, likelihood: str, settings=None) -> MixtureVAE:
    """Construct a registered model from the dict that :meth:`MixtureVAE.construction` returns."""
    return get_model_class(model)(data_shape, n_clusters, likelihood, **(settings or {}))


register(VaDE)
register(GMVAE)
register(VIBGMM)
register(FactorialMixtureVAE)

__all__ = ["FactorialMixtureVAE", "GMVAE", "MODELS", "MixtureVAE", "Setting", "VIBGMM", "VaDE", "build", "data_plate", "get_model_class", "register"]
