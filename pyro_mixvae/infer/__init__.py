"""Inference machinery shared by every model: the SVI loop, pretraining, checkpoints."""
from .train import History, TrainConfig, default_elbo, fit, predict_proba, resolve_device, seed_everything

__all__ = ["History", "TrainConfig", "default_elbo", "fit", "predict_proba", "resolve_device", "seed_everything"]
