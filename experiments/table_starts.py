"""Which partition should start the mixture on a table (issue 31)? The candidates on the data themselves.

    python experiments/table_starts.py [--sets iris wine breast-cancer arcs guide-example] [--seeds 0 1 2]

For each set of the robustness suite, the accuracy of partitions a start could be decided by, computed on
the standardised data without any network (labels only score them):

* k-means (n_init=10) and a full-covariance GaussianMixture (n_init=10, the best likelihood kept);
* a GaussianMixture of each covariance type (full, tied, diag, spherical; n_init=10) with its BIC, and the
  type of least BIC (``pyro_mixvae.infer.pretrain.data_covariance``, what ``gmm_assign=data`` fits);
* spectral clustering on the 10-nearest-neighbour graph (scikit-learn's ``SpectralClustering``);
* the consensus of 20 full GMMs on one t-SNE embedding of the data (``gmm_assign=tsne-data``'s computation,
  one embedding);
* the number of connected components of the 10-nearest-neighbour graph
  (``pyro_mixvae.infer.pretrain.graph_components``, what ``gmm_assign=graph`` reads) and the first K + 1
  eigenvalues of its normalised Laplacian (K near-zero eigenvalues: K pieces).

Writes ``RESULTS/table_starts.md`` (mean ± sd over the seeds; the graph's figures do not depend on them).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import add_output_arguments, mean_std, record_command  # noqa: E402

SETS = ("iris", "wine", "breast-cancer", "arcs", "guide-example")


def candidates(x: np.ndarray, k: int, seed: int) -> dict:
    """{rule: labels} of the candidate starts on the standardised data ``x``, drawn from ``seed``."""
    from sklearn.cluster import KMeans, SpectralClustering
    from sklearn.mixture import GaussianMixture

    from pyro_mixvae.infer.pretrain import (DATA_COVARIANCES, consensus_partition, gmm_partitions,
                                            tsne_embedding)
    found = {"k-means": KMeans(k, n_init=10, random_state=seed).fit_predict(x)}
    for cov in DATA_COVARIANCES:
        gmm = GaussianMixture(k, covariance_type=cov, n_init=10, random_state=seed, reg_covar=1e-4).fit(x)
        found[f"GMM {cov}"] = (gmm.predict(x), gmm.bic(x))
    found["spectral, 10-NN graph"] = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=10,
                                                        random_state=seed, assign_labels="cluster_qr").fit_predict(x)
    emb = tsne_embedding(x, seed)
    found["t-SNE of the data, consensus of 20 GMMs"] = consensus_partition(
        gmm_partitions(emb, k, "full", 1e-4 * float(emb.var()), seed, 20), k)
    return found


def graph_figures(x: np.ndarray, k: int) -> tuple:
    """(connected components of the 10-NN graph, the first k + 1 eigenvalues of its normalised Laplacian)."""
    from scipy.linalg import eigh
    from scipy.sparse.csgraph import connected_components, laplacian

    from pyro_mixvae.infer.pretrain import neighbour_graph
    graph = neighbour_graph(x)
    lap = laplacian(graph, normed=True).toarray()
    return connected_components(graph, directed=False)[0], eigh(lap, eigvals_only=True, subset_by_index=[0, k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_output_arguments(parser, fits=False)
    args = parser.parse_args()
    from pyro_mixvae.infer.pretrain import standardised
    from pyro_mixvae.metrics import acc
    from pyro_mixvae.synthetic import robustness_suite
    warnings.filterwarnings("ignore")
    suite = robustness_suite(full=True)
    lines = [f"<!-- {record_command()} -->", "", "# Candidate starts on the data themselves (issue 31)", "",
             "acc mean ± sd over seeds " + ", ".join(map(str, args.seeds)) + "; for the GMMs their BIC (mean) "
             "after the accuracy; the least BIC of the four covariance types marked *.", ""]
    for name in args.sets:
        data = suite[name]
        x = standardised(data.x.reshape(len(data.x), -1).astype(np.float64))
        k = len(np.unique(data.y))
        scores, bics = {}, {}
        for seed in args.seeds:
            for rule, found in candidates(x, k, seed).items():
                labels, bic = found if isinstance(found, tuple) else (found, None)
                scores.setdefault(rule, []).append(acc(data.y, labels))
                if bic is not None:
                    bics.setdefault(rule, []).append(bic)
        least = min(bics, key=lambda r: np.mean(bics[r]))
        count, eig = graph_figures(x, k)
        lines += [f"## {name} ({x.shape[0]} points, {x.shape[1]} columns, K = {k})", "",
                  f"10-NN graph: {count} connected component(s); normalised Laplacian's first {k + 1} eigenvalues "
                  + ", ".join(f"{abs(e):.4f}" for e in eig), "", "| start | acc | BIC |", "| --- | --- | --- |"]
        for rule, values in scores.items():
            bic = f"{np.mean(bics[rule]):.0f}" + (" *" if rule == least else "") if rule in bics else ""
            lines.append(f"| {rule} | {mean_std(values)} | {bic} |")
        lines.append("")
        print(f"{name} done", flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "table_starts.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
