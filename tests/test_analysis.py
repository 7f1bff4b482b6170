"""ArviZ export, figures and ``mixvae report`` on a run of every model type; ArviZ's own functions on them."""
import json
import warnings

import matplotlib.image
import matplotlib.pyplot
import numpy as np
import pytest
import torch

from pyro_mixvae.analysis import (DRAWS_ESTIMATE, LOCAL_ESTIMATE, POINT_ESTIMATE, group, load_inference_data,
                                  to_inference_data)
from pyro_mixvae.evaluation import importance_log_likelihood
from pyro_mixvae.cli import main
from pyro_mixvae.runs import load_run

warnings.simplefilter("ignore", FutureWarning)
import arviz as az  # noqa: E402

FAST = ["--epochs", "2", "--pretrain-epochs", "1", "--batch-size", "40", "--quiet", "--device", "cpu",
        "--set", "hidden=16"]
MODELS = {
    "vade": ["--set", "latent_dim=3"],
    "vib-gmm": ["--set", "latent_dim=2"],
    "gmvae": ["--set", "latent_dim=3", "--set", "w_dim=2", "--set", "beta_hidden=8", "--guide", "mean-field"],
    "factorial": ["--set", "dim=2", "--set", "factors=2", "--set", "components=3,2", "--set", "gmm_restarts=1",
                  "--set", "prior_init_iters=1"],
}
ALWAYS = {"posterior.nc", "summary.md", "training.png", "latent.png", "samples.png", "collapse.png", "confusion.png",
          "arviz_posterior.png", "arviz_ppc.png"}
# the point values in constant_data, or the draws from q in posterior (one variable per factor: K = 3 and 2)
POINT = ["pi", "mu_c", "sigma_c"]
DRAWN = ["pi_0", "mu_0", "alpha_0", "pi_1", "mu_1", "alpha_1"]
LOCALS = {"vade": ["z"], "vib-gmm": ["z"], "gmvae": ["w", "z"], "factorial": ["z_0", "z_1"]}


@pytest.fixture(scope="module")
def reports(tmp_path_factory, blobs_npz):
    """One tiny run and its report per model type, on a labelled .npz the package never saw."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in MODELS.items():
        run = root / name
        assert main(["fit", name, "--data", str(blobs_npz), *FAST, *extra, "--out", str(run)]) == 0
        assert main(["report", str(run), "--num-samples", "32", "--iw-samples", "10"]) == 0
        out[name] = run
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_report_writes_every_file_and_real_images(reports, name):
    report = reports[name] / "report"
    expected = ALWAYS | ({"factor_grid.png", "kl.png"} if name == "factorial" else set())
    assert {p.name for p in report.iterdir()} == expected
    for png in report.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png.name
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 50 and image.shape[1] > 50 and image.shape[0] < 5000, (png.name, image.shape)
        assert image[..., :3].std() > 0.01, f"{png.name} is blank"
    summary = (report / "summary.md").read_text()
    assert "Hungarian" in summary and "| `acc` |" in summary and "```json" in summary
    for png in expected - {"posterior.nc", "summary.md"}:
        assert f"]({png})" in summary


@pytest.mark.parametrize("name", list(MODELS))
def test_posterior_nc_reopens_with_named_dims_and_summary_rows(reports, name):
    idata = load_inference_data(reports[name] / "report" / "posterior.nc")
    post = idata.posterior
    factorial = name == "factorial"
    assert set(LOCALS[name]) <= set(post.data_vars)
    assert post.attrs["estimate"] == (DRAWS_ESTIMATE if factorial else LOCAL_ESTIMATE)
    assert post.sizes["chain"] * post.sizes["draw"] == 32
    assert post[LOCALS[name][-1]].dims[2:] == ("local_obs", f"{LOCALS[name][-1]}_dim")
    if factorial:  # drawn globals, one variable per factor: no NaN padding for K = 3 and 2
        assert set(DRAWN) <= set(post.data_vars) and not set(POINT) & set(post.data_vars)
        assert post["pi_0"].dims == ("chain", "draw", "cluster_0") and post.sizes["cluster_1"] == 2
        assert post["mu_1"].dims[2:] == ("cluster_1", "latent_dim")
        assert all(np.isfinite(post[v].values).all() for v in post.data_vars)
    else:  # point values: kept out of posterior, named in constant_data's attributes
        const = group(idata, "constant_data")
        assert const.attrs["estimate"] == POINT_ESTIMATE and const.attrs["point_estimates"].split() == POINT
        assert not set(POINT) & set(post.data_vars)
    cp = group(idata, "cluster_posterior")
    assert cp["responsibilities"].dims == ("obs",) + (("factor",) if factorial else ()) + ("cluster",)
    assert cp.sizes["obs"] == 120 and list(cp["obs"].values[:3]) == [0, 1, 2]
    assert np.allclose(np.nansum(cp["responsibilities"].values, -1), 1.0, atol=1e-4)
    assert group(idata, "observed_data")["x"].dims == ("obs", "feature")
    assert group(idata, "posterior_predictive")["x"].dims[2:] == ("obs", "feature")
    assert group(idata, "log_likelihood")["x"].dims[2:] == ("obs",)
    assert group(idata, "constant_data")["labels"].sizes["obs"] == 120
    assert group(idata, "cluster_predictive")["x_cluster"].dims == ("chain", "draw", "cluster", "feature")
    assert group(idata, "training_history").sizes["epoch"] == 2
    if factorial:  # the globals come from q: pi_0 ~ Dir(c) has the mean c / sum(c) and a spread
        model, _ = load_run(reports[name])
        c = model.mixtures[0].c.numpy()
        assert np.allclose(post["pi_0"].mean(("chain", "draw")).values, c / c.sum(), atol=0.1)
        assert post["pi_0"].std(("chain", "draw")).values.min() > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_arviz_functions_run_and_summary_has_no_nan_diagnostics(reports, name):
    idata = load_inference_data(reports[name] / "report" / "posterior.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata)
        axes = az.plot_ppc(idata, num_pp_samples=5)
        assert np.ravel(axes)[0].get_figure() is not None
        post = idata.posterior  # every variable kind: drawn globals (unequal K) or local latents
        names = ["pi_0", "pi_1", "mu_1"] if name == "factorial" else LOCALS[name]
        az.plot_posterior(idata, var_names=names, coords={"local_obs": post["local_obs"].values[:1]}
                          if "local_obs" in post.dims and name != "factorial" else None)
        if name == "factorial":  # draws of the globals: pointwise LOO and WAIC, each below the in-sample
            # log predictive density sum_i log mean_s p(x_i | theta_s) (WAIC by its penalty, a sum of
            # variances; LOO as the harmonic mean of p(x_i | theta_s) is below their arithmetic mean)
            ll = idata.log_likelihood["x"].stack(sample=("chain", "draw")).values  # (obs, S)
            lppd = float((np.logaddexp.reduce(ll, axis=-1) - np.log(ll.shape[-1])).sum())
            for result in (az.loo(idata, pointwise=True), az.waic(idata, pointwise=True)):
                assert np.isfinite(result.iloc[0]) and result.iloc[0] <= lppd + 1e-6
    assert not table.isna().any().any(), table[table.isna().any(axis=1)]
    assert len(table) > 0 and (table["ess_bulk"] > 1).all()
    matplotlib.pyplot.close("all")


def test_log_likelihood_group_is_the_importance_weighted_estimate_per_draw(reports):
    """Factorial: log_likelihood[g] is log p(x | theta_g) at the posterior's own draw theta_g."""
    model, _ = load_run(reports["factorial"])
    x = group(load_inference_data(reports["factorial"] / "report" / "posterior.nc"), "observed_data")["x"].values
    idata = to_inference_data(model, x[:20], num_samples=8, iw_samples=200, seed=3)
    ll = idata.log_likelihood["x"].values.reshape(8, 20)
    ref = importance_log_likelihood(model, torch.as_tensor(x[:20]), num_samples=200, num_draws=8, seed=3)
    # the same draws of the globals give the same values up to the Monte-Carlo error of the z draws
    assert np.all(np.abs(ll.mean(0) - ref.pointwise.mean(0)) < 0.5)
    spread = ll.std(0)
    assert spread.max() > 1e-3  # the draws of the globals differ


def test_compare_two_factorial_runs(reports, tmp_path):
    """az.compare over two runs (the same points, different draws and seeds)."""
    model, _ = load_run(reports["factorial"])
    x = group(load_inference_data(reports["factorial"] / "report" / "posterior.nc"), "observed_data")["x"].values
    runs = {f"seed{s}": to_inference_data(model, x, num_samples=16, iw_samples=10, seed=s) for s in (0, 1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(runs, ic="loo")
    assert list(table.index) and set(table.index) == set(runs) and np.isfinite(table["elpd_loo"]).all()


def test_point_values_are_the_models_parameters_and_a_subset_keeps_its_indices(reports):
    model, _ = load_run(reports["vade"])
    x = group(load_inference_data(reports["vade"] / "report" / "posterior.nc"), "observed_data")["x"].values
    idata = to_inference_data(model, x, num_samples=5, max_points=50, seed=1, iw_samples=0)
    log_pi, loc, scale = (t.detach().numpy() for t in model.mixture())
    const = group(idata, "constant_data")
    assert np.allclose(const["mu_c"].values, loc, atol=1e-6)
    assert np.allclose(const["pi"].values, np.exp(log_pi), atol=1e-6)
    assert group(idata, "log_likelihood") is None
    cp = group(idata, "cluster_posterior")
    obs = cp["obs"].values
    assert len(obs) == 50 and np.all(np.diff(obs) > 0)
    assert np.allclose(group(idata, "observed_data")["x"].values, x[obs])
    assert "labels" not in const and group(idata, "training_history") is None


def test_report_refuses_what_is_not_a_run_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixvae: error:") and "\n" not in err and "run directory" in err


def test_evaluate_reports_held_out_log_likelihood(reports, tmp_path, capsys):
    """``mixvae evaluate RUN --data HELD_OUT``: the importance-weighted log p(x) with its standard errors."""
    rng = np.random.default_rng(5)
    x = np.clip(rng.uniform(0.1, 0.9, size=(30, 12)), 0, 1).astype(np.float32)
    np.savez(tmp_path / "held_out.npz", x=x)
    capsys.readouterr()
    assert main(["evaluate", str(reports["factorial"]), "--data", str(tmp_path / "held_out.npz"),
                 "--iw-samples", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["iw_samples"] == 20 and np.isfinite(out["log_likelihood"])
    assert 0 < out["log_likelihood_mc_se"] < out["log_likelihood_se"] < 5
    assert out["log_likelihood"] >= out["elbo"] - 3 * out["log_likelihood_mc_se"]
    assert main(["evaluate", str(reports["vade"]), "--iw-samples", "-1"]) == 2
