"""``mixvae report DIR``: a report of one run directory, for any model.

Writes ``DIR/report/`` (or ``out``):

* ``posterior.nc`` -- the ArviZ data of :func:`pyro_mixvae.analysis.to_inference_data` (netCDF);
* ``training.png``, ``latent.png``, ``samples.png``, ``collapse.png``, ``arviz_posterior.png``,
  ``arviz_ppc.png``; ``confusion.png`` when the data have labels; ``factor_grid.png`` for
  models with two or more factors; ``kl.png`` for models with KL parts (the factorial prior);
* ``summary.md`` -- the metrics with their definitions, the config, links to the figures.

The data are reloaded as the run's ``config.json`` names them (``load_dataset(data, split)``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from scipy.special import logsumexp

from . import plots
from .analysis import DEFAULT_DRAWS, REPORT_MAX_POINTS, group, save_netcdf, to_inference_data
from .data import load_dataset
from .errors import ConfigError, RunError
from .runner import as_model_input, check_seed
from .evaluation import DEFAULT_IW_SAMPLES, evaluate
from .metrics import DEFINITIONS, clustering_metrics
from .nets import eval_mode
from .runs import HISTORY, check_output_dir, check_same_data, completion, load_run, read_history, read_metrics

# what the other numbers of metrics.json mean
MORE_DEFINITIONS = {
    "elbo": "evidence lower bound per data point in nats (the model's plain TraceEnum_ELBO bound, 10 draws)",
    "train_seconds": "pretraining plus SVI wall-clock seconds",
    "epochs": "SVI epochs run",
    "predictive_bound": "eq. 11 of the factorial paper per point (recon - kl_z - kl_r), nats",
    "predictive_recon": "E_q[log p(x|z)] per point, nats",
    "predictive_kl_z": "sum_i KL[z_i] per point (App. C.2), nats",
    "predictive_kl_r": "sum_i KL[r_i] per point (App. C.3), nats",
    "effective_components": "per factor, components whose pseudo-count exceeds the prior's by > 1 point",
    "effective_clusters": "clusters whose pseudo-count in q(pi) = Dir(c) exceeds alpha0 by > 1 point",
    "weights": "E_q[pi] per cluster, q(pi) = Dir(c)",
}
FIGURES = {
    "training.png": "training curves: the objective per epoch, each extra term, scores against labels",
    "latent.png": "latent space E q(z|x) coloured by assigned cluster, with the components' 2-sigma ellipses",
    "samples.png": "E[x | z] with z drawn from each cluster (posterior predictive, one row per cluster)",
    "confusion.png": "confusion matrix: assigned clusters against labels, in the order of the Hungarian matching",
    "collapse.png": "collapse diagnostics: cluster usage and the histogram of assignment entropy",
    "factor_grid.png": "one sample per (k1, k2) of the first two factors",
    "kl.png": "KL[z_i] and KL[r_i] per factor",
    "arviz_posterior.png": "ArviZ posterior plot of genuine draws: the mixture weights from q where the guide has a "
                           "q over them, else q(z | x) of the first points",
    "arviz_ppc.png": "ArviZ posterior predictive check: x_rep ~ p(x | z), z ~ q(z | x), against the data",
}


def write_report(run_dir, out: Optional[str] = None, *, num_samples: int = DEFAULT_DRAWS,
                 max_points: int = REPORT_MAX_POINTS,
                 seed: int = 0, projection: str = "pca", iw_samples: int = DEFAULT_IW_SAMPLES) -> Path:
    """Write the report of ``run_dir`` into ``out`` (default ``run_dir/report``); returns that folder."""
    run = Path(run_dir)
    if num_samples < 1 or max_points < 1:
        raise ConfigError(f"--num-samples and --max-points must be >= 1; got {num_samples} and {max_points}")
    if projection not in ("pca", "tsne"):
        raise ConfigError(f"--projection must be pca or tsne; got {projection!r}")
    if iw_samples < 0:
        raise ConfigError(f"--iw-samples must be >= 0 (0: no log-likelihood); got {iw_samples}")
    check_seed(seed)
    target = Path(out) if out is not None else run / "report"
    check_output_dir(target, "--out" if out is not None else "the report folder",
                     "" if out is not None else f"; write the report elsewhere with `mixvae report {run} --out DIR`")
    model, cfg = load_run(run, what="report")
    data = load_dataset(cfg["data"], split=cfg.get("split", "all"))
    x = as_model_input(data.x)
    if x.shape[1:] != tuple(model.data_shape):
        raise ConfigError(f"data {cfg['data']} has shape {x.shape[1:]} per point; the run was trained on "
                          f"{tuple(model.data_shape)}")
    check_same_data(cfg, x, data.y, "report", run)
    metrics = read_metrics(run, cfg)  # a damaged or foreign file: one line, now
    records = _plottable(read_history(run, upto=cfg["checkpoint_epoch"]), run)  # a torn last line dropped
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {target}: {e.strerror}") from None

    idata = to_inference_data(model, x, y=data.y, history=records, num_samples=num_samples,
                              max_points=max_points, seed=seed, iw_samples=iw_samples)
    save_netcdf(idata, target / "posterior.nc")
    written = _figures(model, idata, records, target, projection, seed, f"{cfg['model']} on {cfg['data']}")

    incomplete = completion(cfg, metrics)
    if metrics is None or incomplete:  # an unfinished run: measure it now
        with eval_mode(model):
            metrics = {**evaluate(model, torch.as_tensor(x), data.y), "complete": not incomplete,
                       "epochs": cfg["checkpoint_epoch"], **({"stopped": incomplete} if incomplete else {})}
    cfg = {k: v for k, v in cfg.items() if k != "checkpoint_epoch"}
    (target / "summary.md").write_text(_summary(run, cfg, metrics, idata, written))
    return target


def _plottable(records: list, run: Path) -> list:
    """The history's records, refused in one line where a value the figures draw is not a number."""
    for record in records:
        bad = next((k for k in ("elbo", "objective", *plots.SCORES) if record.get(k) is not None
                    and (isinstance(record[k], bool) or not isinstance(record[k], (int, float)))), None)
        if bad is not None:
            raise RunError(f"{run / HISTORY} is damaged: epoch {record['epoch']} has {bad} "
                           f"{json.dumps(record[bad])[:40]}, not a number")
    return records


def _figures(model, idata, records, target: Path, projection: str, seed: int, title: str) -> list:
    cp = group(idata, "cluster_posterior")
    gamma = cp["responsibilities"].values
    assignment = cp["assignment"].values
    z = cp["z_loc"].values
    if "factor" in cp.dims:  # factor 0 is the clustering
        gamma, assignment, z = gamma[:, 0], assignment[:, 0], z[:, 0]
    pi, loc, scale = (t.detach().cpu().numpy() for t in model.prior_components()[0])
    written = []

    def draw(name, fn, *args, **kwargs):
        fn(*args, target / name, **kwargs)
        written.append(name)

    if records:
        draw("training.png", plots.training_figure, records, title=title)
    draw("latent.png", plots.latent_figure, z, assignment, loc, scale, projection=projection, seed=seed, title=title)
    draw("samples.png", plots.cluster_samples_figure, group(idata, "cluster_predictive")["x_cluster"].values[0])
    labels = group(idata, "constant_data")
    if labels is not None and "labels" in labels:
        draw("confusion.png", plots.confusion_figure, labels["labels"].values, assignment, title=title)
    draw("collapse.png", plots.collapse_figure, gamma[:, np.isfinite(gamma).all(0)], prior_weights=pi, title=title)
    if len(model.prior_components()) >= 2:  # several factors: the (k1, k2) grid of model.sample(ks=...)
        draw("factor_grid.png", plots.factor_grid_figure, model, seed=seed)
    x_obs = torch.as_tensor(group(idata, "observed_data")["x"].values[:1000])
    with eval_mode(model):
        parts = model.kl_parts(x_obs)
    if parts:
        draw("kl.png", plots.kl_figure, parts)
    plots.arviz_figures(idata, target / "arviz_posterior.png", target / "arviz_ppc.png")
    written += ["arviz_posterior.png", "arviz_ppc.png"]
    return written


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _log_likelihood_lines(idata) -> list:
    ll = group(idata, "log_likelihood")
    if ll is None:
        return []
    values = np.asarray(ll["x"].values, dtype=float)
    per_point = logsumexp(values.reshape(-1, values.shape[-1]), axis=0) - np.log(values.shape[0] * values.shape[1])
    se = per_point.std(ddof=1) / np.sqrt(len(per_point)) if len(per_point) > 1 else float("nan")
    return ["", f"Importance-weighted log p(x) on these {len(per_point)} (training) points: {per_point.mean():.4f} "
            f"+- {se:.4f} nats per point ({ll.attrs.get('iw_samples', '')} samples per point and draw; "
            "`mixvae evaluate RUN --data HELD_OUT` gives it on held-out data)."]


def _point_value_lines(idata) -> list:
    """The point-value globals as a table (they are parameters, not draws: no distribution to plot); pi drawn
    from q(pi) (VaDE's Dirichlet prior) as the mean and sd of its draws beside them."""
    const = group(idata, "constant_data")
    names = (const.attrs.get("point_estimates", "") if const is not None else "").split()
    if not names:
        return []
    drawn = "pi" not in names
    if drawn:
        draws = group(idata, "posterior")["pi"]
        pi, pi_sd = draws.mean(("chain", "draw")).values, draws.std(("chain", "draw")).values
    else:
        pi = const["pi"].values
    lines = ["", "## Point values of the global parameters", "",
             "These are parameters (point values, not posterior draws; `constant_data` in `posterior.nc`)"
             + ("; pi has a posterior, q(pi) = Dir(c): the mean and sd of its draws in `posterior`." if drawn else "."),
             "", f"| cluster | {'E_q[pi] (sd)' if drawn else 'pi'} | mean of mu_c | mean of sigma_c |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {pi[k]:.4f}{f' ({pi_sd[k]:.4f})' if drawn else ''} | {const['mu_c'].values[k].mean():.4f} | "
              f"{const['sigma_c'].values[k].mean():.4f} |" for k in range(len(pi))]
    return lines


def _summary(run: Path, cfg: dict, metrics: dict, idata, figures: list) -> str:
    definitions = {**MORE_DEFINITIONS, **DEFINITIONS, **metrics.get("definitions", {})}
    post = group(idata, "posterior")
    estimate = post.attrs.get("estimate", "")
    lines = [f"# Report: {run.name}", "",
             f"`{cfg['model']}` on `{cfg['data']}` (split `{cfg.get('split', 'all')}`), K = {cfg.get('clusters')}.", "",
             *([f"**Incomplete**: {metrics.get('stopped')}; the metrics are those of its last checkpoint.", ""]
               if metrics.get("complete") is False else []),
             "## Metrics", "", "| metric | value | definition |", "| --- | --- | --- |"]
    for key, value in metrics.items():
        if key in ("definitions", "pretrain") or isinstance(value, dict):
            continue
        lines.append(f"| `{key}` | {_fmt(value)} | {definitions.get(key, '')} |")
    pretrain = metrics.get("pretrain") or {}
    if pretrain:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in pretrain.items())
        lines += ["", f"After pretraining (before SVI): {shown}."]
    cp = group(idata, "cluster_posterior")
    labels = group(idata, "constant_data")
    if labels is not None and "labels" in labels:
        assignment = cp["assignment"].values
        if assignment.ndim == 2:
            assignment = assignment[:, 0]
        gamma = cp["responsibilities"].values
        gamma = gamma[:, 0] if gamma.ndim == 3 else gamma
        gamma = gamma[:, np.isfinite(gamma).all(0)]
        again = clustering_metrics(gamma, labels["labels"].values)
        lines += ["", f"Recomputed from `posterior.nc` on its {len(assignment)} points: "
                  + ", ".join(f"{k} {again[k]:.4f}" for k in ("acc", "nmi", "ari"))]
    lines += _log_likelihood_lines(idata) + _point_value_lines(idata)
    lines += ["", "## Figures", ""]
    lines += [f"- [{name}]({name}): {FIGURES.get(name, '')}" for name in figures]
    lines += ["", "## Posterior data", "",
              "`posterior.nc` (open with `arviz.from_netcdf`, or `pyro_mixvae.analysis.load_inference_data`):",
              f"`posterior` holds {estimate} (global sites: `{post.attrs.get('global_sites', '') or 'none'}`; "
              f"local sites: `{post.attrs.get('local_sites', '')}`); `log_likelihood` the importance-weighted "
              "log p(x_n) per draw (`az.loo`, `az.waic` and `az.compare` need several draws of the globals); "
              "`posterior_predictive` and `observed_data` the replicated and observed `x` (`az.plot_ppc`);",
              "per-point `responsibilities`, `assignment`, `entropy` and `z_loc` in `cluster_posterior`,",
              "`x_cluster` in `cluster_predictive` and the per-epoch history in `training_history`. Dims: "
              + ", ".join(f"`{d}` {n}" for d, n in {**post.sizes, **cp.sizes}.items() if d not in ("chain",)) + ".",
              "", "## Config", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)
