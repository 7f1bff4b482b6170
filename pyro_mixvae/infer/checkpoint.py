"""Atomic checkpoints and exact resume.

A checkpoint holds everything that the next step of training depends on: the model's
parameters and buffers (its ``state_dict`` and ``extra_state()``), the optimizer and its
learning-rate schedule, every random number generator in play (Python, NumPy, torch CPU and CUDA, and the
generator that shuffles minibatches), the epoch reached and the training config.

It is written to a temporary file in the same directory, flushed and fsync'ed, then renamed
over the old one, so an interruption at any moment leaves either the old checkpoint or the
new one, never half of one.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temporary binary file beside ``path``, fsync it, rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj, path) -> None:
    """``torch.save`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path, *, model, optimizer, scheduler, epoch: int, generator: torch.Generator,
                    config: dict, extra: dict | None = None) -> None:
    atomic_save({
        "epoch": epoch,
        "model": model.state_dict(),
        "model_extra": model.extra_state(),
        "construction": model.construction(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "generator": generator.get_state(),
        "config": config,
        "extra": extra or {},
    }, path)


def load_checkpoint(path, map_location="cpu") -> dict:
    # our own files: the RNG states are numpy objects, so the full unpickler is needed
    return torch.load(path, map_location=map_location, weights_only=False)
