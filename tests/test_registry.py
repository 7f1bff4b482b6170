"""A new model is its file plus one registration (issue 33).

The model below is written here as a user would write it in a file of their own -- a VaDE whose
components are Student-t (VaDE's one hook for the components' family; the guide
guides/write-your-own-mixture-model.md writes such a model from scratch) --
and registered with :func:`pyro_mixvae.models.register`, touching nothing else. The command line
(``mixvae fit``, ``settings``, ``report``), the scikit-learn estimator (scikit-learn's own
``check_estimator``) and its numpydoc then follow from the registry.
"""
from __future__ import annotations

import inspect
import json

import numpy as np
import pyro.distributions as dist
import pytest
from sklearn.utils.estimator_checks import check_estimator

from pyro_mixvae.cli import main
from pyro_mixvae.estimator import ESTIMATORS, estimator_for
from pyro_mixvae.models import MODELS, Setting, VaDE, register
from pyro_mixvae.models.base import positive


class StudentTVaDE(VaDE):
    """c ~ Cat(pi), z | c ~ StudentT(nu, mu_c, sigma_c), x | z ~ p_theta(x | z); VaDE's guide and start."""

    name = "student-t-vade"
    settings = {**VaDE.settings, "nu": Setting(float, 3.0, "degrees of freedom of the components", positive)}

    def component_distribution(self, loc, scale):
        return dist.StudentT(self.hparams["nu"], loc, scale)


TINY = ["--epochs", "2", "--pretrain-epochs", "2", "--set", "hidden=16", "--set", "latent_dim=2",
        "--set", "gmm_assign=diag", "--set", "hold_start=0", "--quiet", "--device", "cpu"]


@pytest.fixture
def registered():
    register(StudentTVaDE)
    try:
        yield StudentTVaDE.name
    finally:
        MODELS.pop(StudentTVaDE.name, None)
        ESTIMATORS.pop(StudentTVaDE.name, None)


def test_the_command_line_fits_reports_and_lists_a_registered_model(registered, tmp_path, blobs_npz, capsys):
    out = tmp_path / "run"
    assert main(["fit", registered, "--data", str(blobs_npz), "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == registered and config["settings"]["nu"] == 3.0
    assert json.loads((out / "metrics.json").read_text())["complete"] is True
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "summary.md").is_file() and (out / "report" / "posterior.nc").is_file()
    capsys.readouterr()
    assert main(["settings", registered, "--data", str(blobs_npz)]) == 0
    assert "degrees of freedom of the components" in capsys.readouterr().out


def test_its_estimator_passes_scikit_learns_checks(registered):
    cls = estimator_for(registered)
    assert cls.__name__ == "StudentTVaDEEstimator" and cls is estimator_for(registered)
    params = inspect.signature(cls).parameters
    assert params["nu"].default == 3.0 and params["epochs"].default is None
    assert "nu : float, default=3.0" in cls.__doc__
    check_estimator(cls(n_clusters=3, epochs=1, device="cpu", latent_dim=2, hidden=(8,), pretrain_epochs=1,
                        gmm_restarts=1, gmm_assign="diag"))


def test_a_model_whose_settings_shadow_the_estimators_parameters_is_refused(registered):
    class Clash(StudentTVaDE):
        name = "clash"
        settings = {**StudentTVaDE.settings, "epochs": Setting(int, 3, "not a model setting")}

    register(Clash)
    try:
        with pytest.raises(TypeError, match="epochs"):
            estimator_for("clash")
    finally:
        MODELS.pop("clash", None)


def test_estimator_for_an_unknown_model_names_the_known_ones():
    with pytest.raises(Exception, match="vade"):
        estimator_for("no-such-model")
    assert np.all([estimator_for(name).model_name == name for name in ("vade", "gmvae", "vib-gmm", "factorial")])


def test_the_registered_model_draws_its_own_components(registered):
    """The story is the new one: z | c is Student-t in the model's trace, and pi, mu_c, sigma_c are VaDE's."""
    import torch
    from pyro import poutine

    from pyro_mixvae.models import build

    m = build(registered, (6,), 3, "bernoulli", {"hidden": (8,), "latent_dim": 2, "nu": 4.0})
    trace = poutine.trace(poutine.enum(m.model, first_available_dim=-2)).get_trace(torch.rand(5, 6).round(), 5)
    z = trace.nodes["z"]["fn"]
    assert isinstance(z.base_dist, dist.StudentT) and bool((z.base_dist.df == 4.0).all())
    assert m.responsibilities(torch.rand(5, 6)).shape == (5, 3)
