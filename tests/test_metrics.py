"""Tests of pyro_mixvae.metrics against hand-worked values and brute-force computations."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_mixvae.metrics import (
    DEFINITIONS,
    acc,
    acc_cluster_label,
    acc_majority,
    ari,
    assignment_entropy,
    clustering_metrics,
    clusters_used,
    contingency,
    format_metrics,
    nmi,
)

FAST = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------- helpers
# Independent reference computations, working on the raw label arrays (no contingency).


def brute_acc(y, c):
    """Max over injective cluster->label (or label->cluster) maps, by enumeration."""
    y, c = list(y), list(c)
    classes, clusters = sorted(set(y)), sorted(set(c))
    best = 0
    if len(clusters) <= len(classes):
        for labels in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, labels))
            best = max(best, sum(mapping[ci] == yi for yi, ci in zip(y, c)))
    else:  # more clusters than classes: each class gets one cluster, the rest are wrong
        for chosen in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(chosen, classes))
            best = max(best, sum(mapping.get(ci) == yi for yi, ci in zip(y, c)))
    return best / len(y)


def brute_majority(y, c):
    correct = 0
    for k in set(c):
        correct += Counter(yi for yi, ci in zip(y, c) if ci == k).most_common(1)[0][1]
    return correct / len(y)


def entropy_of(labels):
    n = len(labels)
    return -sum(m / n * math.log(m / n) for m in Counter(labels).values())


def ref_nmi(y, c):
    y, c = list(y), list(c)
    n = len(y)
    joint, py, pc = Counter(zip(y, c)), Counter(y), Counter(c)
    mi = sum(m / n * math.log(m * n / (py[a] * pc[b])) for (a, b), m in joint.items())
    return mi / ((entropy_of(y) + entropy_of(c)) / 2)


def ref_ari(y, c):
    """Adjusted Rand index from pair counting over all pairs of points."""
    pairs = list(itertools.combinations(range(len(y)), 2))
    same_y = sum(y[i] == y[j] for i, j in pairs)
    same_c = sum(c[i] == c[j] for i, j in pairs)
    same_both = sum(y[i] == y[j] and c[i] == c[j] for i, j in pairs)
    expected = same_y * same_c / len(pairs)
    maximum = (same_y + same_c) / 2
    return (same_both - expected) / (maximum - expected)


small_case = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 4), min_size=n, max_size=n),  # up to 5 classes
        st.lists(st.integers(0, 4), min_size=n, max_size=n),  # up to 5 clusters
    )
)


# --------------------------------------------------------------------------- hand-worked


def test_contingency_hand_worked():
    # y = [0,0,0,1,1,2], pred = [1,1,0,0,0,2]
    # cluster 0 holds y = 0,1,1 -> [1, 2, 0]; cluster 1 holds y = 0,0 -> [2, 0, 0];
    # cluster 2 holds y = 2 -> [0, 0, 1]
    table = contingency([0, 0, 0, 1, 1, 2], [1, 1, 0, 0, 0, 2])
    np.testing.assert_array_equal(table, [[1, 2, 0], [2, 0, 0], [0, 0, 1]])


def test_acc_square_case():
    # table rows (clusters) [1,2,0], [2,0,0], [0,0,1]: best matching is
    # cluster 0 -> label 1 (2 points), cluster 1 -> label 0 (2), cluster 2 -> label 2 (1)
    # -> 5 of 6 correct. Majority gives the same: 2 + 2 + 1 = 5.
    y, pred = [0, 0, 0, 1, 1, 2], [1, 1, 0, 0, 0, 2]
    assert acc(y, pred) == pytest.approx(5 / 6)
    assert acc_majority(y, pred) == pytest.approx(5 / 6)
    assert isinstance(acc(y, pred), float)


def test_acc_more_clusters_than_classes():
    # y = [0,0,1,1], pred = [0,0,1,2]: rows c0 [2,0], c1 [0,1], c2 [0,1].
    # One-to-one: c0 -> 0 (2), c1 -> 1 (1), c2 unmatched and counted wrong -> 3/4.
    # Majority: every cluster is pure -> 4/4.
    y, pred = [0, 0, 1, 1], [0, 0, 1, 2]
    assert acc(y, pred) == pytest.approx(3 / 4)
    assert acc_majority(y, pred) == pytest.approx(1.0)
    # Each point in its own cluster: only 2 clusters (one per class) can be matched.
    assert acc([0, 0, 1, 1], [0, 1, 2, 3]) == pytest.approx(2 / 4)


def test_acc_fewer_clusters_than_classes():
    # y = [0,0,1,1,2,2], pred = [0,0,0,0,1,1]: rows c0 [2,2,0], c1 [0,0,2].
    # c0 -> label 0 or 1 (2), c1 -> label 2 (2) -> 4/6; majority also 4/6.
    y, pred = [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]
    assert acc(y, pred) == pytest.approx(4 / 6)
    assert acc_majority(y, pred) == pytest.approx(4 / 6)
    # a single cluster can be right for the largest class only: 3 of 6
    assert acc([0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5]) == pytest.approx(3 / 6)


def test_acc_non_contiguous_ids():
    # classes 10, 20, 30; clusters 5, 7, 42. Rows (sorted clusters 5, 7, 42):
    # c5 [0,0,1], c7 [2,1,0], c42 [0,2,0] -> 5 -> 30 (1), 7 -> 10 (2), 42 -> 20 (2) = 5/6
    y, pred = [10, 10, 20, 20, 20, 30], [7, 7, 42, 42, 7, 5]
    np.testing.assert_array_equal(contingency(y, pred), [[0, 0, 1], [2, 1, 0], [0, 2, 0]])
    assert acc(y, pred) == pytest.approx(5 / 6)
    assert acc(np.array(y), np.array(pred)) == pytest.approx(5 / 6)


def test_nmi_ari_hand_worked():
    # identical partitions: NMI = ARI = 1
    assert nmi([0, 0, 1, 1], [3, 3, 9, 9]) == pytest.approx(1.0)
    assert ari([0, 0, 1, 1], [3, 3, 9, 9]) == pytest.approx(1.0)
    # y = [0,0,1,1], pred = [0,1,0,1]: independent, MI = 0 -> NMI = 0.
    # ARI: sum C(n_ij,2) = 0, sum C(a_i,2) = sum C(b_j,2) = 2, expected = 2*2/C(4,2) = 2/3,
    # max = 2 -> (0 - 2/3) / (2 - 2/3) = -1/2
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert ari([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)


def test_clusters_used():
    assert clusters_used([3, 3, 7, 42]) == 3
    assert clusters_used(np.zeros(5, dtype=int)) == 1
    assert isinstance(clusters_used([1, 2]), int)


# --------------------------------------------------------------------------- cluster-label accuracy


def test_acc_cluster_label_hand_worked():
    # y  proba            argmax
    # 0  [0.90, 0.10]     0
    # 0  [0.70, 0.30]     0
    # 1  [0.95, 0.05]     0
    # 1  [0.40, 0.60]     1
    # Most probable point of cluster 0 is row 2 (0.95, label 1); of cluster 1 row 3
    # (0.60, label 1). Both clusters are labelled 1, so every point is predicted 1 -> 2/4.
    # Hungarian on the argmax: rows c0 [2,1], c1 [0,1] -> 2 + 1 = 3/4 (a different number).
    y = [0, 0, 1, 1]
    proba = [[0.90, 0.10], [0.70, 0.30], [0.95, 0.05], [0.40, 0.60]]
    assert acc_cluster_label(y, proba) == pytest.approx(2 / 4)
    assert acc(y, np.argmax(proba, axis=1)) == pytest.approx(3 / 4)


def test_acc_cluster_label_three_clusters_arbitrary_labels():
    # y   proba              argmax
    # 3   [0.9, 0.1, 0.0]    0
    # 3   [0.6, 0.4, 0.0]    0
    # 8   [0.2, 0.7, 0.1]    1
    # 8   [0.2, 0.2, 0.6]    2
    # 5   [0.3, 0.2, 0.5]    2
    # cluster 0 -> row 0 (label 3), cluster 1 -> row 2 (label 8), cluster 2 -> row 3 (0.6, label 8)
    # predictions 3, 3, 8, 8, 8 vs truth 3, 3, 8, 8, 5 -> 4/5
    y = np.array([3, 3, 8, 8, 5])
    proba = np.array(
        [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6], [0.3, 0.2, 0.5]]
    )
    assert acc_cluster_label(y, proba) == pytest.approx(4 / 5)


# --------------------------------------------------------------------------- entropy


def test_assignment_entropy_hand_worked():
    for k in (1, 2, 5, 10):
        assert assignment_entropy(np.full((4, k), 1.0 / k)) == pytest.approx(math.log(k))
    assert assignment_entropy(np.eye(3)) == pytest.approx(0.0)
    # rows: [1/2, 1/2, 0] -> log 2 (0 log 0 = 0); [1, 0, 0] -> 0; mean = log(2) / 2
    assert assignment_entropy([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]) == pytest.approx(
        math.log(2) / 2
    )
    # [0.25, 0.75]: -(0.25 log 0.25 + 0.75 log 0.75)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert assignment_entropy([[0.25, 0.75]]) == pytest.approx(expected)


# --------------------------------------------------------------------------- properties


@FAST
@given(small_case)
def test_acc_equals_brute_force(case):
    y, c = case
    assert acc(y, c) == pytest.approx(brute_acc(y, c))


@FAST
@given(small_case)
def test_majority_brute_force_and_bound(case):
    y, c = case
    assert acc_majority(y, c) == pytest.approx(brute_majority(y, c))
    assert acc_majority(y, c) >= acc(y, c) - 1e-12


@FAST
@given(small_case)
def test_nmi_ari_against_reference(case):
    y, c = case
    if len(set(y)) > 1 or len(set(c)) > 1:  # reference NMI undefined when both are constant
        assert nmi(y, c) == pytest.approx(ref_nmi(y, c), abs=1e-9)
    if len(y) >= 2:
        pairs = len(y) * (len(y) - 1) / 2
        same_y = sum(n * (n - 1) / 2 for n in Counter(y).values())
        same_c = sum(n * (n - 1) / 2 for n in Counter(c).values())
        if (same_y + same_c) / 2 - same_y * same_c / pairs > 1e-12:  # reference well-defined
            assert ari(y, c) == pytest.approx(ref_ari(y, c), abs=1e-9)


@FAST
@given(
    small_case,
    st.permutations(range(5)),
    st.lists(st.integers(-1000, 1000), min_size=5, max_size=5, unique=True),
)
def test_relabelling_clusters_changes_nothing(case, perm, new_ids):
    y, c = case
    permuted = [perm[k] for k in c]
    renamed = [new_ids[k] for k in c]  # arbitrary, non-contiguous, possibly negative ids
    for relabelled in (permuted, renamed, [(7, 42, 3, 100, -5)[k] for k in c]):
        assert acc(y, relabelled) == pytest.approx(acc(y, c))
        assert acc_majority(y, relabelled) == pytest.approx(acc_majority(y, c))
        assert nmi(y, relabelled) == pytest.approx(nmi(y, c), abs=1e-12)
        assert ari(y, relabelled) == pytest.approx(ari(y, c), abs=1e-12)
        assert clusters_used(relabelled) == clusters_used(c)


@FAST
@given(small_case, st.lists(st.integers(-1000, 1000), min_size=5, max_size=5, unique=True))
def test_relabelling_classes_changes_nothing(case, new_ids):
    y, c = case
    renamed = [new_ids[k] for k in y]
    assert acc(renamed, c) == pytest.approx(acc(y, c))
    assert acc_majority(renamed, c) == pytest.approx(acc_majority(y, c))


@FAST
@given(
    st.integers(1, 10).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 4), min_size=n, max_size=n),
            st.lists(st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4), min_size=n, max_size=n),
        )
    )
)
def test_clustering_metrics_consistent(case):
    y, raw = case
    proba = np.array(raw) / np.sum(raw, axis=1, keepdims=True)
    m = clustering_metrics(proba, y)
    pred = np.argmax(proba, axis=1)
    assert m["acc"] == pytest.approx(brute_acc(y, pred))
    assert m["acc_majority"] >= m["acc"] - 1e-12
    assert m["clusters_used"] == len(set(pred.tolist()))
    assert 0.0 <= m["assignment_entropy"] <= math.log(4) + 1e-9


# --------------------------------------------------------------------------- dict and text


def test_clustering_metrics_keys_and_types():
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.1, 0.1, 0.8], [0.7, 0.3, 0.0]])
    without = clustering_metrics(proba)
    assert set(without) == {"clusters_used", "assignment_entropy"}
    assert without["clusters_used"] == 3
    with_labels = clustering_metrics(proba, [0, 1, 2, 0])
    assert set(with_labels) == {
        "clusters_used", "assignment_entropy", "acc", "acc_cluster_label", "acc_majority", "nmi", "ari",
    }
    assert with_labels["acc"] == pytest.approx(1.0)
    assert with_labels["acc_cluster_label"] == pytest.approx(1.0)
    assert isinstance(with_labels["clusters_used"], int)
    for key, value in with_labels.items():
        if key != "clusters_used":
            assert type(value) is float


def test_definitions_printed_with_every_accuracy():
    proba = np.eye(3)[[1, 1, 0, 0, 0, 2]]
    metrics = {"dataset": "mnist", "model": "gmvae", **clustering_metrics(proba, [0, 0, 0, 1, 1, 2])}
    text = format_metrics(metrics)
    lines = text.splitlines()
    assert len(lines) == len(metrics)
    assert set(clustering_metrics(proba, [0, 0, 0, 1, 1, 2])) <= set(DEFINITIONS)
    acc_keys = [key for key in metrics if key.startswith("acc")]
    assert len(acc_keys) == 3
    for key in acc_keys:
        assert key in DEFINITIONS
        (line,) = [line for line in lines if line.split()[0] == key]
        assert DEFINITIONS[key] in line
        assert f"{metrics[key]:.4f}" in line
    acc_line = next(line for line in lines if line.split()[0] == "acc")
    assert "0.8333" in acc_line and "Hungarian" in acc_line
    assert any(line.split() == ["dataset", "mnist"] for line in lines)
    assert any(line.split() == ["model", "gmvae"] for line in lines)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: acc([0, 1, 2], [0, 1]),  # unequal lengths
        lambda: acc([], []),  # empty
        lambda: acc_majority([[0, 1]], [[0, 1]]),  # not 1-D
        lambda: nmi([0, 1], [0]),
        lambda: ari([0], [0, 1]),
        lambda: contingency([0, 1], [0, 1, 1]),
        lambda: clusters_used([]),
        lambda: assignment_entropy([0.5, 0.5]),  # 1-D proba
        lambda: assignment_entropy(np.zeros((0, 3))),  # empty proba
        lambda: assignment_entropy([[0.5, 0.6]]),  # row sums to 1.1
        lambda: assignment_entropy([[1.5, -0.5]]),  # negative entry
        lambda: assignment_entropy([[np.nan, 1.0]]),
        lambda: acc_cluster_label([0, 1, 1], [[1.0, 0.0], [0.0, 1.0]]),  # lengths differ
        lambda: clustering_metrics([[0.2, 0.2]]),  # rows do not sum to 1
        lambda: clustering_metrics([[1.0, 0.0]], [0, 1]),  # labels longer than proba
    ],
)
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError) as info:
        call()
    assert "\n" not in str(info.value)
