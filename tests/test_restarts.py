"""Restarts chosen without labels: ``mixvae fit --restarts R`` and the estimators' ``n_init``."""
import json

import numpy as np

from conftest import TINY
from pyro_mixvae import VaDE
from pyro_mixvae.cli import main

FAST = ["--epochs", "2", "--pretrain-epochs", "1", "--batch-size", "40", "--quiet", "--device", "cpu"] + TINY


def test_cli_restarts_keep_the_best_training_elbo_and_resume(tmp_path, blobs_npz):
    out = tmp_path / "run"
    assert main(["fit", "vade", "--data", str(blobs_npz), "--out", str(out), "--restarts", "3", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    elbos = [r["elbo"] for r in metrics["restarts"]]
    assert [r["seed"] for r in metrics["restarts"]] == [0, 1, 2]
    assert metrics["selected_restart"] == int(np.argmax(elbos)) and metrics["elbo"] == max(elbos)
    chosen = json.loads((out / f"restart-{metrics['selected_restart']}" / "metrics.json").read_text())
    assert chosen["acc"] == metrics["acc"]
    assert (out / "checkpoint.pt").read_bytes() == (out / f"restart-{metrics['selected_restart']}" / "checkpoint.pt").read_bytes()
    assert main(["evaluate", str(out)]) == 0
    # an interrupted set: restart 2 lost; --resume trains only what is missing
    (out / "metrics.json").unlink()
    import shutil

    shutil.rmtree(out / "restart-2")
    before = (out / "restart-0" / "metrics.json").read_text()
    assert main(["fit", "vade", "--data", str(blobs_npz), "--out", str(out), "--restarts", "3", "--resume", *FAST]) == 0
    assert (out / "restart-0" / "metrics.json").read_text() == before
    assert len(json.loads((out / "metrics.json").read_text())["restarts"]) == 3


def test_estimator_n_init_selects_by_elbo_not_labels(blobs_npz):
    d = np.load(blobs_npz)
    x, y = d["x"], d["y"]
    kw = dict(n_init=2, epochs=2, pretrain_epochs=1, hidden=(16,), latent_dim=2, gmm_restarts=1)
    with_labels = VaDE(3, **kw).fit(x, y)
    without = VaDE(3, **kw).fit(x)
    assert len(with_labels.restarts_) == 2 and "acc" in with_labels.restarts_[0]
    elbos = [r["elbo"] for r in without.restarts_]
    assert without.best_restart_ == int(np.argmax(elbos)) == with_labels.best_restart_
    assert np.array_equal(with_labels.predict(x), without.predict(x))
