"""The estimators against scikit-learn's own conformance suite and the tools users combine them with.

``test_sklearn_estimator_check`` runs every check of ``sklearn.utils.estimator_checks`` (the
generator behind ``check_estimator``) on each estimator with tiny settings: K = 3, one SVI
epoch, nets of 8 units. The pretraining of the models that have one is kept short but real
(``check_clustering`` asks for an adjusted Rand index above 0.4 on three blobs).
"""
from __future__ import annotations

import inspect
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from pyro_mixvae import GMVAE, VIBGMM, FactorialMixtureVAE, VaDE
from pyro_mixvae.estimator import OWN_FIRST, OWN_LAST, TRAIN_PARAMS
from pyro_mixvae.infer.train import TRAINING_VALUES, TrainConfig
from pyro_mixvae.models import get_model_class

COMMON = dict(n_clusters=3, epochs=1, device="cpu")
PRETRAINED = dict(hidden=(8,), pretrain_epochs=1, gmm_restarts=1, gmm_assign="diag")  # no t-SNE
TINY = {
    VaDE: dict(latent_dim=2, **PRETRAINED),
    VIBGMM: dict(latent_dim=2, **PRETRAINED),
    GMVAE: dict(hidden=(8,), latent_dim=2, w_dim=2, beta_hidden=8),
    # the N(0, I) VAE pretraining needs ~100 steps before its codes separate three blobs
    FactorialMixtureVAE: dict(dim=2, hidden=(8,), pretrain_epochs=20, batch_size=10, pretrain_lr=1e-2,
                              gmm_restarts=1, prior_init_iters=2),
}
ESTIMATORS = [cls(**COMMON, **kw) for cls, kw in TINY.items()]

# checks that set n_clusters = 1 (on one feature, or before a 1-D predict); GMVAE's math allows K = 1
# (c is then constant: the z-prior and consistency-violation terms are 0, the bound a VAE's with
# the prior N(mu(w), sigma^2(w)); test_gmvae_one_cluster below), but the model class sets min_clusters = 2
K1_CHECKS = ("check_dont_overwrite_parameters", "check_fit2d_1feature", "check_fit2d_predict1d",
             "check_methods_subset_invariance")


def expected_failed_checks(estimator) -> dict:
    """Checks that fail, with the reason (nothing is skipped silently)."""
    if isinstance(estimator, GMVAE) and get_model_class("gmvae").min_clusters > 1:
        reason = "pyro_mixvae.models.GMVAE.min_clusters = 2 refuses the K = 1 these checks set"
        return {name: reason for name in K1_CHECKS}
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_sklearn_estimator_check(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------------- one source of defaults
@pytest.mark.parametrize("cls", list(TINY), ids=lambda c: c.__name__)
def test_parameters_are_the_model_settings_and_training_fields_with_their_defaults(cls):
    params = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    settings = get_model_class(cls.model_name).settings
    assert set(params) == set(settings) | set(TRAINING_VALUES) | set(OWN_FIRST) | set(OWN_LAST)
    assert {k: params[k] for k in settings} == {k: s.default for k, s in settings.items()}
    config = TrainConfig()
    assert {k: params[k] for k in TRAIN_PARAMS} == {k: getattr(config, k) for k in TRAIN_PARAMS}
    assert cls().get_params() == params  # scikit-learn reads the same signature


@pytest.mark.parametrize("cls", list(TINY), ids=lambda c: c.__name__)
def test_docstring_documents_every_parameter_in_numpydoc(cls):
    """numpydoc's own parser and validator on the generated docstring: every parameter, in order, with a type and
    a description; no section numpydoc does not know."""
    validate = pytest.importorskip("numpydoc.validate")
    doc = pytest.importorskip("numpydoc.docscrape").ClassDoc(cls)
    documented = [p.name for p in doc["Parameters"]]
    assert documented == [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
    assert all(p.type and p.desc for p in doc["Parameters"])
    assert {a.name for a in doc["Attributes"]} >= {"model_", "labels_", "history_"}
    errors = {code for code, _ in validate.validate(f"pyro_mixvae.{cls.__name__}")["errors"]}
    assert not errors & {"GL01", "GL02", "GL03", "GL06", "GL07", "PR01", "PR02", "PR03", "PR10"}, errors


# ----------------------------------------------------------------------------- data
def blobs(n=60, d=4, seed=0):
    x, y = make_blobs(n_samples=n, n_features=d, centers=3, cluster_std=0.5, random_state=seed)
    return StandardScaler().fit_transform(x).astype(np.float32), y


def tiny(cls, **kw):
    return cls(**{**COMMON, **TINY[cls], **kw})


@pytest.fixture(scope="module")
def fitted():
    x, _ = blobs()
    return {cls: tiny(cls).fit(x) for cls in TINY}, x


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("cls", list(TINY), ids=lambda c: c.__name__)
def test_clone_pickle_and_joblib_round_trips(cls, fitted, tmp_path):
    est, x = fitted[0][cls], fitted[1]
    assert clone(est).get_params() == est.get_params() and not hasattr(clone(est), "model_")
    joblib.dump(est, tmp_path / "est.joblib")
    for copy in (pickle.loads(pickle.dumps(est)), joblib.load(tmp_path / "est.joblib")):
        np.testing.assert_array_equal(copy.predict_proba(x), est.predict_proba(x))
        assert copy.score(x) == est.score(x)


@pytest.mark.parametrize("cls", list(TINY), ids=lambda c: c.__name__)
def test_score_is_deterministic_and_leaves_the_global_rng_alone(cls, fitted):
    est, x = fitted[0][cls], fitted[1]
    assert not est.model_.training
    state = torch.get_rng_state()
    first = est.score(x)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(5)  # the global stream moves on; score does not depend on it
    assert est.score(x) == first and np.isfinite(first)


def test_random_state_int_none_and_randomstate():
    x, _ = blobs()
    a, b = tiny(VaDE, random_state=3).fit(x), tiny(VaDE, random_state=3).fit(x)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    assert a.restarts_[0]["seed"] == 3
    c, d = (tiny(VaDE, random_state=np.random.RandomState(1)).fit(x) for _ in range(2))
    assert c.restarts_[0]["seed"] == d.restarts_[0]["seed"]
    np.testing.assert_array_equal(c.predict_proba(x), d.predict_proba(x))
    assert tiny(VaDE, random_state=None).fit(x).labels_.shape == (len(x),)
    with pytest.raises(ValueError, match="cannot be used to seed"):
        tiny(VaDE, random_state="zero").fit(x)


# ----------------------------------------------------------------------------- scikit-learn's tools
def test_pipeline_with_a_scaler():
    x, y = make_blobs(n_samples=60, n_features=4, centers=3, random_state=0)
    x = 10 * x + 50  # far from standardised: the pipeline's scaler does it
    pipe = make_pipeline(StandardScaler(), tiny(VaDE, likelihood="gaussian")).fit(x)
    assert pipe.predict(x).shape == (60,) and np.isfinite(pipe.score(x))
    assert pipe[-1].n_features_in_ == 4 and pipe[-1].likelihood_ == "gaussian"


def test_grid_search_with_an_adjusted_rand_scorer():
    x, y = blobs()
    search = GridSearchCV(tiny(GMVAE), {"latent_dim": [1, 2]}, scoring="adjusted_rand_score", cv=2,
                          error_score="raise").fit(x, y)
    assert search.best_params_["latent_dim"] in (1, 2)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_cross_val_score_of_the_factorial_estimator_with_two_factors():
    x, y = blobs()
    est = tiny(FactorialMixtureVAE, factors=2, components=(3, 2))
    scores = cross_val_score(est, x, y, scoring="adjusted_rand_score", cv=2, error_score="raise")
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    assert np.all(np.isfinite(cross_val_score(est, x, cv=2, error_score="raise")))  # the estimator's own score


# ----------------------------------------------------------------------------- the factorial estimator's outputs
@pytest.mark.parametrize("factors,components", [(1, ()), (2, (3, 2))])
def test_factorial_outputs_have_one_type_whatever_the_number_of_factors(factors, components):
    x, _ = blobs()
    est = tiny(FactorialMixtureVAE, factors=factors, components=components).fit(x)
    assert est.predict(x).shape == est.labels_.shape == (len(x),)
    assert est.predict_proba(x).shape == (len(x), 3)
    per_factor = est.predict_proba_factors(x)
    assert [p.shape for p in per_factor] == [(len(x), k) for k in (components or (3,))]
    np.testing.assert_array_equal(per_factor[0], est.predict_proba(x))
    np.testing.assert_array_equal(est.predict_factors(x), est.factor_labels_)
    np.testing.assert_array_equal(est.factor_labels_[:, 0], est.labels_)


# ----------------------------------------------------------------------------- input validation
def test_feature_names_are_kept_and_checked():
    x, _ = blobs()
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    est = tiny(VIBGMM).fit(frame)
    assert list(est.feature_names_in_) == ["a", "b", "c", "d"] and est.n_features_in_ == 4
    np.testing.assert_array_equal(est.predict(frame), est.labels_)
    with pytest.raises(ValueError, match="same order"):
        est.predict(frame[["b", "a", "c", "d"]])
    with pytest.raises(ValueError, match="seen at fit time, yet now missing"):
        est.predict(frame[["a", "b", "c"]].assign(e=0.0))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(x)


def test_scikit_learn_messages_for_bad_input():
    x, _ = blobs()
    est = tiny(VaDE)
    with pytest.raises(TypeError, match="Sparse data was passed"):
        est.fit(sp.csr_matrix(x))
    with pytest.raises(ValueError, match="Reshape your data"):
        est.fit(x[:, 0])
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(x[:0])
    est.fit(x)
    with pytest.raises(ValueError, match="X has 3 features, but VaDE is expecting 4"):
        est.predict(x[:, :3])


def test_images_count_every_pixel_as_a_feature():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(30, 4, 4)).astype(np.float32)
    est = tiny(VaDE).fit(images)
    assert est.n_features_in_ == 16 and est.data_shape_ == (1, 4, 4) and est.likelihood_ == "bernoulli"
    np.testing.assert_array_equal(est.predict(images[:, None]), est.labels_)
    with pytest.raises(ValueError, match="per point"):
        est.predict(images.reshape(30, 1, 2, 8))


def test_gmvae_one_cluster(monkeypatch):
    """K = 1: the only cluster takes every point, and the z-prior and consistency terms vanish."""
    monkeypatch.setattr(get_model_class("gmvae"), "min_clusters", 1)
    x, _ = blobs()
    est = tiny(GMVAE, n_clusters=1, guide="mean-field", alpha=2.0, epochs=2).fit(x)
    np.testing.assert_allclose(est.predict_proba(x), 1.0)
    last = est.history_.last()
    assert last["z_prior"] == 0.0 and last["cv"] == 0.0 and np.isfinite(est.score(x))
