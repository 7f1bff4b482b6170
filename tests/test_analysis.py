"""ArviZ export, figures and ``mixvae report`` on a run of every model type."""
import warnings

import matplotlib.image
import numpy as np
import pytest

from pyro_mixvae.analysis import POINT_ESTIMATE, DRAWS_ESTIMATE, group, load_inference_data, to_inference_data
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
          "arviz_posterior.png", "arviz_forest.png"}
GLOBALS = {"vade": ["pi", "mu_c", "sigma_c"], "vib-gmm": ["pi", "mu_c", "sigma_c"], "gmvae": ["pi", "mu_c", "sigma_c"],
           "factorial": ["pi", "mu", "alpha"]}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """One tiny run and its report per model type, on a labelled .npz the package never saw."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.1, 0.9, size=(3, 12))
    y = np.repeat(np.arange(3), 40)
    x = np.clip(centres[y] + 0.03 * rng.standard_normal((120, 12)), 0, 1).astype(np.float32)
    data = root / "blobs.npz"
    np.savez(data, x=x, y=y)
    out = {}
    for name, extra in MODELS.items():
        run = root / name
        assert main(["fit", name, "--data", str(data), *FAST, *extra, "--out", str(run)]) == 0
        assert main(["report", str(run), "--num-samples", "30"]) == 0
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
    assert set(GLOBALS[name]) <= set(post.data_vars)
    factorial = name == "factorial"
    assert post.attrs["estimate"] == (DRAWS_ESTIMATE if factorial else POINT_ESTIMATE)
    assert post.sizes["draw"] == (30 if factorial else 1)
    assert post["pi"].dims == ("chain", "draw") + (("factor",) if factorial else ()) + ("cluster",)
    assert post[GLOBALS[name][1]].dims[-2:] == ("cluster", "latent_dim")
    cp = group(idata, "cluster_posterior")
    assert cp["responsibilities"].dims == ("obs",) + (("factor",) if factorial else ()) + ("cluster",)
    assert cp.sizes["obs"] == 120 and list(cp["obs"].values[:3]) == [0, 1, 2]
    gamma = cp["responsibilities"].values
    assert np.allclose(np.nansum(gamma, -1), 1.0, atol=1e-4)
    assert group(idata, "observed_data")["x"].dims == ("obs", "feature")
    assert group(idata, "constant_data")["labels"].sizes["obs"] == 120
    assert group(idata, "posterior_predictive")["x_cluster"].dims == ("chain", "draw", "cluster", "feature")
    assert group(idata, "training_history").sizes["epoch"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, var_names=GLOBALS[name], kind="stats")
    for site in GLOBALS[name]:
        assert any(str(row).startswith(site + "[") for row in table.index), site
    if factorial:  # the globals come from q: pi_0 ~ Dir(c) has the mean c / sum(c) and a spread
        model, _ = load_run(reports[name])
        c = model.mixtures[0].c.numpy()
        means = post["pi"].sel(factor=0).mean(("chain", "draw")).values
        assert np.allclose(means, c / c.sum(), atol=0.1)
        assert np.isnan(post["pi"].sel(factor=1, cluster=2)).all()  # factor 1 has 2 components: padding


def test_point_values_are_the_models_parameters_and_a_subset_keeps_its_indices(reports):
    model, _ = load_run(reports["vade"])
    x = group(load_inference_data(reports["vade"] / "report" / "posterior.nc"), "observed_data")["x"].values
    idata = to_inference_data(model, x, num_samples=5, max_points=50, seed=1)
    log_pi, loc, scale = (t.detach().numpy() for t in model.mixture())
    assert np.allclose(idata.posterior["mu_c"].values[0, 0], loc, atol=1e-6)
    assert np.allclose(idata.posterior["pi"].values[0, 0], np.exp(log_pi), atol=1e-6)
    cp = group(idata, "cluster_posterior")
    obs = cp["obs"].values
    assert len(obs) == 50 and np.all(np.diff(obs) > 0)
    assert np.allclose(group(idata, "observed_data")["x"].values, x[obs])
    assert group(idata, "constant_data") is None and group(idata, "training_history") is None


def test_report_refuses_what_is_not_a_run_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixvae: error:") and "\n" not in err and "run directory" in err
