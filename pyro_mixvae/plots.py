"""Figures of trained models (matplotlib, headless: the Agg backend).

Each function draws one figure from plain arrays (most of them read from the ArviZ data of
:func:`pyro_mixvae.analysis.to_inference_data`) and saves it as a PNG:

* :func:`sample_figure` -- what ``mixvae sample`` writes: an image grid, or a scatter of x[0], x[1];
* :func:`training_figure` -- the objective per epoch, each extra term of the ELBO object, ACC/NMI/ARI;
* :func:`latent_figure` -- E q(z|x) in 2-D (PCA, or t-SNE, when dim z > 2) coloured by assigned
  cluster, with the 2-sigma ellipses of the components N(loc_k, diag scale_k^2) (projected by PCA:
  W^T diag(scale_k^2) W; none under t-SNE, which is not linear);
* :func:`cluster_samples_figure` -- a row of E[x | z] per cluster, z drawn from that cluster;
* :func:`confusion_figure` -- the contingency table of clusters against labels, in the order of the
  Hungarian matching (:func:`hungarian_order`);
* :func:`collapse_figure` -- cluster usage (points per cluster, mean responsibility, prior weight)
  and the histogram of the assignment entropy -sum_k q_k log q_k (log K = uniform);
* :func:`factor_grid_figure` -- factorial prior: one sample per (k_1, k_2) (the paper's Fig. 1);
* :func:`kl_figure` -- factorial prior: KL[z_i] and KL[r_i] per factor (App. C.2-C.3);
* :func:`arviz_figures` -- ArviZ's posterior plot of genuine draws and its posterior predictive check;
* :func:`selection_figure` -- ``mixvae select``: held-out log-likelihood, stability and effective
  components against K.
"""
from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from .analysis import group, import_arviz  # noqa: E402
from .errors import ConfigError  # noqa: E402
from .metrics import contingency  # noqa: E402

# history columns that are not terms of the objective
_NOT_TERMS = {"epoch", "lr", "seconds", "elbo", "objective", "acc", "acc_cluster_label", "acc_majority", "nmi",
              "ari", "clusters_used", "assignment_entropy"}
SCORES = ("acc", "acc_cluster_label", "acc_majority", "nmi", "ari")
MAX_SCATTER = 5000


def _save(fig, path, title: str = "") -> None:
    """Save; a figure made with the constrained layout keeps its title right above the panels (no blank band)."""
    if title:
        fig.suptitle(title, fontsize=9)
    try:
        fig.savefig(path, dpi=90, **({"bbox_inches": "tight"} if fig.get_layout_engine() is None else {}))
    except OSError as e:  # a path that cannot be written: one line, not a traceback
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> what imshow takes."""
    img = np.clip(np.transpose(x, (1, 2, 0)), 0, 1)
    return img[..., 0] if img.shape[-1] == 1 else img


GRID_PAD = 2  # pixels between the images of a grid


def image_grid(images: np.ndarray, nrow: int) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one image, ``nrow`` images per row, laid out by ``torchvision.utils.make_grid``
    (GRID_PAD white pixels between them); row r of images starts at pixel GRID_PAD + r * (H + GRID_PAD)."""
    from torchvision.utils import make_grid  # imported here: torchvision adds to every start-up of the CLI

    grid = make_grid(torch.as_tensor(np.asarray(images, dtype=np.float32)).clamp(0, 1), nrow=nrow,
                     padding=GRID_PAD, pad_value=1.0)
    return _image(grid.numpy())


def _show_grid(ax, images: np.ndarray, nrow: int) -> None:
    ax.imshow(image_grid(images, nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def _grid_ticks(n: int, size: int) -> list:
    """Pixel centres of ``n`` consecutive rows (or columns) of images of ``size`` pixels in an :func:`image_grid`."""
    return [GRID_PAD + i * (size + GRID_PAD) + size / 2 for i in range(n)]


def sample_figure(x: np.ndarray, clusters: np.ndarray, path, title: str = "") -> None:
    """Save samples ``x`` (N, C, H, W) as an image grid, or (N, D >= 2) as a scatter, to ``path``."""
    n = len(x)
    if x.ndim == 4:
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        fig, ax = plt.subplots(figsize=(cols * 0.9, rows * 0.9 + 0.4))
        _show_grid(ax, x, cols)
    else:
        flat = x.reshape(n, -1)
        fig, ax = plt.subplots(figsize=(5, 5))
        if flat.shape[1] >= 2:
            sc = ax.scatter(flat[:, 0], flat[:, 1], c=clusters, cmap="tab10", s=8)
            ax.set_xlabel("x[0]")
            ax.set_ylabel("x[1]")
        else:
            sc = ax.scatter(np.arange(n), flat[:, 0], c=clusters, cmap="tab10", s=8)
            ax.set_xlabel("sample")
            ax.set_ylabel("x[0]")
        fig.colorbar(sc, ax=ax, label="cluster")
    _save(fig, path, title)


def training_figure(records: list, path, title: str = "") -> None:
    """One panel for the objective (``elbo`` or ``objective``), one per extra term, one for the scores."""
    epochs = [r["epoch"] for r in records]
    main = [k for k in ("elbo", "objective") if any(k in r for r in records)]
    terms = [k for k in dict.fromkeys(k for r in records for k in r) if k not in _NOT_TERMS
             and all(isinstance(r.get(k, 0.0), (int, float)) for r in records)]
    scores = [k for k in SCORES if any(k in r for r in records)]
    panels = [(k, [k]) for k in main + terms] + ([("scores against labels", scores)] if scores else [])
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False, layout="constrained")
    for ax, (name, keys) in zip(axes.flat, panels):
        for k in keys:
            pts = [(e, r[k]) for e, r in zip(epochs, records) if r.get(k) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=k)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    _save(fig, path, title)


def _project(z: np.ndarray, projection: str, seed: int):
    """(N, D) -> (N, 2) and the linear map W (D, 2) and centre (None for t-SNE)."""
    if z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], 1)
        return z, np.eye(1, 2), np.zeros(1)
    if z.shape[1] == 2:
        return z, np.eye(2), np.zeros(2)
    if projection == "tsne":
        return TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, len(z) / 4)).fit_transform(z), None, None
    centre = z.mean(0)
    _, _, vt = np.linalg.svd(z - centre, full_matrices=False)
    w = vt[:2].T
    return (z - centre) @ w, w, centre


def latent_figure(z: np.ndarray, assignment: np.ndarray, loc: np.ndarray, scale: np.ndarray, path, *,
                  projection: str = "pca", title: str = "", seed: int = 0) -> None:
    """Scatter of the latent means coloured by cluster, with the components' 2-sigma ellipses."""
    rng = np.random.default_rng(seed)
    if len(z) > MAX_SCATTER:
        keep = rng.choice(len(z), MAX_SCATTER, replace=False)
        z, assignment = z[keep], assignment[keep]
    xy, w, centre = _project(np.asarray(z, dtype=float), projection, seed)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6, 5.5), layout="constrained")
    ax.scatter(xy[:, 0], xy[:, 1], s=3, c=[cmap(int(k) % 10) for k in assignment], alpha=0.6)
    used = set(np.asarray(assignment).tolist())
    if w is not None:
        for k in range(len(loc)):
            mean = (loc[k] - centre) @ w
            cov = w.T @ np.diag(scale[k] ** 2) @ w
            vals, vecs = np.linalg.eigh(cov)
            vals = np.maximum(vals, 0)
            angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
            ax.add_patch(Ellipse(mean, 4 * math.sqrt(vals[-1]), 4 * math.sqrt(vals[0]), angle=angle, fill=False,
                                 color=cmap(k % 10), lw=1.3, ls="-" if k in used else ":"))
            ax.annotate(str(k), mean, ha="center", va="center", fontsize=7)
    how = {2: "z", 1: "z (1-D)"}.get(z.shape[1], f"{projection.upper()} of z (dim {z.shape[1]})")
    ax.set_xlabel(f"{how}, axis 1")
    ax.set_ylabel(f"{how}, axis 2")
    ax.set_title("E q(z|x) coloured by assigned cluster" + ("; 2-sigma ellipses (dotted: unused)" if w is not None
                                                            else ""), fontsize=9)
    _save(fig, path, title)


def cluster_samples_figure(x_cluster: np.ndarray, path, n: int = 8, title: str = "") -> None:
    """``x_cluster`` (S, K, *data shape): row k shows ``n`` draws of E[x | z] from cluster k."""
    x_cluster = x_cluster[:n]
    n, K = x_cluster.shape[:2]
    clusters = [k for k in range(K) if np.isfinite(x_cluster[:, k]).all()]
    if x_cluster.ndim == 5:
        fig, ax = plt.subplots(figsize=(n * 0.8, len(clusters) * 0.8 + 0.4))
        rows = np.swapaxes(x_cluster[:, clusters], 0, 1)  # (clusters, n, C, H, W): one row per cluster
        _show_grid(ax, rows.reshape(-1, *rows.shape[2:]), n)
        ax.set_yticks(_grid_ticks(len(clusters), rows.shape[-2]), [str(k) for k in clusters], fontsize=7)
        ax.set_ylabel("cluster", fontsize=8)
    elif x_cluster.shape[-1] == 2:
        cmap = plt.get_cmap("tab10")
        fig, ax = plt.subplots(figsize=(5, 5))
        for k in clusters:
            ax.scatter(x_cluster[:, k, 0], x_cluster[:, k, 1], s=10, color=cmap(k % 10), label=str(k))
        ax.legend(title="cluster", fontsize=7)
    else:
        flat = x_cluster.reshape(n, K, -1)
        fig, axes = plt.subplots(len(clusters), 1, figsize=(6, 0.6 * len(clusters) + 0.6), squeeze=False)
        for row, k in enumerate(clusters):
            axes[row, 0].imshow(flat[:, k], aspect="auto", cmap="viridis")
            axes[row, 0].set_yticks([])
            axes[row, 0].set_ylabel(str(k), fontsize=7, rotation=0, labelpad=8)
        axes[-1, 0].set_xlabel("feature (rows: draws)")
    _save(fig, path, title or "E[x | z], z drawn from each cluster (one row per cluster)")


def hungarian_order(labels: np.ndarray, assignment: np.ndarray) -> tuple:
    """(classes, clusters ordered so that cluster i is matched to class i by the Hungarian matching that
    defines ACC; unmatched clusters last, by size) and the contingency table in that order."""
    table = contingency(labels, assignment)  # (clusters, classes)
    classes, clusters = np.unique(labels), np.unique(assignment)
    rows, cols = linear_sum_assignment(table, maximize=True)
    matched = [r for _, r in sorted(zip(cols, rows))]
    rest = sorted(set(range(len(clusters))) - set(matched), key=lambda r: -table[r].sum())
    order = matched + rest
    return classes, clusters[order], table[order]


def confusion_figure(labels: np.ndarray, assignment: np.ndarray, path, title: str = "") -> None:
    """Counts of points per (cluster, label), clusters ordered by the Hungarian matching (the diagonal is ACC's)."""
    classes, clusters, table = hungarian_order(labels, assignment)
    fig, ax = plt.subplots(figsize=(0.45 * len(classes) + 2.5, 0.4 * len(clusters) + 2), layout="constrained")
    im = ax.imshow(table, cmap="Blues")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], fontsize=7)
    ax.set_yticks(range(len(clusters)), [str(c) for c in clusters], fontsize=7)
    ax.set_xlabel("label")
    ax.set_ylabel("assigned cluster (Hungarian order)")
    if table.size <= 400:
        for (i, j), v in np.ndenumerate(table):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=6,
                    color="white" if v > table.max() / 2 else "black")
    fig.colorbar(im, ax=ax, label="points")
    _save(fig, path, title or "clusters against labels (diagonal: the matching of ACC)")


def collapse_figure(responsibilities: np.ndarray, path, prior_weights=None, title: str = "") -> None:
    """Cluster usage bars (share of points assigned, mean responsibility, pi) and the entropy histogram."""
    gamma = np.nan_to_num(np.asarray(responsibilities, dtype=float))
    K = gamma.shape[1]
    share = np.bincount(gamma.argmax(1), minlength=K) / len(gamma)
    safe = np.where(gamma > 0, gamma, 1.0)
    entropy = -(gamma * np.log(safe)).sum(1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    idx = np.arange(K)
    a.bar(idx - 0.2, share, 0.4, label="share of points assigned")
    a.bar(idx + 0.2, gamma.mean(0), 0.4, label="mean responsibility")
    if prior_weights is not None:
        a.scatter(idx, prior_weights, color="k", marker="_", s=200, label="prior weight pi")
    a.set_xlabel("cluster")
    a.set_xticks(idx)
    a.set_title(f"cluster usage: {int((share > 0).sum())} of {K} clusters used", fontsize=9)
    a.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    b.hist(entropy, bins=30, range=(0.0, max(math.log(K), float(entropy.max()))))
    b.axvline(math.log(K), color="k", ls="--", label="log K (uniform)")
    b.set_xlabel("assignment entropy (nats)")
    b.set_title("entropy of q(c | x) per point", fontsize=9)
    b.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    _save(fig, path, title)


@torch.no_grad()
def factor_grid_figure(model, path, seed: int = 0, title: str = "") -> None:
    """One draw of E[x | z] for each (k_1, k_2) of the first two factors (other factors drawn from q(pi))."""
    k1, k2 = model.cluster_counts[0], model.cluster_counts[1]
    rest = [None] * (len(model.cluster_counts) - 2)
    torch.manual_seed(seed)
    x = np.stack([model.sample(1, ks=[a, b, *rest])[0][0].cpu().numpy() for b in range(k2) for a in range(k1)])
    if x.ndim == 4:  # images: row b holds k2 = b, column a holds k1 = a
        fig, ax = plt.subplots(figsize=(k1 * 0.8 + 0.5, k2 * 0.8 + 0.5), layout="constrained")
        _show_grid(ax, x, k1)
        ax.set_xticks(_grid_ticks(k1, x.shape[-1]), [f"k1={a}" for a in range(k1)], fontsize=6)
        ax.set_yticks(_grid_ticks(k2, x.shape[-2]), [f"k2={b}" for b in range(k2)], fontsize=6)
    else:  # flat data: one panel per (k1, k2)
        fig, axes = plt.subplots(k2, k1, figsize=(k1 * 0.8 + 0.5, k2 * 0.8 + 0.5), squeeze=False,
                                 layout="constrained")
        for i, ax in enumerate(axes.flat):
            ax.plot(x[i].reshape(-1), lw=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
        for a in range(k1):
            axes[-1, a].set_xlabel(f"k1={a}", fontsize=6)
        for b in range(k2):
            axes[b, 0].set_ylabel(f"k2={b}", fontsize=6)
    _save(fig, path, title or "one sample per (k1, k2) (Student-t predictive, eq. 10)")


def kl_figure(parts: dict, path, title: str = "") -> None:
    """Grouped bars: each KL part (e.g. KL[z_i], KL[r_i]) per factor, nats per point."""
    names = list(parts)
    factors = len(parts[names[0]])
    fig, ax = plt.subplots(figsize=(1.2 * factors * len(names) + 2, 3.5), layout="constrained")
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        ax.bar(np.arange(factors) + (j - (len(names) - 1) / 2) * width, parts[name], width, label=name)
    ax.set_xticks(range(factors), [f"factor {i}" for i in range(factors)])
    ax.set_ylabel("nats per point")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    _save(fig, path, title or "KL[z_i] and KL[r_i] per factor (App. C.2-C.3)")


def save_arviz_figure(result, path) -> None:
    """Save what an ArviZ plot returned: axes (ArviZ 0.2x) or a PlotCollection (ArviZ >= 1)."""
    if hasattr(result, "savefig"):  # arviz >= 1: a PlotCollection
        result.savefig(path)
        return
    fig = np.ravel(result)[0].get_figure()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def arviz_figures(idata, posterior_path, ppc_path, max_clusters: int = 6, max_points: int = 2) -> list:
    """ArviZ's posterior plot (``plot_posterior``; ``plot_dist`` in ArviZ >= 1) of genuine draws -- the
    global mixture weights where the guide has a q over them, else q(z | x) of the first points -- and
    ``plot_ppc`` of the posterior predictive against the data; returns the paths written."""
    az = import_arviz()
    post = group(idata, "posterior")
    weights = [v for v in post.data_vars if v == "pi" or v.startswith("pi_")]
    if weights:
        name = weights[0]
        small = post[[name]].isel({post[name].dims[-1]: slice(0, max_clusters)})
    else:
        name = "z" if "z" in post else list(post.data_vars)[0]
        small = post[[name]].isel(local_obs=slice(0, max_points))
        small = small.isel({d: slice(0, 3) for d in small[name].dims if d.endswith("_dim")})
    plot_posterior = getattr(az, "plot_posterior", None) or az.plot_dist
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_arviz_figure(plot_posterior(small, var_names=[name]), posterior_path)
        draws = group(idata, "posterior_predictive").sizes["draw"]
        if hasattr(az, "plot_ppc"):  # arviz 0.2x
            axes = az.plot_ppc(idata, num_pp_samples=min(20, draws))
        else:  # pragma: no cover - arviz >= 1 (arviz_plots), not installed here
            axes = az.plot_ppc_dist(idata)
        if not hasattr(axes, "savefig"):  # arviz 0.2x: matplotlib axes
            np.ravel(axes)[0].set_title("posterior predictive: x_rep ~ p(x | z), z ~ q(z | x), all features pooled",
                                        fontsize=9)
        save_arviz_figure(axes, ppc_path)
    return [posterior_path, ppc_path]


def selection_figure(table: list, path, chosen=None, title: str = "") -> None:
    """``mixvae select``: held-out log-likelihood (error bars: the SE of its difference to the best, paired over
    points and restarts), stability (mean pairwise ARI of restarts, error bars: its SE) and, where measured,
    effective components, against K."""
    panels = [("heldout_ll", "diff_se", "held-out log p(x) per point (nats)\nbars: SE of the difference to the best"),
              ("stability", "stability_se", "stability: mean pairwise ARI of restarts\nbars: SE over pairs")]
    if any("effective_components" in r for r in table):
        panels.append(("effective_components", None, "effective components (factor 0)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), layout="constrained", squeeze=False)
    models = list(dict.fromkeys(r["model"] for r in table))
    for ax, (key, err, label) in zip(axes[0], panels):
        for j, m in enumerate(models):
            rows = sorted((r for r in table if r["model"] == m and key in r), key=lambda r: r["k"])
            if not rows:
                continue
            ks = np.array([r["k"] for r in rows]) + 0.06 * (j - (len(models) - 1) / 2)
            yerr = [r[err] for r in rows] if err else None
            ax.errorbar(ks, [r[key] for r in rows], yerr=yerr, marker="o", ms=4, capsize=3, label=m)
        if key == "effective_components":
            lim = [min(r["k"] for r in table), max(r["k"] for r in table)]
            ax.plot(lim, lim, color="0.6", ls=":", lw=1, label="= K")
        if chosen is not None:
            ax.axvline(chosen["k"], color="k", ls="--", lw=0.8, label=f"chosen K = {chosen['k']}")
        ax.set_xlabel("K")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)
