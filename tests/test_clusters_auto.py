"""K found in one run (issue 35): ``mixvae fit MODEL --clusters auto``, the estimators' ``n_clusters="auto"``.

* :func:`bic_clusters` against the criterion written out by hand: -2 log-likelihood + (free parameters) log N,
  the parameter count of each covariance type spelled out here, on data whose number of groups is known;
* :func:`proposed_clusters` reads the data's BIC where it turns up within K_max, the neighbourhood graph's
  components where it does not (two interleaved arcs, which no few Gaussians describe), the codes above
  ``TSNE_DATA_MAX_DIM`` dimensions;
* :func:`padded_start` adds empty components and keeps the start's own;
* VaDE with ``start_clusters="auto"``: the components the start leaves empty keep only the prior's alpha0 in
  q(pi), and the clusters found are read off it, through the estimator and the command line.
"""
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_moons
from sklearn.mixture import GaussianMixture

from pyro_mixvae.infer.pretrain import (DATA_COVARIANCES, TSNE_DATA_MAX_DIM, MixtureStart, bic_clusters,
                                        padded_start, proposed_clusters, standardised)


def _groups(k=3, n=300, dim=4, seed=0):
    x, y = make_blobs(n, n_features=dim, centers=k, cluster_std=0.6, center_box=(-8, 8), random_state=seed)
    return x, y


def _free_parameters(k: int, d: int, covariance: str) -> int:
    """Means, weights and covariances of a K-component GMM in d dimensions, counted by hand."""
    per = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}[covariance]
    return k * d + (k - 1) + per


def test_bic_clusters_is_the_least_criterion_written_out_by_hand():
    x, _ = _groups()
    x = standardised(x)
    k, covariance = bic_clusters(x, 6, seed=0)
    by_hand = {}
    for cov in DATA_COVARIANCES:
        for kk in range(1, 7):
            gmm = GaussianMixture(kk, covariance_type=cov, random_state=0, reg_covar=1e-4, max_iter=200).fit(x)
            by_hand[(kk, cov)] = -2 * gmm.score(x) * len(x) + _free_parameters(kk, x.shape[1], cov) * np.log(len(x))
    assert (k, covariance) == min(by_hand, key=by_hand.get)
    assert k == 3  # the three groups the data were made of


def test_the_proposal_reads_the_data_then_the_graph_then_the_codes():
    x, _ = _groups(k=4)
    assert proposed_clusters(np.zeros((len(x), 2)), x, 8, seed=0) == (4, "data BIC")
    # two interleaved arcs: the data's BIC keeps falling up to K_max; their neighbourhood graph has two pieces
    arcs, _ = make_moons(400, noise=0.04, random_state=0)
    k, _ = bic_clusters(standardised(arcs), 4, seed=0)
    assert k == 4
    assert proposed_clusters(np.zeros((400, 2)), arcs, 4, seed=0) == (2, "graph")
    # data of more dimensions than TSNE_DATA_MAX_DIM: the codes decide
    codes, _ = _groups(k=5, dim=3)
    wide = np.random.default_rng(0).normal(size=(len(codes), TSNE_DATA_MAX_DIM + 1))
    assert proposed_clusters(codes, wide, 8, seed=0) == (5, "codes BIC")


def test_padded_start_adds_empty_components():
    z = np.random.default_rng(0).normal(size=(5, 2))
    resp = np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan], [1.0, 0.0], [0.0, 1.0]])
    start = MixtureStart(np.array([0.5, 0.5]), np.ones((2, 2)), np.full((2, 2), 0.3), resp)
    padded = padded_start(start, z, 4)
    assert padded.weights.tolist() == [0.5, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(padded.means[2:], np.tile(z.mean(0), (2, 1)))
    np.testing.assert_allclose(padded.variances[2:], np.tile(z.var(0) + 1e-4, (2, 1)))
    np.testing.assert_array_equal(padded.responsibilities[:, :2], resp)
    assert np.isnan(padded.responsibilities[2]).all() and (padded.responsibilities[[0, 1, 3, 4], 2:] == 0).all()
    assert padded_start(start, z, 2) is start


def test_estimator_finds_the_groups_and_leaves_the_rest_empty():
    from pyro_mixvae import VaDE
    x, y = _groups(k=3, n=240, dim=6)
    est = VaDE(n_clusters="auto", hidden=(16,), epochs=3, pretrain_epochs=5, random_state=0).fit(x.astype(np.float32))
    model = est.model_
    assert model.n_clusters == 20 and model.start_proposal == (3, "data BIC")
    assert est.n_clusters_ == 3 == len(np.unique(est.labels_))
    # q(pi) = Dir(c): the 17 empty components keep only alpha0 = 1 / K (no point's worth of mass)
    empty = np.sort((model.weight_posterior - model.weight_prior).numpy())[:17]
    assert model.weight_prior[0].item() == pytest.approx(1 / 20) and (empty < 1).all()
    from pyro_mixvae.metrics import acc
    assert acc(y, est.labels_) == 1.0
    with pytest.raises(ValueError, match="Dirichlet prior"):
        __import__("pyro_mixvae").GMVAE(n_clusters="auto").fit(x.astype(np.float32))


def test_cli_clusters_auto_reports_what_it_found(tmp_path, blobs_npz, capsys):
    from pyro_mixvae.cli import main as mixvae
    run = tmp_path / "run"
    args = ["fit", "vade", "--data", str(blobs_npz), "--out", str(run), "--device", "cpu", "--pretrain-epochs", "5",
            "--set", "hidden=16", "--clusters", "auto", "--max-clusters", "6"]
    assert mixvae(args + ["--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "start proposed     3 clusters (data BIC); found 3 (q(pi))" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["effective_clusters"] == 3 and len(metrics["weights"]) == 6
    assert metrics["pretrain"]["start_clusters"] == 3
    config = json.loads((run / "config.json").read_text())
    assert config["clusters"] == 6 and config["settings"]["start_clusters"] == "auto"
    assert mixvae(args + ["--epochs", "2", "--quiet", "--resume"]) == 0  # the same command resumes it
    capsys.readouterr()
    assert mixvae(["fit", "gmvae", "--data", str(blobs_npz), "--out", str(tmp_path / "g"), "--clusters", "auto"]) != 0
    assert "--clusters auto needs a model with a Dirichlet prior on its weights (vade, vib-gmm)" in capsys.readouterr().err
    assert mixvae(["fit", "vade", "--data", str(blobs_npz), "--out", str(tmp_path / "v"), "--max-clusters", "6"]) != 0
    assert "--max-clusters applies only with --clusters auto" in capsys.readouterr().err
    assert not (tmp_path / "g").exists() and not (tmp_path / "v").exists()
