"""The traced training loss (pyro_mixvae.infer.compiled) against the eager Pyro programs."""

import numpy as np

import pyro
import pytest
import torch

from pyro_mixvae.infer.compiled import CompiledLoss, compiled_loss
from pyro_mixvae.infer.elbo import InformationBottleneckELBO
from pyro_mixvae.infer.train import TrainConfig, fit
from pyro_mixvae.models import build


def small_vade():
    torch.manual_seed(0)
    return build("vade", (12,), 3, "bernoulli", {"hidden": (16,), "latent_dim": 2})


def small_gmvae(guide):
    torch.manual_seed(0)
    return build("gmvae", (2,), 3, "gaussian", {"guide": guide})


@pytest.mark.parametrize("make", [small_vade, lambda: small_gmvae("posterior"), lambda: small_gmvae("mean-field")])
def test_traced_loss_and_gradients_equal_eager(make):
    model = make()
    x = (torch.rand(20, *model.data_shape) < 0.4).float() if model.likelihood.name == "bernoulli" \
        else torch.randn(20, *model.data_shape)
    elbo = model.make_elbo(1)
    traced = CompiledLoss(elbo, model)
    for _ in range(3):  # the first call traces, the later ones replay the graph
        torch.manual_seed(5)
        eager = elbo.differentiable_loss(model.model, model.guide, x, 100)
        g_eager = torch.autograd.grad(eager, list(model.parameters()), allow_unused=True)
        torch.manual_seed(5)
        loss = traced(x, 100)
        g_traced = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        assert torch.allclose(loss, eager, rtol=1e-5, atol=1e-5)
        for a, b in zip(g_eager, g_traced):
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert traced.traces == 1


def traced_vib():
    """A small VaDE network with VIB-GMM's objective at s = 0.5, its traced loss, and a batch of 10."""
    model = small_vade()
    elbo = InformationBottleneckELBO(s=0.5, kl="hershey-olsen", max_plate_nesting=1)
    return model, elbo, CompiledLoss(elbo, model), (torch.rand(10, 12) < 0.4).float()


def test_new_shape_and_new_setting_retrace():
    model, elbo, traced, x = traced_vib()
    traced(x, 50)
    traced(x[:7], 50)          # a last, smaller batch: the plate's scale N / B differs
    assert traced.traces == 2
    for s in (0.5, 1.0):       # s = 1 drops a term of the objective: a new trace
        elbo.s = s
        torch.manual_seed(2)
        eager = float(elbo.differentiable_loss(model.model, model.guide, x[:7], 50).detach())
        eager_terms = dict(elbo.last_terms)
        torch.manual_seed(2)
        assert float(traced(x[:7], 50)) == pytest.approx(eager, rel=1e-5)
        for key, value in eager_terms.items():  # the reported terms are the graph's outputs, per call
            assert float(elbo.last_terms[key]) == pytest.approx(float(value), rel=1e-5, abs=1e-6)
    assert traced.traces == 3


def test_fit_with_and_without_the_trace_reach_the_same_parameters():
    x = (torch.rand(30, 12) < 0.4).float()
    params = []
    for jit in (False, True):
        pyro.clear_param_store()
        model = small_vade()
        cfg = TrainConfig(epochs=2, pretrain_epochs=0, batch_size=8, seed=3, device="cpu", jit=jit)
        fit(model, x, config=cfg, progress=False)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(params[0], params[1], rtol=1e-4, atol=1e-5)


def test_only_models_that_allow_it_are_traced():
    factorial = build("factorial", (12,), 3, "bernoulli", {"hidden": (16,)})
    assert not isinstance(compiled_loss(factorial.make_elbo(1), factorial), CompiledLoss)
    assert isinstance(compiled_loss(small_vade().make_elbo(1), small_vade()), CompiledLoss)


def test_tracing_changes_neither_the_random_stream_nor_the_buffers():
    model = small_vade()
    model.register_buffer("seen", torch.zeros(()))
    original = model.model

    def counting_model(x, num_data=None):  # a buffer updated in place while the programs run
        model.seen.add_(1.0)
        return original(x, num_data)

    model.model = counting_model
    torch.manual_seed(7)
    expected = torch.rand(())
    torch.manual_seed(7)
    CompiledLoss(model.make_elbo(1), model)._trace(torch.ones(4, 12), 4, (), [])
    assert torch.rand(()) == expected
    assert float(model.seen) == 0.0


def test_evaluation_mode_runs_the_programs_and_numpy_settings_are_keys():
    model, elbo, traced, x = traced_vib()
    traced(x, 50)
    model.eval()
    traced(x, 50)
    assert traced.traces == 1          # not replayed (nor recorded) in evaluation mode
    model.train()
    elbo.eta = np.float32(0.7)         # a setting of another scalar type still changes the key
    traced(x, 50)
    assert traced.traces == 2


def test_fit_traces_only_the_models_own_elbo_without_validation(monkeypatch):
    import pyro_mixvae.infer.train as train

    seen = []
    real = train.compiled_loss
    monkeypatch.setattr(train, "compiled_loss", lambda elbo, model, jit: seen.append(jit) or real(elbo, model, jit))
    x = (torch.rand(16, 12) < 0.4).float()
    for kwargs, cfg_extra in (({}, {}), ({"elbo": small_vade().make_elbo(1)}, {}), ({}, {"validate": True}),
                              ({}, {"jit": True, "validate": True})):
        model = small_vade()
        if "elbo" in kwargs:
            kwargs = {"elbo": model.make_elbo(1)}
        fit(model, x, config=TrainConfig(epochs=1, pretrain_epochs=0, batch_size=8, device="cpu", **cfg_extra),
            progress=False, **kwargs)
    assert seen == [None, False, False, True]


def test_a_held_weight_is_an_input_of_one_graph():
    """The held start's weight changes every epoch: one graph serves every non-zero value and gives the eager
    loss at each; a weight of 0 (where the ELBO drops the term) gets its own."""
    model = small_vade()
    x = (torch.rand(20, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    held = torch.softmax(torch.randn(20, 3, generator=torch.Generator().manual_seed(2)), -1)
    elbo = model.make_elbo(1)
    traced = CompiledLoss(elbo, model)
    for weight, traces in ((0.9, 1), (0.5, 1), (0.1, 1), (0.0, 2)):
        elbo.hold = weight
        torch.manual_seed(5)
        eager = elbo.differentiable_loss(model.model, model.guide, x, 100, held_responsibilities=held)
        torch.manual_seed(5)
        loss = traced(x, 100, held_responsibilities=held)
        assert torch.allclose(loss, eager, rtol=1e-6, atol=1e-6), weight
        assert traced.traces == traces


def test_vib_gmms_annealed_s_is_an_input_of_one_graph():
    """VIB-GMM's s, annealed every few epochs, is a graph input too: one graph for every s other than 0 and 1,
    each giving the eager loss; a value outside [0, inf) is still refused outside the trace."""
    model = build("vib-gmm", (12,), 3, "bernoulli", {"hidden": (16,), "latent_dim": 2})
    x = (torch.rand(20, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    elbo = model.make_elbo(1)
    traced = CompiledLoss(elbo, model)
    for s in (0.1, 0.121, 0.5):
        elbo.s = s
        torch.manual_seed(5)
        eager = elbo.differentiable_loss(model.model, model.guide, x, 100)
        torch.manual_seed(5)
        assert torch.allclose(traced(x, 100), eager, rtol=1e-6, atol=1e-6), s
    assert traced.traces == 1 and isinstance(elbo.s, float)
    with pytest.raises(Exception, match="s must be"):
        elbo.s = -1.0
