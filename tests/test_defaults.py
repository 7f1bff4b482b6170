"""A model's defaults agree wherever a user meets them: ``mixvae settings MODEL --json``, what
``mixvae fit`` records in ``config.json``, and what the scikit-learn estimator trains with.

Nothing is trained: the start of training (pretraining included) is replaced by a run of no epochs,
and TrainConfig.for_model is watched to see the values the estimator used.
"""
import json

import numpy as np
import pytest

from pyro_mixvae import estimator as estimators
from pyro_mixvae.cli import main
from pyro_mixvae.infer import train as train_module
from pyro_mixvae.infer.train import TRAIN_DEFAULTS, TrainConfig

ESTIMATORS = {"vade": estimators.VaDE, "gmvae": estimators.GMVAE, "vib-gmm": estimators.VIBGMM,
              "factorial": estimators.FactorialMixtureVAE}


@pytest.fixture
def no_training(monkeypatch):
    """No pretraining and no epochs; returns the list of TrainConfigs that for_model filled in."""
    filled, real = [], TrainConfig.for_model

    def recording(self, model, num_data=None):
        filled.append(real(self, model, num_data))
        return filled[-1]

    def no_epochs(run, pretrain, progress):
        run.start, run.last_epoch = 1, 0

    monkeypatch.setattr(TrainConfig, "for_model", recording)
    monkeypatch.setattr(train_module, "_start", no_epochs)
    return filled


def _data(tmp_path, dim):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, dim)).astype(np.float32) + np.repeat(np.arange(3), 20)[:, None] * 4
    path = tmp_path / f"data{dim}.npz"
    np.savez(path, x=x, y=np.repeat(np.arange(3), 20))
    return path, x


@pytest.mark.parametrize("name,dim", [("vade", 6), ("vib-gmm", 6), ("factorial", 6), ("gmvae", 6), ("gmvae", 2)])
def test_settings_fit_and_estimator_agree_on_every_default(name, dim, no_training, tmp_path, capsys):
    path, x = _data(tmp_path, dim)
    assert main(["settings", name, "--data", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["train"]) == set(TRAIN_DEFAULTS)

    assert main(["fit", name, "--data", str(path), "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"]) == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: recorded["train"][k] for k in TRAIN_DEFAULTS} == shown["train"]
    assert recorded["settings"] == shown["settings"]

    est = ESTIMATORS[name](n_clusters=3, device="cpu").fit(x)
    used = no_training[-1]
    assert {k: getattr(used, k) for k in TRAIN_DEFAULTS} == shown["train"]
    assert json.loads(json.dumps(est.model_.construction()["settings"])) == shown["settings"]


def test_the_shown_defaults_follow_the_model_and_the_data(tmp_path, capsys):
    """Not a copy of one table: GMVAE's depend on its architecture, pretraining on the data's size."""
    shown = {}
    for name, dim in [("vade", 6), ("gmvae", 6), ("gmvae", 2)]:
        path, _ = _data(tmp_path, dim)
        main(["settings", name, "--data", str(path), "--json"])
        shown[name, dim] = json.loads(capsys.readouterr().out)["train"]
    assert shown["gmvae", 2]["epochs"] == 200 and shown["gmvae", 2]["pretrain_epochs"] == 0  # fc120 on 2-D data
    assert shown["gmvae", 2]["lr_warmup"] == 0 and shown["gmvae", 6]["lr_warmup"] == TRAIN_DEFAULTS["lr_warmup"]
    assert shown["gmvae", 6]["pretrain_epochs"] > 0
    assert shown["vade", 6]["pretrain_epochs"] * 1 >= 300  # 60 points, one step per epoch: at least 300 steps


def test_the_small_data_schedule_is_one_unit():
    """Below SMALL_DATA points VaDE's schedule is 100 epochs decaying every 5; from there up, or when a
    value of that schedule is given, the papers' 200 epochs decaying every 10."""
    from pyro_mixvae.infer.train import SMALL_DATA
    from pyro_mixvae.models import build

    vade = build("vade", (6,), 3, "gaussian", {"hidden": (8,)})
    schedule = lambda cfg, n: (lambda c: (c.epochs, c.lr_step))(cfg.for_model(vade, num_data=n))  # noqa: E731
    assert schedule(TrainConfig(device="cpu"), SMALL_DATA - 1) == (100, 5)
    assert schedule(TrainConfig(device="cpu"), SMALL_DATA) == (200, 10)
    assert schedule(TrainConfig(device="cpu", epochs=200), 1797) == (200, 10)
    assert schedule(TrainConfig(device="cpu", lr_step=10), 1797) == (200, 10)
