"""scikit-learn estimators around the Pyro models.

``VaDE(n_clusters=10).fit(X)`` then ``predict``, ``predict_proba``, ``sample`` and ``score``.
The estimators keep scikit-learn's estimator contract and pass its own conformance suite
(``sklearn.utils.estimator_checks``, run in ``tests/test_estimator_checks.py``):

* every hyperparameter is an ``__init__`` argument stored unchanged (``get_params``,
  ``set_params``, ``clone``). The signature and its numpydoc Parameters section are made from the
  declarations (:func:`estimator_parameters`): the estimator's own parameters, the model class's
  ``settings`` with their defaults and help, and the training values of
  :class:`~pyro_mixvae.infer.train.TrainConfig` (``TRAINING_VALUES``; None: the model's default for the data).
  :func:`estimator_for` gives the estimator of any registered model, one of the user's included;
* ``random_state`` is an int, None or a ``numpy.random.RandomState``
  (:func:`sklearn.utils.check_random_state`): an int r trains as ``mixvae fit --seed r`` does
  (restarts with seeds r, r+1, ...), None or a ``RandomState`` draws the first seed from it;
* ``X`` is validated by scikit-learn (:func:`sklearn.utils.check_array`, its feature-name and
  feature-count checks): an array of shape (N, D), (N, H, W) or (N, C, H, W) or a DataFrame;
  sparse, complex, 1-D, empty and non-finite input are refused with scikit-learn's messages.

Everything learned ends with ``_`` (:data:`ATTRIBUTES`, each class's Attributes section).
Labels passed as ``y`` to ``fit`` are never used for training; they only add accuracy, NMI and
ARI to ``history_``. ``score(X)`` is the mean ELBO per point with its Monte-Carlo draws taken
from a private generator seeded with :data:`SCORE_SEED`: a fitted estimator gives the same
score for the same data every time, and torch's global random state is left as it was.
"""
from __future__ import annotations

import inspect
import numbers
import sys
import textwrap
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_array, check_is_fitted

from .data import check_data, load_partial_labels_array
from .evaluation import elbo_per_point, predict_proba
from .infer.train import TRAINING_VALUES, TrainConfig, resolve_device
from .models import get_model_class
from .models.base import DEFAULT_CLUSTERS, DEFAULT_MAX_CLUSTERS
from .nets import LIKELIHOOD_HELP, eval_mode, resolve_likelihood
from .runner import as_model_input, check_components, check_seed, fit_best

SCORE_SEED = 0  # seed of the private generator that score() draws its particles from

# The estimators' parameters, {name: (default, type, help)}: these first, then the model's settings, then OWN_LAST
OWN_FIRST = {
    "n_clusters": (DEFAULT_CLUSTERS, "int or 'auto'", "K, the number of clusters; 'auto' (models with a "
                                                       "``start_clusters`` setting): ``DEFAULT_MAX_CLUSTERS`` "
                                                       "components, ``start_clusters='auto'``, the clusters found in "
                                                       "``n_clusters_``."),
    "n_init": (1, "int", "Trainings from seeds s, s + 1, ... (s from random_state); the one with the best training "
                         "ELBO is kept, the labels are never used to choose."),
}
OWN_LAST = {
    "likelihood": ("auto", "str", LIKELIHOOD_HELP + "."),
    **{name: (None, f"{value.metadata['type'].__name__} or None",
              value.metadata["help"] + "; None: the model's default for the data.")
       for name, value in TRAINING_VALUES.items()},
    "random_state": (0, "int, RandomState instance or None", "An int r trains as ``mixvae fit --seed r`` does; None or "
                                                             "a RandomState draws the first seed from it."),
    "device": (None, "str or None", "cpu, cuda or cuda:N; None: cuda when present."),
    "verbose": (False, "bool", "A progress bar while training."),
}
TRAIN_PARAMS = (*TRAINING_VALUES, "device")  # the parameters that make the TrainConfig (the seed: random_state)
ATTRIBUTES = {
    "model_": ("MixtureVAE", "The trained model (a torch module), left in evaluation mode."),
    "history_": ("History", "The per-epoch records of :func:`pyro_mixvae.infer.fit`."),
    "labels_": ("ndarray of shape (n_samples,)", "The assignments of the training data."),
    "likelihood_": ("str", "The likelihood used."),
    "n_features_in_": ("int", "Values per point (C * H * W for images)."),
    "data_shape_": ("tuple", "The shape of one point as the model sees it."),
    "feature_names_in_": ("ndarray of str", "A DataFrame's column names, when X had them."),
    "restarts_": ("list of dict", "One record per restart: seed, ELBO when n_init > 1, acc / NMI / ARI when y was "
                                  "given."),
    "best_restart_": ("int", "The restart kept: the best training ELBO."),
    "n_clusters_": ("int", "The clusters the model uses: under a Dirichlet prior on the weights those q(pi) gives "
                           "more than one point (``effective_clusters``), else K."),
}
ESTIMATORS: dict = {}  # model name -> its estimator class (filled as they are defined; estimator_for)


def estimator_parameters(model_cls) -> dict:
    """{name: (default, type, help)}: an estimator's parameters for the model class ``model_cls``, in order."""
    settings = {name: (s.default, _type_name(s), s.help + "." if s.help else "")
                for name, s in model_cls.settings.items()}
    clash = set(settings) & (set(OWN_FIRST) | set(OWN_LAST))
    if clash:
        raise TypeError(f"model {model_cls.name!r} declares settings named as estimator parameters: {sorted(clash)}")
    return {**OWN_FIRST, **settings, **OWN_LAST}


def _type_name(setting) -> str:
    kind = getattr(setting.type, "__name__", "value")
    kind = {"int_tuple": "tuple of int"}.get(kind, kind)
    return f"{kind} or None" if setting.default is None else kind


def _storing_init(params: dict):
    """An ``__init__`` with the explicit signature ``(self, n_clusters=..., *, name=default, ...)`` of ``params``
    that stores every argument unchanged under its own name (scikit-learn's contract)."""
    P = inspect.Parameter
    signature = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("n_clusters", P.POSITIONAL_OR_KEYWORD, default=params["n_clusters"][0])]
        + [P(name, P.KEYWORD_ONLY, default=p[0]) for name, p in params.items() if name != "n_clusters"])

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)  # refuses unknown names, as a written signature does
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature
    return __init__


def _numpydoc(summary: Optional[str], params: dict) -> str:
    """``summary`` followed by numpydoc Parameters and Attributes sections."""
    lines = [inspect.cleandoc(summary or ""), ""]
    for title, table in (("Parameters", {k: (f"{p[1]}, default={p[0]!r}", p[2]) for k, p in params.items()}),
                         ("Attributes", ATTRIBUTES)):
        lines += [title, "-" * len(title)]
        for name, (kind, text) in table.items():
            lines.append(f"{name} : {kind}")
            lines += textwrap.wrap(text, 100, initial_indent="    ", subsequent_indent="    ") or ["    "]
        lines.append("")
    return "\n".join(lines)


def estimator_for(model: str) -> type:
    """The scikit-learn estimator of the registered model ``model``: the package's (:class:`VaDE`, ...) or, for a
    model registered later (:func:`pyro_mixvae.models.register`), one made from its declarations, named
    ``<ModelClass>Estimator`` in this module (so that its instances pickle in a process that made it)."""
    if model not in ESTIMATORS:
        cls = get_model_class(model)
        summary = f"The registered model {model!r} (:class:`{cls.__module__}.{cls.__qualname__}`) as a scikit-learn clusterer."
        made = type(f"{cls.__name__}Estimator", (MixtureVAEEstimator,), {"model_name": model, "__doc__": summary,
                                                                         "__module__": __name__})
        setattr(sys.modules[__name__], made.__name__, made)
    return ESTIMATORS[model]


def seed_from(random_state) -> int:
    """An int seed: ``random_state`` itself when it is an int (0 .. 2**32 - 1, NumPy's seeds), else a draw from it
    (None: NumPy's global RNG)."""
    if isinstance(random_state, numbers.Integral):
        check_seed(random_state, "random_state")
        return int(random_state)
    rng = check_random_state(random_state)  # refuses anything but None, an int or a RandomState
    return int(rng.randint(np.iinfo(np.int32).max))


@contextmanager
def private_torch_rng(seed: int, device):
    """Run the block on torch's RNG seeded with ``seed``, then restore the global state (``torch.random.fork_rng``)."""
    cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.manual_seed(seed)
        yield


def _on_cuda(device) -> bool:
    return str(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")


class MixtureVAEEstimator(ClusterMixin, BaseEstimator):
    """Base of the estimators: a subclass sets ``model_name``, a registered model; its ``__init__`` (the parameters
    of :func:`estimator_parameters`) and the Parameters section of its docstring are made from the declarations."""

    model_name = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.model_name and "__init__" not in cls.__dict__:
            params = estimator_parameters(get_model_class(cls.model_name))
            cls.__init__ = _storing_init(params)
            cls.__doc__ = _numpydoc(cls.__doc__, params)
            ESTIMATORS[cls.model_name] = cls

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (N, H, W) images; (N, C, H, W) ones too
        # on CUDA the order of floating-point atomic adds varies from run to run, so the same
        # random_state gives slightly different fits there; on CPU a fit is reproducible
        tags.non_deterministic = _on_cuda(self.device)
        return tags

    # -- input ---------------------------------------------------------------------------------
    def _validate(self, X, reset: bool) -> np.ndarray:
        """``X`` checked as scikit-learn checks it, as float32 model input (N, D) or (N, C, H, W).

        ``reset=True`` (in ``fit``) records ``feature_names_in_``, ``n_features_in_`` and
        ``data_shape_``; otherwise ``X`` is checked against them.
        """
        _check_feature_names(self, X, reset=reset)
        X = check_array(X, accept_sparse=False, allow_nd=True, dtype=np.float32, ensure_min_samples=2 if reset else 1,
                        estimator=self, input_name="X")
        if X.ndim > 4:
            raise ValueError(f"X has shape {X.shape}; expected (N, D), (N, H, W) or (N, C, H, W)")
        X = np.require(as_model_input(X), requirements="W")  # torch refuses to share a read-only array
        _check_n_features(self, X.reshape(len(X), -1), reset=reset)
        if reset:
            self.data_shape_ = tuple(X.shape[1:])
        elif tuple(X.shape[1:]) != tuple(self.data_shape_):
            raise ValueError(f"X has shape {X.shape[1:]} per point, but {type(self).__name__} was fitted on "
                             f"{tuple(self.data_shape_)}")
        return X

    def _tensor(self, X) -> torch.Tensor:
        """Checked ``X`` (see :meth:`_validate`) as a tensor on the model's device."""
        check_is_fitted(self, "model_")
        return self._as_tensor(self._validate(X, reset=False))

    def _as_tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(X, device=self._device)

    # -- training --------------------------------------------------------------------------------
    def _model_settings(self) -> dict:
        cls = get_model_class(self.model_name)
        return {k: getattr(self, k) for k in cls.settings if hasattr(self, k)}

    def _seeds(self, n_init: int) -> list:
        first = seed_from(self.random_state)
        check_seed(first + n_init - 1, "random_state + n_init - 1 (the last restart's seed)")
        return [first + i for i in range(n_init)]

    def fit(self, X, y=None):
        """Train on ``X`` by SVI (after the model's pretraining); ``y`` is only used for reporting.

        With ``n_init`` > 1 the model is trained from seeds s, s + 1, ... and the one with the
        best ELBO on ``X`` is kept (the labels are never used to choose).
        """
        X = self._validate(X, reset=True)
        self.likelihood_ = resolve_likelihood(self.likelihood, X)
        y = None if y is None else np.asarray(y)
        check_data(X, y, likelihood=self.likelihood_)
        cls = get_model_class(self.model_name)
        n_clusters, settings = self._components(cls, len(X))
        check_scalar(self.n_init, "n_init", numbers.Integral, min_val=1)
        config = TrainConfig(**{k: getattr(self, k) for k in TRAIN_PARAMS}).check()
        self._device = resolve_device(config.device)

        def build(seed):
            model = cls(X.shape[1:], n_clusters, self.likelihood_, **settings)
            check_components(model, len(X), "components")
            return model, self._observed(X, model)

        # the restarts of pyro_mixvae.runner: seeds s, s + 1, ...; the best training ELBO is kept
        best, runs = fit_best(build, X, y, seeds=self._seeds(int(self.n_init)), config=config, progress=self.verbose)
        self.model_, self.history_, self.best_restart_ = runs[best]["model"], runs[best]["history"], best
        self.restarts_ = [{k: r[k] for k in ("seed", "elbo", "acc", "nmi", "ari") if k in r} for r in runs]
        self.model_.eval()
        self.n_clusters_ = int(getattr(self.model_, "effective_clusters", lambda: n_clusters)())
        self._set_labels(self._as_tensor(X))
        return self

    def _components(self, cls, n_points: int) -> tuple:
        """(the model's K, its settings): ``n_clusters="auto"`` is ``DEFAULT_MAX_CLUSTERS`` (at most N) components
        with ``start_clusters="auto"`` (``mixvae fit --clusters auto``)."""
        settings = self._model_settings()
        if isinstance(self.n_clusters, str) and self.n_clusters == "auto":
            if "start_clusters" not in cls.settings:
                raise ValueError(f"n_clusters='auto' needs a model with a Dirichlet prior on its weights; "
                                 f"{type(self).__name__} has none: give n_clusters=K")
            return min(DEFAULT_MAX_CLUSTERS, n_points), {**settings, "start_clusters": "auto"}
        check_scalar(self.n_clusters, "n_clusters", numbers.Integral, min_val=cls.min_clusters, max_val=n_points)
        return self.n_clusters, settings

    def _observed(self, X, model) -> dict:
        """Per-point tensors ``model`` observes besides X (the factorial model's partial labels)."""
        return {}

    def _set_labels(self, x: torch.Tensor) -> None:
        self.labels_ = predict_proba(self.model_, x).argmax(1).cpu().numpy()

    def _mean_elbo(self, model, x: torch.Tensor, num_particles: int = 10) -> float:
        with private_torch_rng(SCORE_SEED, x.device):
            return elbo_per_point(model, x, num_particles=num_particles)

    # -- fitted ------------------------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        """(N, K) cluster posteriors p(c | x) (for VaDE, eq. 16 at the encoder mean)."""
        x = self._tensor(X)
        return predict_proba(self.model_, x).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Hard assignments: the most probable cluster of each point."""
        return self.predict_proba(X).argmax(1)

    def score(self, X, y=None, num_particles: int = 10) -> float:
        """Mean ELBO per data point of ``X`` in nats (higher is better), ``num_particles`` draws of
        the guide from a private generator seeded with :data:`SCORE_SEED` (deterministic; torch's
        global random state is untouched). ``y`` is ignored."""
        x = self._tensor(X)
        return self._mean_elbo(self.model_, x, num_particles)

    def sample(self, n: int, cluster: Optional[int] = None, random_state=None):
        """``n`` data-space means E[x | z] with z from the prior, or from cluster ``cluster``.

        Returns ``(X_new, c)``: X_new has the data's shape per point, ``c`` the clusters drawn.
        ``random_state`` None draws from torch's global RNG; an int or ``RandomState`` from a
        private generator seeded from it (:func:`seed_from`).
        """
        check_is_fitted(self, "model_")
        check_scalar(n, "n", numbers.Integral, min_val=1)
        with eval_mode(self.model_):
            if random_state is None:
                x, c = self.model_.sample(int(n), cluster)
            else:
                with private_torch_rng(seed_from(random_state), self._device):
                    x, c = self.model_.sample(int(n), cluster)
        return x.cpu().numpy(), c.cpu().numpy()


class VaDE(MixtureVAEEstimator):
    """Variational Deep Embedding (Jiang et al. 2017) as a scikit-learn clusterer.

    See :class:`pyro_mixvae.models.VaDE` for the model; the training defaults follow the
    paper's Sect. 4.2 (Adam, lr 0.002 decayed x0.9 every 10 epochs, batches of 100, an
    autoencoder pretraining then a GMM to initialise the prior). The start is the consensus of GMMs
    on three t-SNE embeddings of the data (``gmm_assign="auto"``, on data whose clusters hold 90 points on
    average), with the components' moments taken in the codes; ``"diag"`` fits the paper's GMM on the codes.
    """

    model_name = "vade"



class GMVAE(MixtureVAEEstimator):
    """The Gaussian mixture VAE of Dilokthanakul et al. as a scikit-learn clusterer.

    See :class:`pyro_mixvae.models.GMVAE`. ``guide="posterior"`` is the minimum-information
    paper's model (q(c|z,w) = p_beta(c|z,w), optionally the threshold ``lam``);
    ``guide="mean-field"`` the consistency-violation paper's (a classifier q(c|x), the z-prior
    weight ``eta`` and the consistency violation ``alpha``; its best synthetic setting is
    ``eta=1, alpha=2``). ``eta_warmup`` and ``eta_warmup_epochs`` start the z-prior weight at
    ``eta_warmup * eta`` and lower it linearly to ``eta`` (default for the fc120 nets with the
    mean-field guide: 5 over 90 epochs; elsewhere off). ``arch="auto"`` picks the papers' nets
    from the data's shape; ``latent_dim``, ``w_dim``, ``hidden`` and ``beta_hidden`` left at
    None take the architecture's defaults. ``pretrain_epochs=None`` takes the model's default (an
    autoencoder and a GMM start for the mlp and conv nets, none for fc120); the training defaults
    are the CLI's (Adam, lr 0.002 decayed x0.9 every 10 epochs after a warm-up, batches of 100) and
    ``epochs=None`` takes the model's default (200 for the fc120 nets of 2-D data, with the decay
    every 20 epochs; else 50), so that ``GMVAE(8, guide=...).fit(X)`` trains as ``mixvae fit gmvae`` does.
    """

    model_name = "gmvae"



class VIBGMM(MixtureVAEEstimator):
    """VIB-GMM (Ugur et al.) as a scikit-learn clusterer.

    See :class:`pyro_mixvae.models.VIBGMM`: VaDE's generative story trained on the information-
    bottleneck cost ``recon + s * D_vKL`` (Hershey-Olsen KL, ``kl="hershey-olsen"``) with ``s``
    annealed from ``s_min`` to ``s_max`` (x(1 + ``s_step``) every ``s_every`` epochs); VaDE's
    pretraining unless ``pretrain_epochs=0`` (the paper's setting); assignments by eq. 19 at the
    encoder mean.
    """

    model_name = "vib-gmm"



class FactorialMixtureVAE(MixtureVAEEstimator):
    """The factorial mixture prior of Paquet et al. as a scikit-learn clusterer.

    See :class:`pyro_mixvae.models.FactorialMixtureVAE`: ``factors`` = I blocks of ``dim``
    latent dimensions, factor i a mixture of ``components[i]`` Gaussians with conjugate
    Normal-Gamma / Dirichlet globals updated by natural gradients. ``fit(X, y=None, labels=L)``
    takes partial labels L (N,) or (N, I) with -1 where unknown (semi-supervision, weight
    ``delta`` on eq. 8's cross-entropy); ``y`` is only used for reporting. ``predict``,
    ``predict_proba`` and ``labels_`` are factor 0's -- (N,) and (N, K_1), whatever I, so that
    scikit-learn's scorers work; :meth:`predict_factors` (N, I), :meth:`predict_proba_factors`
    [(N, K_i)] and ``factor_labels_`` (N, I) give every factor.
    """

    model_name = "factorial"

    def fit(self, X, y=None, labels=None):
        """Train on ``X``; ``labels`` (N,) or (N, I) with -1 = unknown clamp q(r_i) (Sect. 2.5)."""
        self._labels_for_fit = labels
        try:
            return super().fit(X, y)
        finally:
            self._labels_for_fit = None

    def _observed(self, X, model) -> dict:
        if getattr(self, "_labels_for_fit", None) is None:
            return {}
        return {"labels": load_partial_labels_array(self._labels_for_fit, len(X), model.cluster_counts)}

    def _set_labels(self, x: torch.Tensor) -> None:
        super()._set_labels(x)
        self.factor_labels_ = np.stack([p.argmax(1) for p in self._factor_proba(x)], axis=1)

    def _factor_proba(self, x: torch.Tensor) -> list:
        with torch.no_grad(), eval_mode(self.model_):
            parts = zip(*(self.model_.factor_responsibilities(xb) for xb in x.split(1000)))
            return [torch.cat(p).cpu().numpy() for p in parts]

    def predict_proba_factors(self, X) -> list:
        """[(N, K_i)]: q(r_i | x) of every factor i (eq. 5-6); ``predict_proba`` is factor 0's."""
        return self._factor_proba(self._tensor(X))

    def predict_factors(self, X) -> np.ndarray:
        """(N, I) assignments, one column per factor; ``predict`` is column 0."""
        return np.stack([p.argmax(1) for p in self.predict_proba_factors(X)], axis=1)
