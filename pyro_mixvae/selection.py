"""Choosing K (and the model) without labels: held-out log-likelihood and stability across restarts.

:func:`select_n_clusters` (``mixvae select``) trains every candidate -- each model in
``models``, each K in ``ks``, ``restarts`` seeds each -- on the same training part of X and
measures, without labels,

* ``heldout_ll``: the importance-weighted log p(x_n) per held-out point
  (:func:`pyro_mixvae.evaluation.importance_log_likelihood`) of the restart with the best
  training ELBO (the one ``mixvae fit --restarts`` keeps), averaged over points, in nats;
  ``heldout_ll_restart_sd`` is the spread of that average over the restarts;
* ``paired_se``: the standard error of the mean per-point difference to the best candidate,
  sqrt(var_n(d_n) / N) with d_n = ll_best(x_n) - ll(x_n) -- the per-point scale of
  ``az.compare``'s ``dse`` (which is N times this), paired because all candidates see the same points;
* ``stability``: the mean adjusted Rand index over all pairs of restarts of their assignments
  of every point (1 = the restarts agree up to relabelling), with ``stability_se`` = sd / sqrt(pairs);
* ``effective_components`` (the factorial prior): the mean over restarts of the components whose
  Dirichlet pseudo-count exceeds the prior's by more than one point (factor 0).

The rule (:func:`choose`): the most stable candidate (the restarts agree on the clustering best),
the held-out log-likelihood deciding between candidates whose stability is within
``stability_tie`` of the highest (default 0: exact ties, e.g. several K at ARI 1). The
likelihood alone tends to keep rising with K (more components describe each group's shape in
latent space), so it is not trusted to stop by itself; stability alone favours merges that every
restart makes (small K). A restart that leaves a component empty disagrees with the others and
lowers the stability of its K, right or wrong; the reason warns where that happened. Each candidate's
numbers are saved in ``out_dir/candidates/`` as it finishes, so a rerun skips what is done.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from tqdm.auto import tqdm

from .data import check_data
from .errors import ConfigError, RunError
from .runner import as_model_input, check_components, check_seed
from .runs import data_fingerprint
from .evaluation import (DEFAULT_GLOBAL_DRAWS, DEFAULT_IW_SAMPLES, elbo_per_point, importance_log_likelihood,
                         predict_proba)
from .infer.train import TrainConfig, fit, seed_everything
from .models import get_model_class
from .models.base import parse_settings
from .nets import resolve_likelihood

STABILITY_TIE = 0.0
CANDIDATES = "candidates"


@dataclass
class Selection:
    """What :func:`select_n_clusters` returns: one row per (model, K), the choice and its reason."""

    table: list
    chosen: dict
    reason: str
    heldout_points: int
    runs: list = field(default_factory=list)

    def to_frame(self):
        """The table as a ``pandas.DataFrame``."""
        import pandas as pd  # here: pandas is not one of this package's own dependencies

        return pd.DataFrame(self.table)


def split_holdout(n: int, fraction: float, seed: int):
    """(train indices, held-out indices): a random ``fraction`` of the n points held out."""
    if not 0 < fraction < 1:
        raise ConfigError(f"the held-out fraction must be in (0, 1); got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_out = max(1, int(round(fraction * n)))
    if n - n_out < 2:
        raise ConfigError(f"holding out {fraction} of {n} points leaves fewer than 2 to train on")
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def _train_candidate(job: dict, model_name: str, k: int, restart: int) -> dict:
    """Train one candidate on the training part; its held-out log-likelihood, assignments and ELBO."""
    seed = job["seed"] + restart
    seed_everything(seed)
    cls = get_model_class(model_name)
    model = cls(job["x"].shape[1:], k, job["likelihood"], **job["settings"][model_name])
    check_components(model, len(job["x_train"]), "components")
    fit(model, job["x_train"], config=replace(job["config"], seed=seed), progress=False)
    x_out = torch.as_tensor(job["x_out"], device=job["device"])
    ll = importance_log_likelihood(model, x_out, num_samples=job["iw_samples"], num_draws=job["global_draws"],
                                   seed=seed)
    x_all = torch.as_tensor(job["x"], device=job["device"])
    out = {"heldout_ll": ll.marginal, "heldout_mc_se": ll.mc_se,
           "assignment": predict_proba(model, x_all).argmax(1).cpu().numpy(),
           "train_elbo": np.array(elbo_per_point(model, torch.as_tensor(job["x_train"], device=job["device"])))}
    if hasattr(model, "effective_components"):
        out["effective_components"] = np.array(model.effective_components()[0])
    return out


# what a saved candidate depends on besides its model, K and restart (the TrainConfig fields that change results)
TRAIN_IDENTITY = ("epochs", "pretrain_epochs", "batch_size", "lr", "lr_decay", "lr_step", "lr_warmup", "num_particles")


def candidate_identity(job: dict, model_name: str) -> dict:
    """What a candidate of ``model_name`` was computed from: the data's fingerprint, the held-out split, the
    likelihood, the model's settings, the training values and the importance sampling. Saved with it, and a
    saved candidate is reused only when this is unchanged."""
    config = asdict(job["config"])
    return {"data_fingerprint": job["fingerprint"], "holdout": job["holdout"], "seed": job["seed"],
            "likelihood": job["likelihood"], "settings": _jsonable(job["settings"][model_name]),
            "train": {k: config[k] for k in TRAIN_IDENTITY}, "iw_samples": job["iw_samples"],
            "global_draws": job["global_draws"]}


def _jsonable(value):
    """``value`` as JSON reads it back (tuples as lists)."""
    return json.loads(json.dumps(value))


def _differences(saved: dict, now: dict, prefix: str = "") -> list:
    """'key saved -> now' for every leaf that differs (hashes shortened)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            short = (lambda v: v[:12]) if isinstance(a, str) and isinstance(b, str) and len(a) == 64 else (lambda v: v)
            out.append(f"{prefix}{key} {short(a)} -> {short(b)}")
    return out


def _load_candidate(path: Path, identity: dict) -> dict:
    """A saved candidate's arrays, refused in one line when it was computed from other data or settings."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
        saved_identity = json.loads(str(arrays.pop("identity"))) if "identity" in arrays else None
    except Exception as e:  # np.load and json raise several kinds on a damaged file
        raise RunError(f"{path} is damaged ({' '.join(str(e).split())[:100]}); remove it to compute the "
                       "candidate again") from None
    where = f"{path.parent.parent} holds a selection"
    if saved_identity is None:
        raise RunError(f"cannot reuse {path}: it does not record the data and settings it was made with (an earlier "
                       f"mixvae); choose another --out or remove {path.parent}")
    diff = _differences(saved_identity, identity)
    if diff:
        raise RunError(f"cannot reuse {path}: {where} made with other data or settings ({'; '.join(diff[:4])}); "
                       f"choose another --out or remove {path.parent}")
    return arrays


def _candidate(job: dict, model_name: str, k: int, restart: int) -> dict:
    """One candidate's arrays: read from ``out_dir/candidates`` when there (and made from the same data and
    settings), else trained and saved there with what it was made from (:func:`candidate_identity`)."""
    path = None if job["out_dir"] is None else job["out_dir"] / CANDIDATES / f"{model_name}-k{k}-r{restart}.npz"
    identity = candidate_identity(job, model_name)
    if path is not None and path.is_file():
        return _load_candidate(path, identity)
    out = _train_candidate(job, model_name, k, restart)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, **out, identity=np.array(json.dumps(identity, sort_keys=True)))
        tmp.replace(path)
    return out


def _stability(assignments: list) -> tuple:
    """Mean pairwise ARI of the restarts' assignments and its standard error (NaN for one restart)."""
    scores = [adjusted_rand_score(a, b) for a, b in itertools.combinations(assignments, 2)]
    if not scores:
        return float("nan"), float("nan")
    se = float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0
    return float(np.mean(scores)), se


def _row(model_name: str, k: int, runs: list, y) -> dict:
    """Aggregate the restarts of one (model, K)."""
    per_restart = np.stack([r["heldout_ll"] for r in runs])  # (R, N)
    ll = per_restart.mean(0)  # per point, averaged over the restarts
    means = [float(r["heldout_ll"].mean()) for r in runs]
    stability, stability_se = _stability([r["assignment"] for r in runs])
    row = {"model": model_name, "k": k, "heldout_ll": float(ll.mean()),
           "heldout_ll_best_restart": float(runs[int(np.argmax([r["train_elbo"] for r in runs]))]["heldout_ll"].mean()),
           "restart_sd": float(np.std(means, ddof=1)) if len(runs) > 1 else 0.0,
           "mc_se": float(np.sqrt(np.mean([(r["heldout_mc_se"] ** 2).sum() for r in runs]) / len(runs)) / len(ll)),
           "stability": stability, "stability_se": stability_se,
           "train_elbo": float(np.mean([r["train_elbo"] for r in runs])),
           "clusters_used": float(np.mean([len(np.unique(r["assignment"])) for r in runs])),
           "pointwise": per_restart}
    if "effective_components" in runs[0]:
        row["effective_components"] = float(np.mean([r["effective_components"] for r in runs]))
    if y is not None:  # reported only; never used by the choice
        row["ari_labels"] = float(np.mean([adjusted_rand_score(y, r["assignment"]) for r in runs]))
    return row


def _add_paired_se(rows: list) -> None:
    """Per row: the difference to the best held-out log-likelihood and its standard error, paired twice:
    over the held-out points (``paired_se`` = sqrt(var_n(d_n) / N), d_n averaged over restarts; N times it
    is ``az.compare``'s ``dse``) and over
    the restarts (restart r of every candidate starts from seed + r, so the pretraining is shared:
    sqrt(var_r(d_r) / R), d_r averaged over points); ``diff_se`` combines the two."""
    best = max(rows, key=lambda r: r["heldout_ll"])
    for row in rows:
        r = min(len(best["pointwise"]), len(row["pointwise"]))
        d = best["pointwise"][:r] - row["pointwise"][:r]  # (R, N)
        row["ll_diff"] = float(best["heldout_ll"] - row["heldout_ll"])
        points = float(d.mean(0).std() / np.sqrt(d.shape[1]))  # ddof 0, as az.compare
        restarts = float(d.mean(1).std(ddof=1) / np.sqrt(r)) if r > 1 else 0.0
        row["paired_se"] = points
        row["diff_se"] = float(np.sqrt(points ** 2 + restarts ** 2))


def _name(row) -> str:
    return f"{row['model']} K={row['k']}"


def choose(rows: list, se_factor: float = 2.0, stability_tie: float = STABILITY_TIE) -> tuple:
    """(chosen row, reason), without labels: among the most stable candidates (mean pairwise ARI of
    restarts within ``stability_tie`` of the highest) the best held-out log-likelihood. With one
    restart (no stability): the smallest K within ``se_factor`` SE of the best held-out log-likelihood."""
    best = max(rows, key=lambda r: r["heldout_ll"])
    plausible = [r for r in rows if r["ll_diff"] <= se_factor * r["diff_se"]]
    said = (f"the best held-out log-likelihood is {_name(best)} ({best['heldout_ll']:.3f} nats per point); "
            f"within {se_factor:g} SE of it: " + ", ".join(_name(r) for r in plausible))
    if any(np.isnan(r["stability"]) for r in rows):
        chosen = min(plausible, key=lambda r: (r["k"], r["ll_diff"]))
        return chosen, f"{_name(chosen)}: {said}; one restart per candidate (no stability): the smallest of those K."
    top = max(r["stability"] for r in rows)
    stable = [r for r in rows if r["stability"] >= top - stability_tie]
    why = (f"the most stable (mean pairwise ARI of restarts within {stability_tie:g} of the highest, {top:.3f}): "
           + ", ".join(f"{_name(r)} ({r['stability']:.3f})" for r in stable))
    chosen = max(stable, key=lambda r: r["heldout_ll"])
    gap = "" if chosen is best else f" ({chosen['ll_diff']:.3f} +- {chosen['diff_se']:.3f} nats below the best)"
    return chosen, (f"{_name(chosen)}: {why}; of these the best held-out log-likelihood{gap}. For comparison, "
                    f"{said}.{_empty_components(rows)}")


def _empty_components(rows: list) -> str:
    """A warning where restarts left components empty: a failed restart disagrees with the others, so it
    lowers the stability of its K whether or not that K is right. Not for a prior that prunes
    components by design (the factorial prior's Dirichlet: ``effective_components``)."""
    empty = [r for r in rows if r.get("clusters_used", r["k"]) < r["k"] and "effective_components" not in r]
    if not empty:
        return ""
    return (" Warning: restarts left components empty at " + ", ".join(
        f"{_name(r)} ({r['clusters_used']:.1f} used on average)" for r in empty)
        + "; such restarts lower the stability of their K, so the choice may change with more restarts or "
          "longer training.")


def _check(ks, models, restarts: int, n: int) -> list:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > n:
        raise ConfigError(f"every K must be between 1 and the number of training points ({n}); got {ks}")
    if restarts < 1:
        raise ConfigError(f"restarts must be >= 1; got {restarts}")
    if not models:
        raise ConfigError("no model to select from")
    for name in models:
        if ks[0] < get_model_class(name).min_clusters:
            raise ConfigError(f"model {name!r} needs K >= {get_model_class(name).min_clusters}; the grid starts at {ks[0]}")
    return ks


def select_n_clusters(X, ks: Sequence[int] = tuple(range(2, 11)), *, models: Sequence[str] = ("vade",),
                      restarts: int = 3, holdout: float = 0.2, se_factor: float = 2.0,
                      stability_tie: float = STABILITY_TIE, settings: Optional[dict] = None,
                      config: Optional[TrainConfig] = None, likelihood: str = "auto", iw_samples: int = DEFAULT_IW_SAMPLES,
                      global_draws: int = DEFAULT_GLOBAL_DRAWS, seed: int = 0, out_dir=None, y=None,
                      progress: bool = True) -> Selection:
    """Train the grid ``models`` x ``ks`` x ``restarts`` on X less a held-out ``holdout`` fraction and
    choose K by :func:`choose`; see the module docstring. ``settings`` maps a model name to its
    settings (``{"vade": {"latent_dim": 5}}``); ``config`` sets the training (epochs, lr, ...;
    seeds are ``seed + restart``); ``y`` only adds ``ari_labels`` to the table. With ``out_dir``
    each finished candidate is saved there and found again on a rerun -- only when made from the same data,
    split and settings (a candidate made otherwise is refused in one line, never reused)."""
    if iw_samples < 1 or not se_factor >= 0:
        raise ConfigError(f"iw samples must be >= 1 and the SE factor >= 0; got {iw_samples} and {se_factor}")
    if not stability_tie >= 0:
        raise ConfigError(f"the stability tie must be >= 0; got {stability_tie}")
    check_seed(seed, "seed")
    x = as_model_input(X)
    lik = resolve_likelihood(likelihood, x)
    check_data(x, likelihood=lik)
    train, held = split_holdout(len(x), holdout, seed)
    ks = _check(ks, models, restarts, len(train))
    given = settings or {}
    job = {"x": x, "x_train": x[train], "x_out": x[held], "likelihood": lik, "seed": seed, "holdout": holdout,
           "fingerprint": data_fingerprint(x),
           "settings": {m: parse_settings(m, get_model_class(m).settings, given.get(m, {})) for m in models},
           "config": replace((config or TrainConfig()).check(), eval_every=10 ** 9), "iw_samples": iw_samples, "global_draws": global_draws,
           "out_dir": None if out_dir is None else Path(out_dir)}
    job["device"] = torch.device(job["config"].device)
    grid = [(m, k, r) for m in models for k in ks for r in range(restarts)]
    done = {}
    for m, k, r in tqdm(grid, desc="select: candidates", disable=not progress):
        done[m, k, r] = _candidate(job, m, k, r)
    rows = [_row(m, k, [done[m, k, r] for r in range(restarts)], y) for m in models for k in ks]
    _add_paired_se(rows)
    chosen, reason = choose(rows, se_factor, stability_tie)
    table = [{key: v for key, v in row.items() if key != "pointwise"} for row in rows]
    return Selection(table, {key: v for key, v in chosen.items() if key != "pointwise"}, reason, len(held))


def write_selection(selection: Selection, out_dir, command: str = "") -> Path:
    """``out_dir/selection.json``, ``selection.png`` and ``selection.md``; returns the markdown's path."""
    from .plots import selection_figure  # here: plots loads matplotlib, which choosing K does not need

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection.json").write_text(json.dumps(
        {"table": selection.table, "chosen": selection.chosen, "reason": selection.reason,
         "heldout_points": selection.heldout_points, "command": command}, indent=2) + "\n")
    selection_figure(selection.table, out / "selection.png", chosen=selection.chosen)
    (out / "selection.md").write_text(_markdown(selection, command))
    return out / "selection.md"


COLUMNS = ("model", "k", "heldout_ll", "ll_diff", "diff_se", "paired_se", "restart_sd", "mc_se",
           "heldout_ll_best_restart", "stability",
           "stability_se", "effective_components", "clusters_used", "train_elbo", "ari_labels")


def _markdown(selection: Selection, command: str) -> str:
    cols = [c for c in COLUMNS if any(c in row for row in selection.table)]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["# Choosing K", "", f"`{command}`" if command else "", "",
             f"**Chosen: {selection.chosen['model']} with K = {selection.chosen['k']}.** {selection.reason}", "",
             f"Held-out log-likelihood: importance-weighted log p(x) per point on {selection.heldout_points} "
             "held-out points (nats), of the restart with the best training ELBO; `ll_diff` and `paired_se`: the difference to the "
             "best and its paired standard error; `mc_se`: Monte-Carlo error; `stability`: mean pairwise ARI "
             "of the restarts' assignments. Labels (`ari_labels`, when given) are reported only.", "",
             "![selection](selection.png)", "", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in cols) + " |" for row in selection.table]
    return "\n".join(lines) + "\n"


__all__ = ["Selection", "choose", "select_n_clusters", "split_holdout", "write_selection"]
