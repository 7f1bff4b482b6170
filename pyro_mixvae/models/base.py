"""What every mixture-prior VAE in this package shares.

A model is a ``torch.nn.Module`` with two Pyro programs, ``model(x, num_data)`` and
``guide(x, num_data)``, trained by :func:`pyro_mixvae.infer.fit` with ``TraceEnum_ELBO`` (or a
subclass). Its cluster variable is a sample site with ``infer={"enumerate": "parallel"}``;
all its parameters live on the module (``nn.Parameter`` or buffers), never in Pyro's global
parameter store, so several models in one process are independent.

Besides the two programs a model provides what the training loop, the estimator and the CLI
need, with the same names everywhere:

* ``responsibilities(x)`` -> (N, K) cluster posteriors used for assignments;
* ``sample(n, cluster=None)`` -> data-space means and the clusters they came from;
* ``pretrain(x, epochs, ...)`` -> optional initialisation before SVI (no-op by default);
* ``settings`` -> the model's own hyperparameters (``mixvae fit --set key=value``), declared
  with :class:`Setting` so that names and types are checked before anything is trained;
* for posterior analysis (:mod:`pyro_mixvae.analysis`): ``prior_components()`` (the mixture's
  weights, means and scales per factor), ``global_posterior(S)`` (draws of the global sites),
  ``latent_means(x)``, ``factor_responsibilities(x)`` and ``kl_parts(x)``, with defaults where
  one can be given.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import pyro
import torch
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """A model hyperparameter: its type, default, and one line of help."""

    type: Callable[[str], Any]
    default: Any
    help: str = ""
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns an error text or None


def int_tuple(text) -> tuple:
    """'500,500,2000' -> (500, 500, 2000); a tuple or list passes through."""
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    return tuple(int(v) for v in str(text).split(",") if v.strip())


def positive(value):
    return None if value > 0 else "must be > 0"


def non_negative(value):
    return None if value >= 0 else "must be >= 0"


def one_of(choices):
    """A Setting check accepting only the values in ``choices``."""

    def check(value):
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def parse_settings(model_name: str, declared: Dict[str, Setting], given: Dict[str, Any]) -> Dict[str, Any]:
    """Check ``given`` (strings from the CLI or Python values) against ``declared``.

    Returns every declared setting with its value; unknown keys and values of the wrong type
    raise :class:`ConfigError` naming the key and the accepted ones.
    """
    values = {k: s.default for k, s in declared.items()}
    for key, raw in given.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ConfigError(f"unknown setting {key!r} for model {model_name!r}; its settings are: {known}")
        setting = declared[key]
        try:
            value = _convert(setting.type, raw)
        except (TypeError, ValueError):
            raise ConfigError(
                f"setting {key}={raw!r} for model {model_name!r} is not a valid {getattr(setting.type, '__name__', 'value')}"
            ) from None
        problem = setting.check(value) if setting.check else None
        if problem:
            raise ConfigError(f"setting {key}={raw!r} for model {model_name!r} {problem}")
        values[key] = value
    return values


def _convert(kind, raw):
    if kind is bool and isinstance(raw, str):
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if kind in (int, float) and isinstance(raw, bool):
        raise TypeError(raw)
    if kind is int and isinstance(raw, str):
        return int(raw)  # "2.5" is refused rather than truncated
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ValueError(raw)
    return kind(raw)


class MixtureVAE(nn.Module, metaclass=ABCMeta):
    """Base class: a mixture-prior VAE written as a pair of Pyro programs.

    Subclasses set ``name``, ``settings``, build their networks in ``__init__`` from
    ``data_shape``, ``n_clusters``, ``likelihood`` and their settings, and implement
    :meth:`model`, :meth:`guide` and :meth:`responsibilities`.
    """

    name = "mixture-vae"
    settings: Dict[str, Setting] = {}
    # True when model and guide are static -- the same sites, shapes and Python control flow at
    # every step, parameters on the module, nothing changed outside it in between -- so that the
    # training loss may be traced once per batch shape (pyro_mixvae.infer.compiled)
    jit_compatible = False
    max_plate_nesting = 1
    min_clusters = 1
    default_epochs = 50
    default_pretrain_epochs = 0
    # training settings that differ from pyro_mixvae.infer.train.TRAIN_DEFAULTS for this model
    train_defaults: Dict[str, Any] = {}

    def __init__(self, data_shape, n_clusters: int, likelihood: str = "bernoulli", **settings):
        super().__init__()
        if int(n_clusters) < self.min_clusters:
            raise ConfigError(f"model {self.name!r} needs at least {self.min_clusters} cluster(s); got K={n_clusters}")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.n_clusters = int(n_clusters)
        self.likelihood_name = likelihood
        self.hparams = parse_settings(self.name, self.settings, settings)

    # -- what the training loop and the estimator call ------------------------------------
    @abstractmethod
    def model(self, x, num_data: Optional[int] = None):
        """The generative program p(x, z, c); ``num_data`` is N when ``x`` is a minibatch."""

    @abstractmethod
    def guide(self, x, num_data: Optional[int] = None):
        """The amortized variational program q(z, ... | x)."""

    @abstractmethod
    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) posterior cluster probabilities for a batch of data."""

    @abstractmethod
    def sample(self, n: int, cluster: Optional[int] = None):
        """(x_mean, c): ``n`` data-space means drawn from the prior (or from cluster ``cluster``)."""

    def pretrain(self, x: torch.Tensor, epochs: int, batch_size: int, seed: int, progress: bool = False,
                 **observed) -> dict:
        """Initialisation before SVI; returns a dict of what it measured. Default: nothing."""
        return {}

    def diagnostics(self, x: torch.Tensor) -> dict:
        """Model-specific numbers for ``metrics.json`` (JSON-serialisable). Default: none."""
        return {}

    def after_step(self, x: torch.Tensor, num_data: int, **observed) -> None:
        """Called by the training loop after each optimizer step (conjugate updates). Default: nothing."""

    def make_elbo(self, num_particles: int = 1):
        """The training objective: plain ``TraceEnum_ELBO`` unless a model adds terms from its settings."""
        from ..infer.train import default_elbo

        return default_elbo(self, num_particles)

    def schedules(self) -> list:
        """Schedules the training loop runs on the ELBO object (:mod:`pyro_mixvae.infer.schedules`). Default: none."""
        return []

    def extra_state(self) -> dict:
        """State outside ``state_dict`` that a checkpoint must keep (e.g. conjugate step counts)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # -- what posterior analysis reads (pyro_mixvae.analysis) --------------------------------
    # True when the global sites are parameters (point values); False when the guide has a q over them
    globals_are_point_values = True

    def prior_components(self) -> list:
        """Per factor, (pi (K,), loc (K, D), scale (K, D)): the mixture prior on that factor's block of z
        as point values, p(z) = sum_k pi_k N(z | loc_k, diag scale_k^2). A model must say what its components are."""
        raise ConfigError(f"model {self.name!r} does not describe its mixture components (prior_components)")

    def global_posterior(self, num_samples: int) -> list:
        """Per factor, {name: (S, K, ...) tensor} of draws of the global latent sites.

        Default: the point values of :meth:`prior_components` as one draw (S = 1), named
        ``pi``, ``mu_c``, ``sigma_c``; a model with a guide over its globals draws from it instead
        (and sets ``globals_are_point_values = False``).
        """
        return [{"pi": pi[None], "mu_c": loc[None], "sigma_c": scale[None]}
                for pi, loc, scale in self.prior_components()]

    def latent_means(self, x: torch.Tensor) -> torch.Tensor:
        """(N, sum_i D_i) mean of q(z | x), the factor blocks side by side. Default: ``self.encoder(x)[0]``."""
        return self.encoder(x)[0]

    def factor_responsibilities(self, x: torch.Tensor) -> list:
        """[(N, K_i)] cluster posteriors per factor. Default: one factor, :meth:`responsibilities`."""
        return [self.responsibilities(x)]

    def kl_parts(self, x: torch.Tensor) -> dict:
        """Per-factor KL terms of the bound, {name: [mean per point, one per factor]}. Default: none."""
        return {}

    # -- what builds a model back from a run directory -------------------------------------
    def construction(self) -> dict:
        """Everything needed to rebuild this model: ``registry.build(**m.construction())``."""
        return {"model": self.name, "data_shape": list(self.data_shape), "n_clusters": self.n_clusters,
                "likelihood": self.likelihood_name, "settings": _jsonable(self.hparams)}

    def check_cluster(self, cluster: Optional[int]) -> None:
        if cluster is not None and not (0 <= int(cluster) < self.n_clusters):
            raise ConfigError(f"cluster {cluster} does not exist: this model has clusters 0..{self.n_clusters - 1}")


def data_plate(x: torch.Tensor, num_data: Optional[int] = None):
    """The plate over data points: the minibatch ``x`` stands for ``num_data`` points.

    The batch is the subsample, so every site inside is scaled by N / B, the unbiased
    minibatch estimate of the full-data ELBO.
    """
    batch = x.shape[0]
    size = batch if num_data is None else int(num_data)
    return pyro.plate("data", size, subsample=torch.arange(batch, device=x.device))


def _jsonable(values: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
