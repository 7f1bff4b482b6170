"""Inference machinery shared by every model: the SVI loop, ELBO terms, pretraining, checkpoints.

``fit`` (:func:`.train.fit`) trains a model in memory; a run directory is the runner's
(:func:`pyro_mixvae.runner.fit_in_directory`, what ``mixvae fit`` writes).
"""
from .elbo import InformationBottleneckELBO, MixtureELBO, default_elbo
from .schedules import GeometricSchedule, LinearSchedule
from .train import History, TrainConfig, fit, resolve_device, seed_everything

__all__ = ["GeometricSchedule", "History", "InformationBottleneckELBO", "LinearSchedule", "MixtureELBO", "TrainConfig", "default_elbo", "fit", "resolve_device", "seed_everything"]
from .conjugate import ConjugateMixture, MixtureStats, step_size, sufficient_statistics

__all__ += ["ConjugateMixture", "MixtureStats", "step_size", "sufficient_statistics"]
