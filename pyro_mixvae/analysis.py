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
:func:`sample_figure` (what ``mixvae sample`` draws) and the other figures live in
:mod:`pyro_mixvae.plots`.
"""
from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import ConfigError
from .infer.train import History
from .nets import eval_mode
from .plots import sample_figure  # noqa: F401  (re-exported: ``mixvae sample`` draws it)

POINT_ESTIMATE = "point values of parameters (one draw, not a posterior distribution)"
DRAWS_ESTIMATE = "draws from the guide's variational posterior q"


def _arviz():
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
def to_inference_data(model, data, *, y=None, history=None, num_samples: int = 100,
                      max_points: Optional[int] = None, seed: int = 0, batch_size: int = 1000):
    """ArviZ data of a trained ``model`` (or estimator) on ``data``; see the module docstring.

    :param data: a :class:`~pyro_mixvae.data.Dataset`, an array or a tensor of shape (N, ...).
    :param y: labels (default: ``data.y`` when ``data`` is a Dataset).
    :param history: a :class:`~pyro_mixvae.infer.History` or its records (default: an estimator's).
    :param num_samples: S, the draws of the global sites (when they have a q) and per cluster.
    :param max_points: keep a random subset of this many points (``obs`` records which).
    :param seed: seeds the draws and the subset; the global RNG is left as it was.
    """
    az = _arviz()
    model, records = _unwrap(model, history)
    x, y = _as_arrays(data, y)
    if num_samples < 1:
        raise ConfigError(f"num_samples must be >= 1; got {num_samples}")
    obs = np.arange(len(x))
    if max_points is not None and len(x) > max_points:
        obs = np.sort(np.random.default_rng(seed).choice(len(x), int(max_points), replace=False))
        x, y = x[obs], (None if y is None else y[obs])
    device = next(iter(model.parameters()), torch.zeros(())).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), eval_mode(model):
        torch.manual_seed(seed)
        xt = torch.as_tensor(x, device=device)
        gammas = [torch.cat(parts) for parts in
                  zip(*(model.factor_responsibilities(xb) for xb in xt.split(batch_size)))]
        z_loc = torch.cat([model.latent_means(xb) for xb in xt.split(batch_size)])
        globals_ = model.global_posterior(num_samples)
        components = model.prior_components()
        n_clusters = gammas[0].shape[1]
        predictive = torch.stack([model.sample(num_samples, cluster=k)[0] for k in range(n_clusters)], 1)

    factors = len(gammas)
    k_max = max(g.shape[1] for g in gammas)
    lead = ["factor"] if factors > 1 else []
    coords = {"cluster": np.arange(k_max), "obs": obs}
    if factors > 1:
        coords["factor"] = np.arange(factors)
    dims, posterior = {}, {}
    for name in globals_[0]:
        per_factor = [_numpy(g[name]) for g in globals_]
        value = _stack_factors(per_factor, k_max)
        posterior[name] = value[None]  # one chain
        extra = per_factor[0].ndim - 2
        dims[name] = lead + ["cluster"] + (["latent_dim"] if extra == 1 else [f"{name}_dim_{i}" for i in range(extra)])
    coords["latent_dim"] = np.arange(components[0][1].shape[-1])  # kept only where a variable uses it

    ddims = data_dims(x.shape[1:])
    dims["x"] = ["obs"] + ddims
    dims["x_cluster"] = ["cluster"] + ddims
    dims["labels"] = ["obs"]
    pp = _numpy(predictive).reshape((num_samples, n_clusters) + x.shape[1:])
    if k_max > n_clusters:  # factor 0 has fewer components than the widest factor
        pad = np.full((num_samples, k_max - n_clusters) + x.shape[1:], np.nan, dtype=pp.dtype)
        pp = np.concatenate([pp, pad], 1)
    groups = {"posterior": posterior, "posterior_predictive": {"x_cluster": pp[None]}, "observed_data": {"x": x}}
    if y is not None:
        groups["constant_data"] = {"labels": y}
    estimate = POINT_ESTIMATE if model.globals_are_point_values else DRAWS_ESTIMATE
    root = {"model": model.name, "n_clusters": int(model.n_clusters), "factors": factors,
            "likelihood": str(model.likelihood_name), "data_shape": list(x.shape[1:]),
            "global_sites": " ".join(posterior), "estimate": estimate, "num_samples": int(num_samples)}
    group_attrs = {"posterior": {"estimate": estimate, "global_sites": " ".join(posterior)},
                   "posterior_predictive": {"x_cluster": "E[x | z], z drawn from cluster k (of factor 0)"}}
    idata = _from_dict(az, groups, coords, dims, root, group_attrs)

    gamma = _stack_factors([_numpy(g) for g in gammas], k_max)  # (N, [I,] K): N plays the role of S
    filled = np.nan_to_num(gamma, nan=0.0)
    entropy = -(np.where(filled > 0, filled * np.log(np.where(filled > 0, filled, 1.0)), 0.0)).sum(-1)
    blocks = [c[1].shape[-1] for c in components]
    z = _numpy(z_loc)
    if factors > 1 and len(set(blocks)) == 1 and z.shape[1] == sum(blocks):
        z = z.reshape(len(z), factors, blocks[0])
    zdims = ["obs"] + lead + ["latent_dim"] if z.ndim == 2 + (factors > 1) else ["obs", "z_dim"]
    cluster_posterior = _dataset(
        {"responsibilities": (["obs"] + lead + ["cluster"], gamma),
         "assignment": (["obs"] + lead, filled.argmax(-1)),
         "entropy": (["obs"] + lead, entropy),
         "z_loc": (zdims, z)},
        {k: v for k, v in coords.items() if k != "latent_dim" or "latent_dim" in zdims},
        {"responsibilities": "q(c | x) per point (the model's responsibilities)", "entropy_units": "nats"})
    _add_group(idata, "cluster_posterior", cluster_posterior)
    if records:
        _add_group(idata, "training_history", _history_dataset(records))
    return idata


def _from_dict(az, groups, coords, dims, root_attrs, group_attrs):
    """``arviz.from_dict`` with the keyword style of ArviZ 0.2x or the nested dict of ArviZ >= 1."""
    used = {d for v in dims.values() for d in v}
    coords = {k: v for k, v in coords.items() if k in used}
    if "posterior" in inspect.signature(az.from_dict).parameters:  # arviz < 1: InferenceData
        kwargs = {f"{g}_attrs": {**root_attrs, **a} for g, a in group_attrs.items()}
        return az.from_dict(**groups, coords=coords, dims=dims, attrs=root_attrs, **kwargs)
    attrs = {"/": root_attrs, **{g: {**root_attrs, **a} for g, a in group_attrs.items() if g in groups}}
    return az.from_dict(groups, coords=coords, dims=dims, attrs=attrs)  # arviz >= 1: DataTree


def _dataset(variables: dict, coords: dict, attrs: dict):
    import xarray as xr

    used = {d for dims, _ in variables.values() for d in dims}
    return xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used}, attrs=attrs)


def _add_group(idata, name: str, dataset) -> None:
    """Add a group without draws (``InferenceData.add_groups`` in ArviZ 0.2x, a DataTree child in >= 1)."""
    if hasattr(idata, "add_groups"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            idata.add_groups({name: dataset})
    else:
        import xarray as xr

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
    az = _arviz()
    reader = getattr(az, "from_netcdf", None)
    if reader is None:  # pragma: no cover - arviz >= 1 without from_netcdf
        import xarray as xr

        return xr.open_datatree(str(path), engine="h5netcdf").load()
    if hasattr(az, "rc_context") and "data.load" in az.rcParams:  # arviz 0.2x reads lazily by default
        with az.rc_context({"data.load": "eager"}):
            return reader(str(path))
    data = reader(str(path))
    return data.load() if hasattr(data, "load") else data


__all__ = ["DRAWS_ESTIMATE", "POINT_ESTIMATE", "data_dims", "group", "load_inference_data", "sample_figure",
           "save_netcdf", "to_inference_data"]
