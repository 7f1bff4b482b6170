"""Inference machinery shared by every model: the SVI loop, ELBO terms, pretraining, checkpoints.

``fit`` here is :func:`pyro_mixvae.runner.fit`, the loop of :func:`.train.fit` that with ``out_dir``
writes a complete run directory. The runner sits above this package (it imports the loop), so it is
imported when ``fit`` is first asked for (:func:`__getattr__`), not when the package loads.
"""
from .elbo import InformationBottleneckELBO, MixtureELBO, default_elbo
from .schedules import GeometricSchedule, LinearSchedule
from .train import History, TrainConfig, resolve_device, seed_everything

__all__ = ["GeometricSchedule", "History", "InformationBottleneckELBO", "LinearSchedule", "MixtureELBO", "TrainConfig", "default_elbo", "fit", "resolve_device", "seed_everything"]
from .conjugate import ConjugateMixture, MixtureStats, step_size, sufficient_statistics

__all__ += ["ConjugateMixture", "MixtureStats", "step_size", "sufficient_statistics"]


def __getattr__(name: str):
    """``fit``: :func:`pyro_mixvae.runner.fit`, imported on first use."""
    if name == "fit":
        from ..runner import fit  # here: the runner imports this package's modules

        return fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
