"""The GMM initialisation on the autoencoder's codes (pyro_mixvae.infer.pretrain.fit_diag_gmm)."""
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

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
    w, means, variances, _ = fit_diag_gmm(z, 3, seed=0, n_init=3, assign=assign)
    order = [int(np.argmin(((means - z[labels == k].mean(0)) ** 2 / z.var(0)).sum(1))) for k in range(3)]
    assert sorted(order) == [0, 1, 2]
    for k, j in enumerate(order):  # against the clusters' own moments, computed directly
        assert w[j] == pytest.approx(weights[k], abs=0.02)
        assert np.all(np.abs(means[j] - z[labels == k].mean(0)) < 0.05 * z.std(0))
        assert variances[j] == pytest.approx(z[labels == k].var(0), rel=0.1)


def test_full_assignment_returns_diagonal_moments_in_the_codes_units():
    z, labels, _ = tilted_blobs(1)
    w, means, variances, _ = fit_diag_gmm(z, 3, seed=0, assign="full")
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
    w, means, variances, decided = fit_diag_gmm(z, 3, seed=0, n_init=2, assign="tsne")
    assert w.shape == (3,) and w.sum() == pytest.approx(1.0)
    # the start is the consensus of the GMM starts: its responsibilities are one-hot labels, the true groups',
    # for the codes it was decided on; the codes left out of the subset have none (NaN)
    kept = ~np.isnan(decided).any(1)
    assert kept.sum() == (max_points or len(z)) and np.isnan(decided[~kept]).all()
    assert np.array_equal(decided[kept].sum(1), np.ones(kept.sum())) and set(np.unique(decided[kept])) == {0.0, 1.0}
    assert adjusted_rand_score(labels[kept], decided[kept].argmax(1)) == 1.0
    order = [int(np.argmin(((means - z[labels == k].mean(0)) ** 2).sum(1))) for k in range(3)]
    assert sorted(order) == [0, 1, 2]
    tol = 0.02 if max_points is None else 0.1  # a subset of 300 estimates the weights less exactly
    for k, j in enumerate(order):
        assert w[j] == pytest.approx(1 / 3, abs=tol)
        assert np.abs(means[j] - z[labels == k].mean(0)).max() < 0.3
        assert variances[j] == pytest.approx(z[labels == k].var(0), rel=0.35)



def test_codes_side_by_side_weigh_each_autoencoder_the_same():
    from pyro_mixvae.infer.pretrain import side_by_side

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)) * 100 + 7, rng.normal(size=(50, 2)) * 0.01
    joint = side_by_side([a, b])
    assert joint.shape == (50, 5)
    for block in (joint[:, :3], joint[:, 3:]):
        assert np.allclose(block.mean(0), 0, atol=1e-9)
        assert block.std() == pytest.approx(1.0)
    assert np.allclose(joint[:, :3], (a - a.mean(0)) / (a - a.mean(0)).std())  # each block's own shape is kept


def test_further_autoencoders_decide_the_start_and_the_moments_are_the_models_codes():
    """z: three groups that overlap (a GMM on z alone cannot separate them); others: the same points'
    codes by further autoencoders, where the groups are apart. The start's moments are then z's moments
    per true group, computed directly."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 150)
    z = rng.normal(size=(450, 4)) + 0.3 * labels[:, None]  # groups 0.3 sd apart
    others = [rng.normal(size=(450, 5)) * 0.2 + 10.0 * np.eye(3, 5)[labels] for _ in range(2)]
    w, means, variances, _ = fit_diag_gmm(z, 3, seed=0, n_init=3, assign="diag", others=others)
    order = [int(np.argmin(((means - z[labels == k].mean(0)) ** 2).sum(1))) for k in range(3)]
    assert sorted(order) == [0, 1, 2]
    for k, j in enumerate(order):
        assert w[j] == pytest.approx(1 / 3, abs=1e-3)
        assert np.allclose(means[j], z[labels == k].mean(0), atol=1e-3)
        assert np.allclose(variances[j], z[labels == k].var(0), rtol=1e-2)


@pytest.mark.parametrize("select", ["consensus", "silhouette", "likelihood", "agreement"])
def test_every_selection_rule_finds_separated_groups(select):
    z, labels = separated_blobs()
    w, means, _, _ = fit_diag_gmm(z, 3, seed=0, n_init=4, assign="full", select=select)
    assert sorted(int(np.argmin(((means - z[labels == k].mean(0)) ** 2).sum(1))) for k in range(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="select"):
        fit_diag_gmm(z, 3, select="best")


def test_co_association_counts_the_partitions_that_put_each_pair_together():
    from pyro_mixvae.infer.pretrain import co_association

    rng = np.random.default_rng(2)
    partitions = rng.integers(0, 3, size=(5, 12))
    a = co_association(partitions)
    for n in range(12):
        for m in range(12):
            assert a[n, m] == pytest.approx(sum(p[n] == p[m] for p in partitions) / 5)


def test_the_consensus_is_the_majoritys_partition_whatever_its_labels():
    """Three starts find three groups of 20 (each with its own label names); two others merge groups 0
    and 1 and split group 2. The consensus is the three groups."""
    from pyro_mixvae.infer.pretrain import consensus_partition

    truth = np.repeat(np.arange(3), 20)
    right = [np.array(perm)[truth] for perm in ([0, 1, 2], [2, 0, 1], [1, 2, 0])]
    wrong = np.where(truth == 1, 0, truth)
    wrong = np.where((truth == 2) & (np.arange(60) % 2 == 0), 1, wrong)
    labels = consensus_partition(right + [wrong, wrong], 3)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert adjusted_rand_score(truth, labels) == 1.0


def test_further_autoencoders_are_drawn_anew_and_the_models_own_is_unchanged():
    import torch

    from pyro_mixvae.infer.pretrain import (encode_means, fresh_copy, member_seed, pretrain_autoencoder,
                                            pretrain_autoencoders)
    from pyro_mixvae.models import VaDE

    x = torch.as_tensor(np.random.default_rng(0).random((60, 6)), dtype=torch.float32)

    def model():
        torch.manual_seed(0)
        return VaDE((6,), 2, "gaussian-shared", hidden=(8,), latent_dim=2)

    one, three = model(), model()
    with torch.no_grad():
        three.decoder.log_var.fill_(0.5)
    enc, dec = fresh_copy((three.encoder, three.decoder), member_seed(0, 1))
    assert not torch.equal(enc.loc.weight, three.encoder.loc.weight)
    assert torch.equal(dec.log_var, three.decoder.log_var)  # not a layer's parameter: copied as it is
    state = torch.get_rng_state()
    with torch.no_grad():
        three.decoder.log_var.fill_(0.0)
    losses, codes = pretrain_autoencoders(three.encoder, three.decoder, three.likelihood, x, autoencoders=3,
                                          epochs=2, batch_size=20, lr=1e-3, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left as it was
    pretrain_autoencoder(one.encoder, one.decoder, one.likelihood, x, epochs=2, batch_size=20, lr=1e-3, seed=0)
    assert torch.equal(codes[0], encode_means(one.encoder, x))  # the model's own: as with one autoencoder
    assert len(codes) == 3 and not torch.equal(codes[1], codes[2]) and not torch.equal(codes[0], codes[1])
    assert member_seed(0, 1) not in (member_seed(1, 0), member_seed(1, 1), 1)  # not another run's seed


def test_the_data_start_decides_in_the_datas_space_and_takes_the_moments_in_the_codes():
    """assign='data': the tilted clusters are the data; the codes are another view of the same points in which
    they overlap. The partition is the data's (ARI 1 with the true labels) and the moments are the codes'
    per-cluster weights, means and variances under it, computed directly from the labels."""
    x, labels, weights = tilted_blobs()
    rng = np.random.default_rng(3)
    z = labels[:, None] * [0.3, -0.2, 0.1] + rng.normal(size=(len(x), 3))  # the groups touch in the codes
    start = fit_diag_gmm(z, 3, seed=0, n_init=3, assign="data", data=x)
    assert adjusted_rand_score(labels, start.responsibilities.argmax(1)) == 1.0
    order = [int(np.bincount(start.responsibilities.argmax(1)[labels == k]).argmax()) for k in range(3)]
    for k, j in enumerate(order):
        assert start.weights[j] == pytest.approx(weights[k], abs=1e-3)
        np.testing.assert_allclose(start.means[j], z[labels == k].mean(0), atol=1e-3)
        np.testing.assert_allclose(start.variances[j], z[labels == k].var(0), rtol=1e-2)
    with pytest.raises(ValueError, match="needs the data"):
        fit_diag_gmm(z, 3, assign="data")


def test_the_tsne_data_start_decides_on_the_datas_embedding_and_takes_the_moments_in_the_codes():
    """assign='tsne-data': well-separated groups in the data, codes in which they overlap. The consensus on the
    data's t-SNE embedding recovers the groups (ARI 1), whatever the codes; the moments are the codes' under
    that partition, computed directly from the labels."""
    x, labels = separated_blobs(n_per=120, dim=8)
    rng = np.random.default_rng(3)
    z = labels[:, None] * [0.3, -0.2, 0.1] + rng.normal(size=(len(x), 3))  # the groups touch in the codes
    start = fit_diag_gmm(z, 3, seed=0, n_init=3, assign="tsne-data", data=x)
    assert adjusted_rand_score(labels, start.responsibilities.argmax(1)) == 1.0
    two = fit_diag_gmm(z, 3, seed=0, n_init=3, assign="tsne-data", data=x, embeddings=2)  # two embeddings agree
    assert adjusted_rand_score(labels, two.responsibilities.argmax(1)) == 1.0
    order = [int(np.bincount(start.responsibilities.argmax(1)[labels == k]).argmax()) for k in range(3)]
    for k, j in enumerate(order):
        np.testing.assert_allclose(start.means[j], z[labels == k].mean(0), atol=1e-3)
        np.testing.assert_allclose(start.variances[j], z[labels == k].var(0), rtol=1e-2)
    with pytest.raises(ValueError, match="needs the data"):
        fit_diag_gmm(z, 3, assign="tsne-data")


def test_the_consensus_counts_its_own_starts_in_every_embedding(monkeypatch):
    """consensus_init GMM starts in each of the embeddings enter the consensus; n_init is then unused."""
    import pyro_mixvae.infer.pretrain as pretrain

    x, labels = separated_blobs(n_per=120, dim=8)
    calls = []
    real = pretrain.gmm_partitions
    monkeypatch.setattr(pretrain, "gmm_partitions", lambda *a: calls.append(a[5]) or real(*a))
    start = fit_diag_gmm(x, 3, seed=0, n_init=7, assign="tsne-data", data=x, embeddings=2, consensus_init=4)
    assert calls == [4, 4]
    assert adjusted_rand_score(labels, start.responsibilities.argmax(1)) == 1.0


def test_auto_starts_on_an_embedding_where_the_clusters_are_large_enough():
    from pyro_mixvae.infer.pretrain import resolve_gmm_fit

    assert resolve_gmm_fit("auto", 1797, 10, data_dim=64, code_dim=10) == "tsne-data"  # 180 points a cluster
    assert resolve_gmm_fit("auto", 1797, 10, data_dim=2, code_dim=10) == "tsne"  # the codes are the richer
    assert resolve_gmm_fit("auto", 5000, 10, data_dim=784, code_dim=10) == "tsne"  # hundreds of pixels
    assert resolve_gmm_fit("auto", 1797, 10) == "tsne"  # no data given
    assert resolve_gmm_fit("auto", 150, 3) == "diag"  # 50: below 3 x perplexity, no data given
    assert resolve_gmm_fit("auto", 150, 3, data_dim=4, code_dim=10) == "data"  # a small table
    assert resolve_gmm_fit("auto", 150, 3, data_dim=784, code_dim=10) == "diag"  # a few images
    assert resolve_gmm_fit("tsne", 150, 3) == "tsne"


def pinwheel(n=1000, k=5, seed=0):
    """k noisy half-circle arcs, each curled round its neighbour's end (the suite's arcs, smaller): groups that
    no neighbourhood joins, which a GMM on the points cuts across."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    direction = 2 * np.pi * labels / k
    angle = direction + np.pi / 4 + np.pi * (rng.random(n) - 0.5)
    x = 1.15 * np.stack([np.cos(direction), np.sin(direction)], 1) + np.stack([np.cos(angle), np.sin(angle)], 1)
    return x + 0.03 * rng.normal(size=x.shape), labels


def test_the_graph_start_is_the_neighbourhood_graphs_components_when_there_are_k():
    """assign='graph' (and 'auto' first): the arcs are the connected components of the 10-nearest-neighbour
    graph, found here independently by a breadth-first search over scikit-learn's neighbour lists; the start's
    partition is theirs (ARI 1 with the arcs), its moments the codes' under it; a GMM on the points is not."""
    from collections import deque

    from sklearn.neighbors import NearestNeighbors

    x, labels = pinwheel()
    xs = (x - x.mean(0)) / x.std(0)
    neighbours = NearestNeighbors(n_neighbors=11).fit(xs).kneighbors(xs, return_distance=False)[:, 1:]
    edges = [set() for _ in x]
    for n, row in enumerate(neighbours):
        for m in row:
            edges[n].add(int(m))
            edges[int(m)].add(n)
    component, count = np.full(len(x), -1), 0
    for n in range(len(x)):
        if component[n] < 0:
            queue, component[n] = deque([n]), count
            while queue:
                for m in edges[queue.popleft()]:
                    if component[m] < 0:
                        component[m] = count
                        queue.append(m)
            count += 1
    assert count == 5 and adjusted_rand_score(labels, component) == 1.0  # the arcs are five components

    rng = np.random.default_rng(3)
    z = labels[:, None] * [0.3, -0.2] + rng.normal(size=(len(x), 2))  # the groups touch in the codes
    for assign in ("graph", "auto"):
        start = fit_diag_gmm(z, 5, seed=0, n_init=3, assign=assign, data=x)
        assert adjusted_rand_score(component, start.responsibilities.argmax(1)) == 1.0
    order = [int(np.bincount(start.responsibilities.argmax(1)[labels == k]).argmax()) for k in range(5)]
    for k, j in enumerate(order):
        np.testing.assert_allclose(start.means[j], z[labels == k].mean(0), atol=1e-6)
        np.testing.assert_allclose(start.variances[j], z[labels == k].var(0) + 1e-4, rtol=1e-6)
    gmm = fit_diag_gmm(z, 5, seed=0, n_init=3, assign="data", data=x)
    assert adjusted_rand_score(labels, gmm.responsibilities.argmax(1)) < 0.9  # the points' GMM cuts the arcs


def test_the_graph_start_steps_aside_unless_the_graph_has_k_components():
    """Groups that touch (one component): 'auto' decides otherwise, 'graph' says why it cannot."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    x = labels[:, None] * 1.0 + rng.normal(size=(200, 3))
    z = rng.normal(size=(200, 2))
    assert fit_diag_gmm(z, 2, seed=0, n_init=2, assign="auto", data=x).responsibilities is not None  # data
    with pytest.raises(ValueError, match="1 connected components"):
        fit_diag_gmm(z, 2, assign="graph", data=x)
    # one group of 400 and a far island of 12 outlying points: two components, but the island is no group
    island = np.concatenate([rng.normal(size=(400, 3)), 50.0 + rng.normal(size=(12, 3))])
    z = rng.normal(size=(412, 2))
    from pyro_mixvae.infer.pretrain import _graph_start

    assert _graph_start(z, island, 2, "auto") is None  # auto goes on to its other rules
    assert _graph_start(z[:400], island[:400], 1, "auto") is not None  # a lone group: its one component
    with pytest.raises(ValueError, match="the smallest of 12 points"):
        fit_diag_gmm(z, 2, assign="graph", data=island)


def test_the_data_start_chooses_the_covariance_by_bic():
    """BIC = -2 log-likelihood + parameters x log N, recomputed here from scikit-learn's fitted log-likelihood and
    a count of the free parameters written out: groups tilted each its own way need full covariances, groups
    tilted alike one shared (tied) covariance; four groups of 50 points in 20 dimensions cannot pay for full ones."""
    from sklearn.mixture import GaussianMixture

    from pyro_mixvae.infer.pretrain import DATA_COVARIANCES, data_covariance, standardised

    def by_hand(x, k):
        n, d = x.shape
        free = {"full": k * d * (d + 1) / 2, "tied": d * (d + 1) / 2, "diag": k * d, "spherical": k}
        def bic(cov):
            gmm = GaussianMixture(k, covariance_type=cov, random_state=0, n_init=3, reg_covar=1e-4).fit(x)
            return -2 * gmm.score(x) * n + (free[cov] + k * d + k - 1) * np.log(n)
        return min(DATA_COVARIANCES, key=bic)

    tilted = standardised(tilted_blobs()[0])
    rng = np.random.default_rng(0)
    turns = [np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) for a in (0.0, 0.8, 1.6)]
    crossed = standardised(np.concatenate([c + (rng.normal(size=(300, 2)) * [3.0, 0.3]) @ r.T
                                           for c, r in zip([[0, 0], [12, 0], [0, 12]], turns)]))
    small = standardised(np.repeat(rng.uniform(0.1, 0.9, (4, 20)), 50, 0) + 0.05 * rng.normal(size=(200, 20)))
    assert data_covariance(crossed, 3, 0, 3, 1e-4) == by_hand(crossed, 3) == "full"
    assert data_covariance(tilted, 3, 0, 3, 1e-4) == by_hand(tilted, 3) == "tied"
    assert data_covariance(small, 4, 0, 3, 1e-4) == by_hand(small, 4) != "full"
