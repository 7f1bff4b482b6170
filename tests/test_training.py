"""The shared SVI loop: exact resume, the non-finite guard, shapes, estimators side by side."""
import json

import numpy as np
import pytest
import torch

from pyro_mixvae import VaDE as VaDEEstimator
from pyro_mixvae.errors import NonFiniteLossError
from pyro_mixvae.infer import TrainConfig, seed_everything
from pyro_mixvae.runner import fit_in_directory
from pyro_mixvae.models import VaDE
from pyro_mixvae.synthetic import make_unit_blobs
from wrapped_elbo import WrappedObjective


def _new_model(seed):
    seed_everything(seed)
    return VaDE((8,), 3, "bernoulli", hidden=(16, 16), latent_dim=2)


CFG = dict(epochs=4, pretrain_epochs=2, batch_size=32, device="cpu", seed=5, lr_step=2)


def test_resume_after_interruption_gives_the_same_parameters(tmp_path):
    blobs = make_unit_blobs(90, 8, 3)
    x, y = blobs.x, blobs.y
    cfg = TrainConfig(**CFG, jit=False)  # untraced throughout: an ELBO object passed in is never traced
    straight = _new_model(0)
    fit_in_directory(straight, x, y, tmp_path / "a", config=cfg, progress=False)

    class Interrupting(WrappedObjective):
        """The model's objective, interrupted in the middle of epoch 3."""

        def __init__(self, inner, at):
            super().__init__(inner)
            self.at = at

        def differentiable_loss(self, *args, **kwargs):
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return self.inner.differentiable_loss(*args, **kwargs)

    interrupted = _new_model(0)
    with pytest.raises(KeyboardInterrupt):
        fit_in_directory(interrupted, x, y, tmp_path / "b", config=cfg, progress=False,
            elbo=Interrupting(interrupted.make_elbo(), at=2 * 3 + 2))  # the model's objective
    resumed = _new_model(123)  # a different initialisation: everything must come from the checkpoint
    hist = fit_in_directory(resumed, x, y, tmp_path / "b", config=cfg, resume=True, progress=False).history

    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    lines = [json.loads(s) for s in (tmp_path / "b" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4] == [r["epoch"] for r in hist.records]
    ref = [json.loads(s) for s in (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
    key = "elbo" if "elbo" in ref[0] else "objective"  # "objective" while a held start adds its term
    assert [r[key] for r in lines] == [r[key] for r in ref]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    blobs = make_unit_blobs(90, 8, 3)
    x, y = blobs.x, blobs.y
    model = _new_model(0)

    class NaNAt(WrappedObjective):
        def __init__(self, inner, at):
            super().__init__(inner)
            self.at = at

        def differentiable_loss(self, *args, **kwargs):
            self.calls += 1
            loss = self.inner.differentiable_loss(*args, **kwargs)
            return loss * float("nan") if self.calls == self.at else loss

    from pyro_mixvae.infer.checkpoint import load_checkpoint

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1.*checkpoint \(epoch 1\)"):
        fit_in_directory(model, x, y, tmp_path, config=TrainConfig(**CFG, checkpoint_seconds=0), progress=False,
            elbo=NaNAt(model.make_elbo(), at=3 + 1))
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_shapes_of_guide_responsibilities_and_samples():
    import pyro.poutine as poutine

    m = VaDE((1, 8, 8), 4, "bernoulli", hidden=(16,), latent_dim=3)
    x = torch.rand(7, 1, 8, 8)
    tr = poutine.trace(m.guide).get_trace(x)
    assert tr.nodes["z"]["value"].shape == (7, 3)
    r = m.responsibilities(x)
    assert r.shape == (7, 4) and torch.allclose(r.sum(1), torch.ones(7))
    xs, c = m.sample(5)
    assert xs.shape == (5, 1, 8, 8) and c.shape == (5,)
    assert float(xs.min()) >= 0 and float(xs.max()) <= 1
    xs, c = m.sample(3, cluster=2)
    assert (c == 2).all()


def test_estimator_api_and_two_estimators_are_independent():
    blobs = make_unit_blobs(90, 8, 3, seed=1)
    x, y = blobs.x, blobs.y
    kw = dict(hidden=(16, 16), latent_dim=2, epochs=3, pretrain_epochs=3, batch_size=30, device="cpu")
    a = VaDEEstimator(3, random_state=0, **kw).fit(x, y)
    before = {k: v.clone() for k, v in a.model_.state_dict().items()}
    pa = a.predict_proba(x)
    b = VaDEEstimator(3, random_state=1, lr=1e-2, **kw).fit(x)  # trained after a, in the same process
    for k, v in a.model_.state_dict().items():
        assert torch.equal(v, before[k]), k
    np.testing.assert_array_equal(a.predict_proba(x), pa)
    assert pa.shape == (90, 3) and np.allclose(pa.sum(1), 1, atol=1e-5)
    assert a.predict(x).shape == (90,) and set(a.labels_) <= {0, 1, 2}
    assert np.isfinite(a.score(x)) and a.score(x) < 0
    samples, c = b.sample(6, cluster=1)
    assert samples.shape == (6, 8) and (c == 1).all()
    assert a.get_params()["latent_dim"] == 2
    # a was given labels, b was not: b's records are real epochs (they have the bound) without label metrics
    assert "acc" in a.history_.last()
    # the training objective (the ELBO, "objective" while the held start adds its term) and no label metrics
    assert {"elbo", "objective"} & set(b.history_.last()) and not {"acc", "nmi", "ari"} & set(b.history_.last())


@pytest.mark.parametrize("seed", [-1, 2 ** 32, 0.5])
def test_the_training_config_refuses_seeds_outside_numpys_range(seed):
    from pyro_mixvae.errors import ConfigError
    from pyro_mixvae.infer.train import TrainConfig

    with pytest.raises(ConfigError, match="seed must be an integer between 0 and 2"):
        TrainConfig(seed=seed).check()
    TrainConfig(seed=2 ** 32 - 1).check()
