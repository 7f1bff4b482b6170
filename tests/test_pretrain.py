"""The GMM initialisation on the autoencoder's codes (pyro_mixvae.infer.pretrain.fit_diag_gmm)."""
import numpy as np
import pytest

from pyro_mixvae.infer.pretrain import fit_diag_gmm


def tilted_blobs(seed=0):
    """Three elongated, tilted clusters of 400, 300 and 300 points in 2-D, on very different scales per axis."""
    rng = np.random.default_rng(seed)
    rot = np.array([[np.cos(0.7), -np.sin(0.7)], [np.sin(0.7), np.cos(0.7)]])
    centres = np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]])
    sizes = (400, 300, 300)
    pts = [c + (rng.normal(size=(n, 2)) * [3.0, 0.3]) @ rot.T for c, n in zip(centres, sizes)]
    z = np.concatenate(pts) * [1.0, 100.0]  # the second code dimension on another scale
    labels = np.repeat(np.arange(3), sizes)
    return z, labels, np.array(sizes) / sum(sizes)


@pytest.mark.parametrize("assign", ["diag", "full"])
def test_weights_and_moments_match_the_true_clusters(assign):
    z, labels, weights = tilted_blobs()
    w, means, variances = fit_diag_gmm(z, 3, seed=0, n_init=3, assign=assign)
    order = [int(np.argmin(((means - z[labels == k].mean(0)) ** 2 / z.var(0)).sum(1))) for k in range(3)]
    assert sorted(order) == [0, 1, 2]
    for k, j in enumerate(order):  # against the clusters' own moments, computed directly
        assert w[j] == pytest.approx(weights[k], abs=0.02)
        assert np.all(np.abs(means[j] - z[labels == k].mean(0)) < 0.05 * z.std(0))
        assert variances[j] == pytest.approx(z[labels == k].var(0), rel=0.1)


def test_full_assignment_returns_diagonal_moments_in_the_codes_units():
    z, labels, _ = tilted_blobs(1)
    w, means, variances = fit_diag_gmm(z, 3, seed=0, assign="full")
    assert w.shape == (3,) and means.shape == (3, 2) and variances.shape == (3, 2)
    assert w.sum() == pytest.approx(1.0)
    assert (variances > 0).all()
    with pytest.raises(ValueError, match="assign"):
        fit_diag_gmm(z, 3, assign="spherical")


def separated_blobs(n_per=150, dim=5, seed=0):
    """Three isotropic clusters in ``dim`` dimensions, 10 standard deviations apart."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(3, dim)
    z = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres])
    return z, np.repeat(np.arange(3), n_per)


@pytest.mark.parametrize("max_points", [None, 300])
def test_tsne_assignment_recovers_the_clusters_moments(monkeypatch, max_points):
    """assign="tsne": responsibilities from a GMM on a t-SNE embedding, moments in the codes' units;
    with more codes than TSNE_MAX_POINTS, from a random subset (here 300 of 450)."""
    import pyro_mixvae.infer.pretrain as pretrain

    if max_points is not None:
        monkeypatch.setattr(pretrain, "TSNE_MAX_POINTS", max_points)
    z, labels = separated_blobs()
    w, means, variances = fit_diag_gmm(z, 3, seed=0, n_init=2, assign="tsne")
    assert w.shape == (3,) and w.sum() == pytest.approx(1.0)
    order = [int(np.argmin(((means - z[labels == k].mean(0)) ** 2).sum(1))) for k in range(3)]
    assert sorted(order) == [0, 1, 2]
    tol = 0.02 if max_points is None else 0.1  # a subset of 300 estimates the weights less exactly
    for k, j in enumerate(order):
        assert w[j] == pytest.approx(1 / 3, abs=tol)
        assert np.abs(means[j] - z[labels == k].mean(0)).max() < 0.3
        assert variances[j] == pytest.approx(z[labels == k].var(0), rel=0.35)

