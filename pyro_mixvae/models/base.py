"""What every mixture-prior VAE in this package shares.

A model is a ``torch.nn.Module`` with two Pyro programs, ``model(x, num_data)`` and
``guide(x, num_data)``, trained by :func:`pyro_mixvae.infer.fit` with ``TraceEnum_ELBO`` (or a
subclass). Its cluster variable is a sample site with ``infer={"enumerate": "parallel"}``;
all its parameters live on the module (``nn.Parameter`` or buffers), never in Pyro's global
parameter store, so several models in one process are independent.

Pyro's own machinery works on the two programs as they are:

* **training** -- every subclass's ``model`` and ``guide`` first announce the module's trainable
  parameters to Pyro (:func:`~pyro_mixvae.infer.params.announce_params`, a ``pyro.module``
  statement that leaves the global parameter store alone, as ``PyroModule`` does under
  ``module_local_params``), so a stock
  ``pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam(...), m.make_elbo())`` trains them all,
  whatever ``pyro.settings`` say; :meth:`MixtureVAE.conjugate_step` after each ``svi.step`` does
  what SVI cannot (the factorial prior's natural-gradient step). Pyro's JIT ELBOs read the
  parameters back from the global store: they run inside :meth:`MixtureVAE.param_scope`, with
  ``num_data`` passed by keyword (``docs/stock_elbos.md``: which ELBO applies to which model);
* **generation** -- ``model(None, num_data=N)`` generates N points (the observed site samples when
  ``x`` is None) and returns the decoder's output, so ``pyro.infer.Predictive(m.model,
  num_samples=S)(None, N)`` draws from the prior, ``Predictive(m.model, guide=m.guide, ...)(None, N)``
  from the posterior over the global sites (the factorial prior's), and
  ``Predictive(poutine.uncondition(m.model), guide=m.guide, ...)(x)`` reconstructs ``x``;
  :meth:`MixtureVAE.sample` is written on that;
* **drawing** -- ``pyro.render_model(m.model, model_args=(x,))`` (with graphviz, the ``graph`` extra).

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

import functools
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence

import pyro
import torch
from pyro import poutine
from pyro.infer import Predictive
from torch import nn

from ..errors import ConfigError
from ..infer.elbo import default_elbo
from ..infer.params import announce_params, module_param_scope
from ..infer.pretrain import GMM_FITS
from ..infer.schedules import LinearSchedule
from ..nets import ARCHITECTURES


DEFAULT_CLUSTERS = 10  # K when none is given (and the data carry no labels to count): the models, CLI, estimators
# --clusters auto / n_clusters="auto": the components a model gets when no --max-clusters is given (VaDE's
# start_clusters="auto" fills those the data propose, the others start empty)
DEFAULT_MAX_CLUSTERS = 20


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


def optional(kind):
    """A setting type that also accepts None / 'auto': the default that the model derives from its architecture
    or its data."""

    def convert(raw):
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "auto")):
            return None
        if isinstance(raw, bool):
            raise TypeError(raw)
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw) if not isinstance(raw, str) else int(raw.strip())
        return kind(raw)

    convert.__name__ = getattr(kind, "__name__", "value")
    return convert


def positive_or_none(value):
    if value is None:
        return None
    if isinstance(value, tuple):
        return None if value and all(v > 0 for v in value) else "must be positive integers"
    return None if value > 0 else "must be > 0"


# the networks' settings that VaDE (and VIB-GMM) and the factorial prior share: spread into their ``settings``
NETWORK_SETTINGS = {
    "hidden": Setting(optional(int_tuple), None, "encoder widths; the decoder mirrors them (default: "
                      "500,500,2000 from 64 input values, down to half of it for 32 or fewer)", positive_or_none),
    "arch": Setting(str, "mlp", "mlp, or conv for 28x28 / 32x32 images", one_of(ARCHITECTURES)),
}


# the pretraining's settings that every model with one shares (the factorial prior: with its own help, through
# dataclasses.replace): declared once, spread into their ``settings``
PRETRAIN_SETTINGS = {
    "pretrain_lr": Setting(float, 1e-3, "learning rate of the autoencoder pretraining", positive),
    "gmm_restarts": Setting(int, 10, "restarts of the GMM on the codes that starts the mixture (k-means starts), "
                            "the one of best likelihood kept; on the codes' t-SNE embedding, their consensus", positive),
}


# the mixture start's settings that VaDE (and VIB-GMM) and GMVAE share: declared once, spread into their ``settings``
START_SETTINGS = {
    "gmm_assign": Setting(str, "auto", "what decides the mixture start: graph (the connected components of the "
                          "data's 10-nearest-neighbour graph, when there are K), tsne-data (the consensus of full GMMs "
                          "on start_embeddings t-SNE embeddings of the data as the networks see them, then the codes' "
                          "diagonal moments), tsne (the same on one embedding of the codes), diag, full (full "
                          "covariance on standardised codes, then their diagonal moments), data (a GMM on the "
                          "standardised data, its covariance type chosen by BIC, then the codes' diagonal moments), "
                          "or auto: graph where it finds K components in data of at most 100 dimensions, else "
                          "tsne-data when the clusters hold 90 points on average (tsne where the data have no more "
                          "dimensions than the codes, or over 100), else data (diag over 100 dimensions)",
                          one_of(GMM_FITS)),
    "start_embeddings": Setting(int, 3, "with gmm_assign=tsne-data: t-SNE embeddings of the data (seeds s, s+1, ...) "
                                "whose GMM starts all enter the consensus", positive),
    "consensus_starts": Setting(int, 40, "with gmm_assign=tsne-data: GMM starts (k-means starts) in each "
                                "embedding of the data, whose consensus decides the start", positive),
    "start_autoencoders": Setting(int, 1, "autoencoders pretrained whose codes decide the mixture start (the "
                                  "consensus of the GMM starts on each one's codes): the model's own and "
                                  "start_autoencoders - 1 more", positive),
    "hold_start": Setting(int, 20, "epochs over which q(c|x) is held at the mixture start's responsibilities "
                          "(VaDE eq. 12), their weight falling linearly from 1 to 0; 0 = off", non_negative),
}


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


def _announcing(program):
    """Wrap a model's ``model`` / ``guide`` so that it calls :func:`~pyro_mixvae.infer.params.announce_params` first."""

    @functools.wraps(program)
    def run(self, *args, **kwargs):
        announce_params(self, self.name)
        return program(self, *args, **kwargs)

    run.announces_params = True
    return run


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
    # the model's enumerated cluster sites (one per factor): what sample() clamps and returns
    cluster_sites: Sequence[str] = ("c",)
    # True when fit(..., labels=...) may clamp cluster sites to partial labels (`mixvae fit --labels`)
    accepts_labels = False
    # the training values (epochs, pretrain_epochs, lr, ...) that differ for this model from
    # pyro_mixvae.infer.train.TRAIN_DEFAULTS; TrainConfig.for_model reads both, `mixvae settings` shows them
    train_defaults: Dict[str, Any] = {}
    # the values that replace those on data sets of fewer than pyro_mixvae.infer.train.SMALL_DATA points
    small_data_defaults: Dict[str, Any] = {}
    # per architecture, values over train_defaults (GMVAE's: its fc120 nets train longer); a model that has them
    # merges its architecture's row into its own train_defaults when built
    arch_train_defaults: Dict[str, Dict[str, Any]] = {}
    # set by pretraining: the responsibilities (N, K) that decided the mixture start (NaN rows for points it was
    # not decided on), which pyro_mixvae.infer.train.hold_start holds q(c | x) at; None: the start says no more
    # than the mixture's own posterior, and nothing is held
    start_responsibilities: Optional[torch.Tensor] = None
    # the networks a subclass builds in __init__, read by the machinery: the likelihood head p(x | z) (its data
    # units: nets.fit_data_units), the encoder of q(z | x) (latent_means) and the decoder
    likelihood: nn.Module
    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, data_shape, n_clusters: int, likelihood: str = "bernoulli", **settings):
        super().__init__()
        if int(n_clusters) < self.min_clusters:
            raise ConfigError(f"model {self.name!r} needs at least {self.min_clusters} cluster(s); got K={n_clusters}")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.n_clusters = int(n_clusters)
        self.likelihood_name = likelihood
        self.hparams = parse_settings(self.name, self.settings, settings)

    def __init_subclass__(cls, **kwargs):
        """Every subclass's ``model`` and ``guide`` announce the module's parameters to Pyro
        (:func:`~pyro_mixvae.infer.params.announce_params`), so that stock ``pyro.infer.SVI`` trains them."""
        super().__init_subclass__(**kwargs)
        for name in ("model", "guide"):
            program = cls.__dict__.get(name)
            if program is not None and not getattr(program, "announces_params", False):
                setattr(cls, name, _announcing(program))

    # -- what the training loop and the estimator call ------------------------------------
    @abstractmethod
    def model(self, x=None, num_data: Optional[int] = None):
        """The generative program p(x, z, c); ``num_data`` is N when ``x`` is a minibatch.

        With ``x`` None it generates ``num_data`` points (1 if None): the observed site samples.
        Returns the decoder's output for the drawn z (what :meth:`sample` maps to E[x | z])."""

    @abstractmethod
    def guide(self, x=None, num_data: Optional[int] = None):
        """The amortized variational program q(z, ... | x); with ``x`` None only the global sites (if any)."""

    @abstractmethod
    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) posterior cluster probabilities for a batch of data."""

    @torch.no_grad()
    def sample(self, n: int, cluster: Optional[int] = None):
        """(x_mean, c): ``n`` data-space means E[x | z], z drawn by the generative story (with
        c = ``cluster`` when given), the global sites from the guide (:meth:`generate`)."""
        self.check_cluster(cluster)
        x_mean, clusters = self.generate(n, {self.cluster_sites[0]: cluster})
        return x_mean, clusters[0]

    @torch.no_grad()
    def generate(self, n: int, clusters: Optional[Dict[str, Optional[int]]] = None):
        """``n`` new points by ``pyro.infer.Predictive(model, guide=guide)`` at ``x = None``.

        The guide draws the global sites (one draw for all ``n``; VaDE and GMVAE have none), the
        model the rest of its story; ``clusters`` {site: k} clamps cluster sites (``poutine.condition``,
        None = drawn). Returns (E[x | z] (n, *data_shape), [values (n,) of each of ``cluster_sites``]).
        """
        model = self.model
        fixed = {site: k for site, k in (clusters or {}).items() if k is not None}
        if fixed:
            device = self.zero().device
            model = poutine.condition(model, data={site: torch.full((n,), int(k), dtype=torch.long, device=device)
                                                   for site, k in fixed.items()})
        sites = ("_RETURN",) + tuple(self.cluster_sites)
        draws = Predictive(model, guide=self.guide, num_samples=1, return_sites=sites)(None, n)
        return self.likelihood.mean(draws["_RETURN"][0]), [draws[site][0] for site in self.cluster_sites]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, num_samples: int = 1, **observed) -> torch.Tensor:
        """(S, B, *data_shape) posterior-predictive means E[x | z] of the batch ``x``, z ~ q(z | x):
        ``Predictive(poutine.uncondition(model), guide=guide, num_samples=S)(x, B)`` -- the guide's
        draws, and the model's observed site left to sample rather than held at ``x``."""
        draws = Predictive(poutine.uncondition(self.model), guide=self.guide, num_samples=num_samples,
                           return_sites=("_RETURN",))(x, x.shape[0], **observed)
        return self.likelihood.mean(draws["_RETURN"])

    def zero(self) -> torch.Tensor:
        """A 0-d zero with the parameters' dtype and device (for sites that do not depend on ``x``)."""
        return next(self.parameters()).new_zeros(())

    def pretrain(self, x: torch.Tensor, epochs: int, batch_size: int, seed: int, progress: bool = False,
                 **observed) -> dict:
        """Initialisation before SVI; returns a dict of what it measured. Default: nothing."""
        return {}

    def diagnostics(self, x: torch.Tensor) -> dict:
        """Model-specific numbers for ``metrics.json`` (JSON-serialisable). Default: none."""
        return {}

    def conjugate_step(self, x: torch.Tensor, num_data: int, **observed) -> None:
        """Updates that SVI's gradient step does not make, called after each optimizer step on the
        same minibatch (the factorial prior's natural-gradient step). Default: nothing.

        Public so that a plain Pyro loop matches :func:`~pyro_mixvae.infer.fit`::

            svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}), m.make_elbo())
            for xb in batches:
                svi.step(xb, N)
                m.conjugate_step(xb, N)
        """

    def param_scope(self):
        """A context within which Pyro's global parameter store holds this model's own parameters, for Pyro's
        JIT ELBOs (:func:`~pyro_mixvae.infer.params.module_param_scope`)::

            with m.param_scope():
                svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}), JitTraceEnum_ELBO(max_plate_nesting=1))
                for xb in batches:
                    svi.step(xb, num_data=N)
        """
        return module_param_scope(self, self.name)

    def make_elbo(self, num_particles: int = 1):
        """The training objective: plain ``TraceEnum_ELBO`` unless a model adds terms from its settings."""
        return default_elbo(self, num_particles)

    def schedules(self) -> list:
        """Schedules the training loop runs on the ELBO object (:mod:`pyro_mixvae.infer.schedules`). Default: the
        held start's, if the model has one (:meth:`hold_schedules`)."""
        return self.hold_schedules()

    def keep_start_responsibilities(self, responsibilities) -> None:
        """Keep the responsibilities (N, K) that decided the mixture start (``MixtureStart.responsibilities``, or
        None) as ``start_responsibilities``, in the parameters' dtype, for the held start."""
        dtype = next(self.parameters()).dtype
        self.start_responsibilities = None if responsibilities is None else torch.as_tensor(responsibilities,
                                                                                            dtype=dtype)

    def hold_schedules(self) -> list:
        """With a ``hold_start`` setting of E > 0 epochs: the weight ``hold`` of
        :class:`~pyro_mixvae.infer.elbo.MixtureELBO` falling linearly from 1 at epoch 1 to 0 from epoch E + 1,
        so that the first epochs train VaDE eq. 12 with q(c | x) held at the mixture start's responsibilities
        and hand over to the model's own posterior; else none."""
        epochs = int(self.hparams.get("hold_start") or 0)
        return [LinearSchedule("hold", 1.0, 0.0, epochs)] if epochs > 0 else []

    # -- what posterior analysis reads (pyro_mixvae.analysis) --------------------------------
    # True when the global sites are parameters (point values); False when the guide has a q over them
    globals_are_point_values = True

    @property
    def point_value_sites(self) -> tuple:
        """The parts of :meth:`prior_components` (``pi``, ``mu_c``, ``sigma_c``) that are parameters, not drawn
        from a q: the point values that ArviZ's ``constant_data`` holds (:mod:`pyro_mixvae.analysis`)."""
        return ("pi", "mu_c", "sigma_c") if self.globals_are_point_values else ()

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

    @property
    def cluster_counts(self) -> tuple:
        """The number of clusters of each of ``cluster_sites``: ``(n_clusters,)`` for one site (the factorial
        prior: K_1, ..., K_I). What partial labels and the data-size checks read."""
        return (self.n_clusters,)

    def check_cluster(self, cluster: Optional[int]) -> None:
        if cluster is not None and not (0 <= int(cluster) < self.n_clusters):
            raise ConfigError(f"cluster {cluster} does not exist: this model has clusters 0..{self.n_clusters - 1}")


def data_plate(x: Optional[torch.Tensor], num_data: Optional[int] = None):
    """The plate over data points: the minibatch ``x`` stands for ``num_data`` points.

    The batch is the subsample, so every site inside is scaled by N / B, the unbiased
    minibatch estimate of the full-data ELBO. With ``x`` None (generation) it is a plate of
    ``num_data`` new points (1 when None), unscaled.
    """
    if x is None:
        return pyro.plate("data", 1 if num_data is None else int(num_data))
    batch = x.shape[0]
    size = batch if num_data is None else int(num_data)
    return pyro.plate("data", size, subsample=torch.arange(batch, device=x.device))


def _jsonable(values: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
