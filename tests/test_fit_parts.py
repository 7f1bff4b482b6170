"""The training loop in small parts (issue 18, item 5): function lengths, a run directory written from
Python that the command line reads, a second ``fit`` that continues, restarts chosen by the training ELBO."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_mixvae.cli import main
from pyro_mixvae.evaluation import elbo_per_point
from pyro_mixvae.infer import TrainConfig, fit, seed_everything
from pyro_mixvae.models import VaDE
from pyro_mixvae.runner import fit_best, fit_in_directory
from pyro_mixvae.synthetic import make_unit_blobs

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 50


def _long_functions(path):
    tree = ast.parse((ROOT / path).read_text())
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_LINES]


@pytest.mark.parametrize("path", ["pyro_mixvae/infer/train.py", "pyro_mixvae/cli.py", "pyro_mixvae/runner.py",
                                  "pyro_mixvae/infer/callbacks.py", "pyro_mixvae/estimator.py"])
def test_no_function_is_longer_than_fifty_lines(path):
    assert _long_functions(path) == []


def _model(seed=0):
    seed_everything(seed)
    return VaDE((8,), 3, "bernoulli", hidden=(16, 16), latent_dim=2, gmm_restarts=1)


def _cfg(epochs):
    return TrainConfig(epochs=epochs, pretrain_epochs=2, batch_size=30, device="cpu", seed=3, lr_step=2)


def test_fit_from_python_writes_a_run_directory_that_evaluate_and_report_read(tmp_path, capsys):
    blobs = make_unit_blobs(90, 8, 3)
    x, y = blobs.x, blobs.y
    model = _model()
    out = tmp_path / "run"
    history = fit_in_directory(model, x, y, out, config=_cfg(2), progress=False).history
    for name in ("config.json", "checkpoint.pt", "history.jsonl", "metrics.json", "data.npz"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "vade" and cfg["clusters"] == 3 and cfg["train"]["epochs"] == 2
    assert cfg["data"] == str((out / "data.npz").resolve())
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert evaluated["complete"] is True and evaluated["acc"] == metrics["acc"] == history.last()["acc"]
    assert main(["report", str(out), "--num-samples", "2", "--max-points", "30"]) == 0
    assert (out / "report" / "summary.md").is_file()


def test_a_second_fit_continues_the_run_without_pretraining_again(tmp_path, monkeypatch):
    blobs = make_unit_blobs(90, 8, 3)
    x, y = blobs.x, blobs.y
    straight = _model()
    fit(straight, x, y, config=_cfg(4), progress=False)

    twice = _model()
    fit_in_directory(twice, x, y, tmp_path / "run", config=_cfg(2), progress=False)
    calls = []
    monkeypatch.setattr(VaDE, "pretrain", lambda self, *a, **k: calls.append(1) or {})
    history = fit_in_directory(twice, x, y, tmp_path / "run", config=_cfg(2), progress=False).history  # 2 epochs more, same dir
    assert calls == []  # neither the autoencoder nor the mixture's initialisation ran again
    assert [r["epoch"] for r in history.records] == [1, 2, 3, 4]
    for (name, a), (_, b) in zip(straight.state_dict().items(), twice.state_dict().items()):
        assert torch.equal(a, b), name  # two calls of 2 epochs are one call of 4
    lines = [json.loads(s) for s in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 4
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["complete"] is True

    fresh = _model()
    fit(fresh, x, y, config=_cfg(1), pretrain=False, progress=False)  # explicit: SVI from the parameters as built
    assert calls == []
    fit(fresh, x, y, config=_cfg(1), pretrain=True, progress=False)  # explicit: a new run, pretrained
    assert calls == [1]


def test_restarts_through_the_orchestrator_keep_the_best_training_elbo():
    blobs = make_unit_blobs(90, 8, 3, seed=2)
    x, y = blobs.x, blobs.y

    def build(seed):
        return _model(seed), {}

    best, results = fit_best(build, x, y, seeds=[0, 1, 2], config=_cfg(1))
    assert [r["seed"] for r in results] == [0, 1, 2]
    again = [elbo_per_point(r["model"], torch.as_tensor(x)) for r in results]  # an independent evaluation
    np.testing.assert_allclose([r["elbo"] for r in results], again, rtol=0, atol=0.5)
    assert best == int(np.argmax([r["elbo"] for r in results]))
    assert len(set(np.round(again, 3))) == 3  # three different runs, so the choice is a real one
