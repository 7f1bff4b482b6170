"""Inference machinery shared by every model: the SVI loop, ELBO terms, pretraining, checkpoints."""
from .elbo import MixtureELBO
from .train import History, TrainConfig, default_elbo, fit, predict_proba, resolve_device, seed_everything

__all__ = ["History", "MixtureELBO", "TrainConfig", "default_elbo", "fit", "predict_proba", "resolve_device", "seed_everything"]
