"""Posterior analysis: a trained model as ArviZ data that ArviZ's functions accept.

:func:`to_inference_data` turns any model of the package (or one of your own with the hooks of
:class:`~pyro_mixvae.models.base.MixtureVAE`) and a data set into ArviZ data built with
``arviz.from_dict``, with the groups

==========================  ===================================================================
group                       what it holds (dims after ``chain``, ``draw``)
==========================  ===================================================================
``posterior``               genuine draws only. The guide's global sites where it has a q over
                            them (the factorial prior: ``pi_i`` ~ Dir(c_i) over ``cluster_i``; a
                            NormalGamma site ``xi_i`` as its parts ``mu_i``, ``alpha_i`` over
                            ``(cluster_i, latent_dim)``: one variable per factor, so unequal K_i
                            need no padding), and the local latents of the guide, q(z | x) (and
                            q(w | x) for GMVAE), for the first ``local_points`` points (``z``
                            over ``(local_obs, z_dim)``). S = ``num_samples`` draws.
``constant_data``           global parameters that are point values (VaDE, VIB-GMM: ``pi``,
                            ``mu_c``, ``sigma_c``; GMVAE: its beta-net's components at w = 0),
                            named in the attribute ``point_estimates``; ``labels (obs)`` when
                            the data have labels (never used in training).
``log_likelihood``          ``x (obs)``: the importance-weighted log p(x_n | theta_g)
                            (:func:`pyro_mixvae.evaluation.importance_log_likelihood`) per draw
                            theta_g of the posterior's globals (the same draws), or one draw
                            where the globals are point values.
``posterior_predictive``    ``x (obs, *data dims)``: x_rep ~ p(x | z), z ~ q(z | x_n) (stock
                            ``pyro.infer.Predictive``), ``ppc_samples`` draws.
``observed_data``           ``x (obs, *data dims)``: the same name and dims (``az.plot_ppc``).
``cluster_predictive``      ``x_cluster (cluster, *data dims)``: E[x | z], z drawn from cluster k
                            (of factor 0) -- ``model.sample(S, cluster=k)``.
``cluster_posterior``       per point, no draws: ``responsibilities (obs, [factor,] cluster)``
                            = q(c | x), ``assignment (obs[, factor])`` = argmax, ``entropy``
                            = -sum_k q log q in nats, ``z_loc (obs, [factor,] latent_dim)`` = E q(z|x)
                            (NaN where a factor has fewer clusters than the widest).
``training_history``        one variable per column of ``history.jsonl``, dim ``epoch``.
==========================  ===================================================================

``az.summary``, ``az.plot_posterior``, ``az.plot_ppc`` run on every model; ``az.loo``,
``az.waic`` and ``az.compare`` need several draws of the globals, i.e. the factorial prior
(for the others compare held-out log-likelihoods: :mod:`pyro_mixvae.selection`). ``obs`` holds
the indices of the points in the data (a random subset when ``max_points`` is smaller than N).

ArviZ 0.2x (an ``InferenceData``) and ArviZ >= 1.0 (an ``xarray.DataTree``) are both
supported: :func:`save_netcdf` and :func:`load_inference_data` write and read either.
:func:`~pyro_mixvae.plots.sample_figure` (what ``mixvae sample`` draws) and the other figures live
in :mod:`pyro_mixvae.plots`.
"""
from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive

from .distributions import NormalGamma
from .errors import ConfigError
from .evaluation import DEFAULT_IW_SAMPLES, _enumerated, _guide_trace, _split_sites, draw_globals, importance_log_likelihood
from .infer.train import History
from .nets import eval_mode

DEFAULT_DRAWS = 100  # draws of the global sites and of q(z | x) per point (and, in a report, per cluster)
REPORT_MAX_POINTS = 2000  # the points a report keeps in posterior.nc and its figures (mixvae report --max-points)
POINT_ESTIMATE = "point values of parameters (one draw, not a posterior distribution)"
DRAWS_ESTIMATE = "draws from the guide's variational posterior q"
LOCAL_ESTIMATE = ("draws of the local latents from q(z | x) only; the global parameters are point values "
                  "(constant_data)")


def import_arviz():
    """The ``arviz`` module, imported on first use: only posterior analysis needs it, and with xarray it
    would add to every start-up of the package and the CLI."""
    with warnings.catch_warnings():  # arviz 0.2x announces its refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def _unwrap(model, history):
    """An estimator (``model_``, ``history_``) or a model; returns (module, records)."""
    if hasattr(model, "model_"):
        history = history if history is not None else getattr(model, "history_", None)
        model = model.model_
    if isinstance(history, History):
        history = history.records
    return model, list(history or [])


def _as_arrays(data, y):
    """(x float32 with images as (N, C, H, W), y or None) from a Dataset, an array or a tensor."""
    if hasattr(data, "x"):
        y = data.y if y is None else y
        data = data.x
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    x = np.asarray(data, dtype=np.float32)
    x = x[:, None] if x.ndim == 3 else x
    return x, (None if y is None else np.asarray(y))


def data_dims(shape) -> list:
    """Dim names of one data point: ``feature`` for vectors, ``channel, row, col`` for images."""
    if len(shape) == 1:
        return ["feature"]
    if len(shape) == 3:
        return ["channel", "row", "col"]
    return [f"x_dim_{i}" for i in range(len(shape))]


def _stack_factors(per_factor: list, k_max: int) -> np.ndarray:
    """[(S, K_i, ...)] -> (S, K, ...) for one factor, else (S, I, k_max, ...) padded with NaN."""
    arrays = [np.asarray(a, dtype=np.float64) for a in per_factor]
    if len(arrays) == 1:
        return arrays[0]
    out = np.full((arrays[0].shape[0], len(arrays), k_max) + arrays[0].shape[2:], np.nan)
    for i, a in enumerate(arrays):
        out[:, i, : a.shape[1]] = a
    return out


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


@torch.no_grad()
def to_inference_data(model, data, *, y=None, history=None, num_samples: int = DEFAULT_DRAWS,
                      max_points: Optional[int] = None, seed: int = 0, batch_size: int = 1000,
                      iw_samples: int = DEFAULT_IW_SAMPLES, ppc_samples: int = 10, local_points: int = 100):
    """ArviZ data of a trained ``model`` (or estimator) on ``data``; see the module docstring.

    :param data: a :class:`~pyro_mixvae.data.Dataset`, an array or a tensor of shape (N, ...).
    :param y: labels (default: ``data.y`` when ``data`` is a Dataset).
    :param history: a :class:`~pyro_mixvae.infer.History` or its records (default: an estimator's).
    :param num_samples: S, the posterior draws (globals where they have a q, local latents) and per cluster.
    :param max_points: keep a random subset of this many points (``obs`` records which).
    :param iw_samples: importance samples per point and draw for ``log_likelihood`` (0: no such group).
    :param ppc_samples: draws of ``posterior_predictive``.
    :param local_points: the first points of ``obs`` whose q(z | x) draws go into ``posterior``.
    :param seed: seeds the draws and the subset; the global RNG is left as it was.
    """
    az = import_arviz()
    model, records = _unwrap(model, history)
    x, y = _as_arrays(data, y)
    if min(num_samples, ppc_samples, local_points) < 1 or iw_samples < 0:
        raise ConfigError(f"num_samples, ppc_samples and local_points must be >= 1 and iw_samples >= 0; got "
                          f"{num_samples}, {ppc_samples}, {local_points}, {iw_samples}")
    obs = np.arange(len(x))
    if max_points is not None and len(x) > max_points:
        obs = np.sort(np.random.default_rng(seed).choice(len(x), int(max_points), replace=False))
        x, y = x[obs], (None if y is None else y[obs])
    device = next(iter(model.parameters()), torch.zeros(())).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), eval_mode(model):
        torch.manual_seed(seed)
        xt = torch.as_tensor(x, device=device)
        draws = _draws(model, xt, obs, num_samples, ppc_samples, local_points, iw_samples, seed)
        cluster_posterior = _cluster_posterior(model, xt, obs, batch_size)
    ddims = data_dims(x.shape[1:])
    groups, dims, coords = draws["groups"], draws["dims"], draws["coords"]
    groups["observed_data"] = {"x": x}
    dims["x"] = ["obs"] + ddims
    coords["obs"] = obs
    if y is not None:
        groups.setdefault("constant_data", {})["labels"] = y
        dims["labels"] = ["obs"]
    root = {"model": model.name, "n_clusters": int(model.n_clusters), "factors": len(model.prior_components()),
            "likelihood": str(model.likelihood_name), "data_shape": list(x.shape[1:]),
            "estimate": draws["estimate"], "num_samples": int(num_samples)}
    idata = _from_dict(az, groups, coords, dims, root, draws["attrs"])
    _add_group(idata, "cluster_predictive", _cluster_predictive(model, num_samples, ddims))
    _add_group(idata, "cluster_posterior", cluster_posterior)
    if records:
        _add_group(idata, "training_history", _history_dataset(records))
    return idata


def _draws(model, xt, obs, num_samples, ppc_samples, local_points, iw_samples, seed) -> dict:
    """The groups with draws: posterior, constant_data (point values), log_likelihood, posterior_predictive."""
    n_local = min(local_points, len(xt))
    global_values = draw_globals(model, xt, num_samples)
    trace = _local_draws(model, xt[:n_local], num_samples, global_values)
    groups, dims, coords = {"posterior": {}}, {}, {"local_obs": obs[:n_local]}
    chains = _chains(num_samples)
    for name, value in global_values.items():
        _add_global(groups["posterior"], dims, name, value, trace.nodes[name]["fn"], chains)
    for site in _split_sites(trace)[1]:
        groups["posterior"][site["name"]] = _numpy(site["value"]).reshape((chains, -1, n_local, site["value"].shape[-1]))
        dims[site["name"]] = ["local_obs", f"{site['name']}_dim"]
    estimate = DRAWS_ESTIMATE if global_values else LOCAL_ESTIMATE
    attrs = {"posterior": {"estimate": estimate, "global_sites": " ".join(global_values),
                           "local_sites": " ".join(s["name"] for s in _split_sites(trace)[1])}}
    points = _point_values(model, dims)
    if points:  # the globals that are parameters: their point values, outside posterior
        groups["constant_data"] = points
        attrs["constant_data"] = {"estimate": POINT_ESTIMATE, "point_estimates": " ".join(points)}
    if iw_samples > 0:
        ll = importance_log_likelihood(model, xt, num_samples=iw_samples, seed=seed,
                                       global_values=global_values or None)
        groups["log_likelihood"] = {"x": ll.pointwise.reshape((chains if global_values else 1, -1, len(xt)))}
        attrs["log_likelihood"] = {"x": f"importance-weighted log p(x_n | theta_g), {iw_samples} samples of "
                                        "q(z | x) per point and draw; one draw where the globals are point values",
                                   "iw_samples": int(iw_samples)}
    groups["posterior_predictive"] = {"x": _replicates(model, xt, ppc_samples)[None]}
    attrs["posterior_predictive"] = {"x": "x_rep ~ p(x | z), z ~ q(z | x_n) (pyro.infer.Predictive)"}
    return {"groups": groups, "dims": dims, "coords": coords, "attrs": attrs, "estimate": estimate}


def _local_draws(model, x, num_samples: int, global_values: dict):
    """A trace of the guide with S draws on ``x`` (plate dim -3); its globals replaced by ``global_values``."""
    guide = poutine.condition(model.guide, data=global_values) if global_values else model.guide
    with pyro.validation_enabled(False):
        return _guide_trace(guide, x, "posterior_draws", num_samples, -3)


def _chains(num_samples: int) -> int:
    """The S independent draws from q split into 4 (or 2) "chains", so that ArviZ's split R-hat is defined."""
    return next(c for c in (4, 2, 1) if num_samples % c == 0 and num_samples // c >= 4 or c == 1)


def _add_global(posterior: dict, dims: dict, name: str, value, fn, chains: int) -> None:
    """A global site's draws; a NormalGamma site (``xi_i``: [..., 0] mu, [..., 1] alpha) as ``mu_i``, ``alpha_i``."""
    value = _numpy(value)
    value = value.reshape((chains, -1) + value.shape[3:])
    suffix = name.rsplit("_", 1)[-1] if "_" in name else ""
    cluster = f"cluster_{suffix}" if suffix.isdigit() else "cluster"
    base = getattr(fn, "base_dist", fn)
    if isinstance(base, NormalGamma):
        for j, part in enumerate(("mu", "alpha")):
            key = f"{part}_{suffix}" if suffix else part
            posterior[key] = value[..., j]
            dims[key] = [cluster, "latent_dim"]
        return
    posterior[name] = value
    dims[name] = ([cluster] if isinstance(base, dist.Dirichlet) else []) + \
        [f"{name}_dim_{i}" for i in range(value.ndim - 2 - isinstance(base, dist.Dirichlet))]


def _point_values(model, dims: dict) -> dict:
    """constant_data: those of pi, mu_c, sigma_c (:meth:`prior_components`, factor 0: point-value models have
    one) that the model names in ``point_value_sites``, the globals without a q to draw from."""
    values = dict(zip(("pi", "mu_c", "sigma_c"), (_numpy(t).astype(np.float64) for t in model.prior_components()[0])))
    shapes = {"pi": ["cluster"], "mu_c": ["cluster", "latent_dim"], "sigma_c": ["cluster", "latent_dim"]}
    kept = {name: value for name, value in values.items() if name in model.point_value_sites}
    dims.update({name: shapes[name] for name in kept})
    return kept


def _replicates(model, xt, ppc_samples: int) -> np.ndarray:
    """(S, N, *data shape) x_rep ~ p(x | z), z ~ q(z | x_n): stock ``Predictive`` on the unconditioned model."""
    guide = poutine.block(model.guide, hide_fn=_enumerated)
    predictive = Predictive(poutine.uncondition(model.model), guide=guide, num_samples=ppc_samples,
                            parallel=True, return_sites=["x"])
    with pyro.validation_enabled(False):
        parts = [predictive(xb)["x"] for xb in xt.split(1000)]
    return _numpy(torch.cat(parts, 1)).reshape((ppc_samples, len(xt)) + tuple(xt.shape[1:]))


def _cluster_predictive(model, num_samples: int, ddims: list):
    """``x_cluster (chain, draw, cluster, *data dims)``: E[x | z], z drawn from cluster k of factor 0."""
    K = model.n_clusters
    pp = torch.stack([model.sample(num_samples, cluster=k)[0] for k in range(K)], 1)
    pp = _numpy(pp)
    pp = pp.reshape((1, num_samples, K) + pp.shape[2:])
    return _dataset({"x_cluster": (["chain", "draw", "cluster"] + ddims, pp)},
                    {"chain": [0], "draw": np.arange(num_samples), "cluster": np.arange(K)},
                    {"x_cluster": "E[x | z], z drawn from cluster k (of factor 0)"})


def _cluster_posterior(model, xt, obs, batch_size: int):
    """Responsibilities, assignment, entropy and E q(z|x) per point (no draws)."""
    gammas = [torch.cat(parts) for parts in
              zip(*(model.factor_responsibilities(xb) for xb in xt.split(batch_size)))]
    z = _numpy(torch.cat([model.latent_means(xb) for xb in xt.split(batch_size)]))
    components = model.prior_components()
    factors, k_max = len(gammas), max(g.shape[1] for g in gammas)
    lead = ["factor"] if factors > 1 else []
    gamma = _stack_factors([_numpy(g) for g in gammas], k_max)  # (N, [I,] K), NaN padded: N plays the role of S
    filled = np.nan_to_num(gamma, nan=0.0)
    entropy = -(np.where(filled > 0, filled * np.log(np.where(filled > 0, filled, 1.0)), 0.0)).sum(-1)
    blocks = [c[1].shape[-1] for c in components]
    if factors > 1 and len(set(blocks)) == 1 and z.shape[1] == sum(blocks):
        z = z.reshape(len(z), factors, blocks[0])
    zdims = ["obs"] + lead + ["latent_dim"] if z.ndim == 2 + (factors > 1) else ["obs", "z_dim"]
    coords = {"obs": obs, "cluster": np.arange(k_max), "factor": np.arange(factors)}
    return _dataset(
        {"responsibilities": (["obs"] + lead + ["cluster"], gamma),
         "assignment": (["obs"] + lead, filled.argmax(-1)),
         "entropy": (["obs"] + lead, entropy),
         "z_loc": (zdims, z)},
        coords, {"responsibilities": "q(c | x) per point (the model's responsibilities)", "entropy_units": "nats"})


def _from_dict(az, groups, coords, dims, root_attrs, group_attrs):
    """``arviz.from_dict`` with the keyword style of ArviZ 0.2x or the nested dict of ArviZ >= 1."""
    used = {d for v in dims.values() for d in v}
    coords = {k: v for k, v in coords.items() if k in used}
    if "posterior" in inspect.signature(az.from_dict).parameters:  # arviz < 1: InferenceData
        kwargs = {f"{g}_attrs": {**root_attrs, **a} for g, a in group_attrs.items()}
        idata = az.from_dict(**groups, coords=coords, dims=dims, attrs=root_attrs, **kwargs)
        for g, a in group_attrs.items():  # from_dict takes no attrs for some groups (constant_data)
            if g in idata.groups():
                idata[g].attrs.update(a)
        return idata
    attrs = {"/": root_attrs, **{g: {**root_attrs, **a} for g, a in group_attrs.items() if g in groups}}
    return az.from_dict(groups, coords=coords, dims=dims, attrs=attrs)  # arviz >= 1: DataTree


def _dataset(variables: dict, coords: dict, attrs: dict):
    import xarray as xr  # here, as arviz: only posterior analysis needs it

    used = {d for dims, _ in variables.values() for d in dims}
    return xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used}, attrs=attrs)


def _add_group(idata, name: str, dataset) -> None:
    """Add a group without draws (``InferenceData.add_groups`` in ArviZ 0.2x, a DataTree child in >= 1)."""
    if hasattr(idata, "add_groups"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            idata.add_groups({name: dataset})
    else:
        import xarray as xr  # here, as arviz: only posterior analysis needs it

        idata[name] = xr.DataTree(dataset)


def _history_dataset(records: list):
    keys = [k for k in dict.fromkeys(k for r in records for k in r)
            if k != "epoch" and all(isinstance(r.get(k, 0.0), (int, float)) for r in records)]
    epochs = np.array([int(r.get("epoch", i + 1)) for i, r in enumerate(records)])
    variables = {k: (["epoch"], np.array([np.nan if r.get(k) is None else float(r[k]) for r in records]))
                 for k in keys}
    return _dataset(variables, {"epoch": epochs}, {"source": "history.jsonl: one record per SVI epoch"})


def group(idata, name: str):
    """Group ``name`` as an ``xarray.Dataset`` (ArviZ 0.2x InferenceData or >= 1 DataTree); None if absent."""
    if hasattr(idata, "groups") and callable(idata.groups) and name not in idata.groups():
        return None
    try:
        node = idata[name]
    except KeyError:
        return None
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def save_netcdf(idata, path) -> Path:
    """Write ``idata`` to ``path`` (netCDF 4, via h5netcdf) atomically: a temporary file, then a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        idata.to_netcdf(str(tmp), engine="h5netcdf")  # InferenceData (arviz 0.2x) and DataTree (>= 1) alike
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_inference_data(path):
    """Read what :func:`save_netcdf` wrote, fully loaded into memory (the file is closed)."""
    az = import_arviz()
    reader = getattr(az, "from_netcdf", None)
    if reader is None:  # pragma: no cover - arviz >= 1 without from_netcdf
        import xarray as xr  # here, as arviz: only posterior analysis needs it

        return xr.open_datatree(str(path), engine="h5netcdf").load()
    if hasattr(az, "rc_context") and "data.load" in az.rcParams:  # arviz 0.2x reads lazily by default
        with az.rc_context({"data.load": "eager"}):
            return reader(str(path))
    data = reader(str(path))
    return data.load() if hasattr(data, "load") else data


__all__ = ["DRAWS_ESTIMATE", "LOCAL_ESTIMATE", "POINT_ESTIMATE", "data_dims", "group", "load_inference_data",
           "save_netcdf", "to_inference_data"]
