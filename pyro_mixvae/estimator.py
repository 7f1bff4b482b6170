"""scikit-learn style estimators around the Pyro models.

``VaDE(n_clusters=10).fit(X)`` then ``predict``, ``predict_proba``, ``sample`` and ``score``,
with every hyperparameter set in ``__init__`` (so ``get_params``/``set_params``/``clone`` work)
and everything learned in attributes ending with ``_``:

* ``model_`` — the trained :class:`~pyro_mixvae.models.MixtureVAE` (a torch module);
* ``history_`` — the per-epoch records of :func:`pyro_mixvae.infer.fit`;
* ``labels_`` — the assignments of the training data; ``likelihood_`` — the likelihood used;
* ``restarts_`` — with ``n_init`` > 1, one record per restart (seed, training ELBO, and
  acc/NMI/ARI when ``y`` was given); the restart with the best training ELBO is kept
  (``best_restart_``), the labels are never used to choose.

``X`` is an array of shape (N, D), (N, H, W) or (N, C, H, W). Labels passed as ``y`` to
``fit`` are never used for training; they only add accuracy/NMI/ARI to ``history_``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted

from .data import check_data
from .errors import ConfigError
from .evaluation import elbo_per_point
from .infer.train import TrainConfig, fit, predict_proba, resolve_device, seed_everything
from .nets import eval_mode
from .models import get_model_class
from .nets import resolve_likelihood

_TRAIN_PARAMS = ("epochs", "pretrain_epochs", "batch_size", "lr", "lr_decay", "lr_step", "num_particles", "seed",
                 "device")


def as_model_input(X) -> np.ndarray:
    """float32 array with images as (N, C, H, W): (N, H, W) gains a channel axis."""
    X = np.asarray(X, dtype=np.float32)
    return X[:, None] if X.ndim == 3 else X


class MixtureVAEEstimator(ClusterMixin, BaseEstimator):
    """Base of the estimators: subclasses set ``model_name`` and list the model's settings in ``__init__``."""

    model_name = ""

    def _keep_params(self, params: dict) -> None:
        """Store every ``__init__`` argument unchanged under its own name (scikit-learn's contract)."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _model_settings(self) -> dict:
        cls = get_model_class(self.model_name)
        return {k: getattr(self, k) for k in cls.settings if hasattr(self, k)}

    def _train_config(self) -> TrainConfig:
        return TrainConfig(**{k: getattr(self, k) for k in _TRAIN_PARAMS})

    def _tensor(self, X) -> torch.Tensor:
        X = as_model_input(X)
        check_data(X)
        if X.shape[1:] != tuple(self.model_.data_shape):
            raise ConfigError(f"X has shape {X.shape[1:]} per point; this model was fitted on {tuple(self.model_.data_shape)}")
        return torch.as_tensor(X, device=self._device)

    def fit(self, X, y=None):
        """Train on ``X`` by SVI (after the model's pretraining); ``y`` is only used for reporting."""
        X = as_model_input(X)
        self.likelihood_ = resolve_likelihood(self.likelihood, X)
        check_data(X, y, likelihood=self.likelihood_)
        if not 1 <= self.n_clusters <= len(X):
            raise ConfigError(f"n_clusters must be between 1 and the number of points ({len(X)}); got {self.n_clusters}")
        n_init = getattr(self, "n_init", 1)
        if int(n_init) != n_init or n_init < 1:
            raise ConfigError(f"n_init must be an integer >= 1; got {n_init!r}")
        config = self._train_config().check()
        self._device = resolve_device(config.device)
        self.restarts_ = []
        best = None
        for i in range(int(n_init)):  # seeds seed, seed+1, ...; the best training ELBO is kept (labels unused)
            seed = self.seed + i
            seed_everything(seed)
            model = get_model_class(self.model_name)(X.shape[1:], self.n_clusters, self.likelihood_,
                                                     **self._model_settings())
            history = fit(model, X, None if y is None else np.asarray(y), config=replace(config, seed=seed),
                          observed=self._observed(X, model), progress=self.verbose)
            elbo = elbo_per_point(model, torch.as_tensor(X, device=self._device)) if n_init > 1 else None
            self.restarts_.append({"seed": seed, "elbo": elbo, **{k: history.last()[k] for k in ("acc", "nmi", "ari")
                                                                   if k in history.last()}})
            if best is None or elbo > best[0]:
                best = (elbo, model, history, i)
        _, self.model_, self.history_, self.best_restart_ = best
        self.labels_ = self.predict(X)
        return self

    def _observed(self, X, model) -> dict:
        """Per-point tensors ``model`` observes besides X (the factorial model's partial labels)."""
        return {}

    def predict_proba(self, X) -> np.ndarray:
        """(N, K) cluster posteriors p(c | x) (for VaDE, eq. 16 at the encoder mean)."""
        check_is_fitted(self, "model_")
        return predict_proba(self.model_, self._tensor(X)).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Hard assignments: the most probable cluster of each point."""
        return self.predict_proba(X).argmax(1)

    def score(self, X, y=None, num_particles: int = 10) -> float:
        """Mean ELBO per data point of ``X`` in nats (higher is better)."""
        check_is_fitted(self, "model_")
        return elbo_per_point(self.model_, self._tensor(X), num_particles=num_particles)

    def sample(self, n: int, cluster: Optional[int] = None):
        """``n`` data-space means E[x | z] with z from the prior, or from cluster ``cluster``.

        Returns ``(X_new, c)``: X_new has the data's shape per point, ``c`` the clusters drawn.
        """
        check_is_fitted(self, "model_")
        self.model_.eval()
        x, c = self.model_.sample(int(n), cluster)
        return x.cpu().numpy(), c.cpu().numpy()


class VaDE(MixtureVAEEstimator):
    """Variational Deep Embedding (Jiang et al. 2017) as a scikit-learn clusterer.

    See :class:`pyro_mixvae.models.VaDE` for the model; the training defaults follow the
    paper's Sect. 4.2 (Adam, lr 0.002 decayed x0.9 every 10 epochs, batches of 100, an
    autoencoder pretraining then a GMM to initialise the prior). The GMM is fitted on a t-SNE
    embedding of the codes (``gmm_assign="tsne"``); ``"diag"`` fits the paper's GMM on the codes.
    """

    model_name = "vade"

    def __init__(self, n_clusters=10, *, n_init=1, latent_dim=10, hidden=(500, 500, 2000), arch="mlp", likelihood="auto",
                 epochs=None, pretrain_epochs=None, batch_size=None, lr=None, lr_decay=None, lr_step=None,
                 num_particles=None, pretrain_lr=1e-3, pretrain_noise=0.0, gmm_restarts=10, gmm_assign="tsne", s=1.0,
                 seed=0, device=None, verbose=False):
        self._keep_params(locals())


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
    None take the architecture's defaults. No pretraining; the training defaults are the CLI's
    (Adam, lr 0.002 decayed x0.9 every 10 epochs, batches of 100) and ``epochs=None`` takes the
    model's default (200 for the fc120 nets of 2-D data, with the decay every 20 epochs; else
    50), so that ``GMVAE(8, guide=...).fit(X)`` trains as ``mixvae fit gmvae`` does.
    """

    model_name = "gmvae"

    def __init__(self, n_clusters=10, *, n_init=1, guide="posterior", eta=1.0, alpha=0.0, lam=0.0, eta_warmup=None,
                 eta_warmup_epochs=None, arch="auto",
                 latent_dim=None, w_dim=None, hidden=None, beta_hidden=None, likelihood="auto", epochs=None,
                 pretrain_epochs=None, batch_size=None, lr=None, lr_decay=None, lr_step=None, num_particles=None, seed=0,
                 device=None, verbose=False):
        self._keep_params(locals())


class VIBGMM(MixtureVAEEstimator):
    """VIB-GMM (Ugur et al.) as a scikit-learn clusterer.

    See :class:`pyro_mixvae.models.VIBGMM`: VaDE's generative story trained on the information-
    bottleneck cost ``recon + s * D_vKL`` (Hershey-Olsen KL, ``kl="hershey-olsen"``) with ``s``
    annealed from ``s_min`` to ``s_max`` (x(1 + ``s_step``) every ``s_every`` epochs); VaDE's
    pretraining unless ``pretrain_epochs=0`` (the paper's setting); assignments by eq. 19 at the
    encoder mean.
    """

    model_name = "vib-gmm"

    def __init__(self, n_clusters=10, *, n_init=1, s_min=0.1, s_max=1.0, s_step=0.1, s_every=2, kl="hershey-olsen",
                 latent_dim=10, hidden=(500, 500, 2000), arch="mlp", likelihood="auto", epochs=None,
                 pretrain_epochs=None, batch_size=None, lr=None, lr_decay=None, lr_step=None, num_particles=None,
                 pretrain_lr=1e-3, pretrain_noise=0.0, gmm_restarts=10, gmm_assign="tsne", seed=0, device=None,
                 verbose=False):
        self._keep_params(locals())


class FactorialMixtureVAE(MixtureVAEEstimator):
    """The factorial mixture prior of Paquet et al. as a scikit-learn clusterer.

    See :class:`pyro_mixvae.models.FactorialMixtureVAE`: ``factors`` = I blocks of ``dim``
    latent dimensions, factor i a mixture of ``components[i]`` Gaussians with conjugate
    Normal-Gamma / Dirichlet globals updated by natural gradients. ``fit(X, y=None, labels=L)``
    takes partial labels L (N,) or (N, I) with -1 where unknown (semi-supervision, weight
    ``delta`` on eq. 8's cross-entropy); ``y`` is only used for reporting. ``predict`` returns
    one assignment per factor, (N, I) (or (N,) when I = 1); ``predict_proba`` a list of (N, K_i)
    arrays (one array when I = 1).
    """

    model_name = "factorial"

    def __init__(self, n_clusters=10, *, n_init=1, factors=1, components=(), dim=10, delta=0.0, tau0=2000.0, kappa=0.7,
                 m0=0.0, s0=1.0, a0=0.01, b0=0.01, c0=1.0, hidden=(500, 500, 2000), arch="mlp", likelihood="auto",
                 epochs=None, pretrain_epochs=None, batch_size=None, lr=None, lr_decay=None, lr_step=None,
                 num_particles=None, pretrain_lr=1e-3, gmm_restarts=10, prior_init_iters=20, seed=0, device=None,
                 verbose=False):
        self._keep_params(locals())

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
        from .data import load_partial_labels_array

        return {"labels": load_partial_labels_array(self._labels_for_fit, len(X), model.components)}

    def predict_proba(self, X):
        check_is_fitted(self, "model_")
        x = self._tensor(X)
        with eval_mode(self.model_):
            gammas = [torch.cat(parts) for parts in zip(*(self.model_.factor_responsibilities(xb)
                                                           for xb in x.split(1000)))]
        out = [g.cpu().numpy() for g in gammas]
        return out[0] if len(out) == 1 else out

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        if isinstance(proba, list):
            return np.stack([p.argmax(1) for p in proba], axis=1)
        return proba.argmax(1)
