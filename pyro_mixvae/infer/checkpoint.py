"""Atomic checkpoints, exact resume, and loading that never runs code.

A checkpoint holds everything that the next step of training depends on: the model's
parameters and buffers (its ``state_dict``), the optimizer and its
learning-rate schedule, every random number generator in play (Python, NumPy, torch CPU and CUDA, and the
generator that shuffles minibatches), the epoch reached and the training config.

Every field is a tensor or a plain Python value (dict, list, tuple, str, number, bool, None),
so the file is read with ``torch.load(weights_only=True)``: a file that holds anything else
(a pickled object that would run code when loaded) is refused with one line naming it
(:class:`~pyro_mixvae.errors.RunError`), and so is a file that is not a checkpoint at all.

A checkpoint written inside :func:`run_identity` (``mixvae fit``'s run directories) also holds
``data_fingerprint``, the fingerprint of the data it was trained on, so that a checkpoint can be
checked against the ``config.json`` beside it (:func:`pyro_mixvae.runs.check_identity`) besides
its ``construction`` (model, K, likelihood, data shape, settings).

It is written to a temporary file in the same directory, flushed and fsync'ed, then renamed
over the old one, so an interruption at any moment leaves either the old checkpoint or the
new one, never half of one. SIGINT and SIGTERM arriving during the write are held back
until it has finished (:func:`deferred_signals`), then delivered as they would have been.
"""
from __future__ import annotations

import contextvars
import os
import pickle
import random
import signal
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import RunError
from ..nets import with_identity_units

CHECKPOINT = "checkpoint.pt"
# what every checkpoint holds (load_checkpoint refuses a file without them)
FIELDS = ("epoch", "model", "construction", "optimizer", "scheduler", "rng", "generator", "config", "extra")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# the fingerprint of the data being trained on, set by run_identity() (None: not known, e.g. in memory)
_DATA_FINGERPRINT = contextvars.ContextVar("mixvae_data_fingerprint", default=None)


# ----------------------------------------------------------------------------- signals
@contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM back while the block runs, then deliver the first one that came.

    Only in the main thread (the only one Python delivers signals to); elsewhere a no-op. The
    handlers in force before the block (the CLI's, or Python's defaults) get the signal afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: a handler set outside Python
        if pending:
            signal.raise_signal(pending[0])


# ----------------------------------------------------------------------------- random number generators
def rng_state() -> dict:
    """Python's, NumPy's and torch's RNG states, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    state = {"python": random.getstate(),
             "numpy": {**numpy_state, "state": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                                                "pos": int(numpy_state["state"]["pos"])}},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {"key": np.asarray(numpy_state["state"]["key"]).astype(np.uint32),
                            "pos": int(numpy_state["state"]["pos"])}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    """``random.setstate`` wants tuples where a round trip may have left lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def plain(value):
    """``value`` with NumPy scalars and arrays turned into Python numbers and tensors (checkpoint-safe)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    return value


# ----------------------------------------------------------------------------- writing
def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temporary binary file beside ``path``, fsync it, rename it over ``path``.

    SIGINT / SIGTERM are deferred until the rename is done (:func:`deferred_signals`).
    """
    path = Path(path)
    with deferred_signals():
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


def remove_temporaries(directory) -> list:
    """Delete what an :func:`atomic_write` killed mid-write left in ``directory`` (``NAME.XXXX.tmp``); returns them."""
    directory = Path(directory)
    stray = [p for p in directory.glob("*.tmp") if p.is_file()] if directory.is_dir() else []
    for p in stray:
        p.unlink(missing_ok=True)
    return stray


def atomic_save(obj, path) -> None:
    """``torch.save`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


@contextmanager
def run_identity(data_fingerprint: dict):
    """Checkpoints saved while the block runs carry ``data_fingerprint`` (the data the run trains on)."""
    token = _DATA_FINGERPRINT.set(data_fingerprint)
    try:
        yield
    finally:
        _DATA_FINGERPRINT.reset(token)


def save_checkpoint(path, *, model, optimizer, scheduler, epoch: int, generator: torch.Generator,
                    config: dict, extra: dict | None = None) -> None:
    """Everything the next step depends on (see the module docstring), atomically; inside :func:`run_identity`
    also the data's fingerprint."""
    fingerprint = _DATA_FINGERPRINT.get()
    atomic_save({
        "epoch": int(epoch),
        "model": model.state_dict(),
        "construction": plain(model.construction()),
        "optimizer": optimizer.state_dict(),
        "scheduler": plain(scheduler.state_dict()),
        "rng": rng_state(),
        "generator": generator.get_state(),
        "config": plain(config),
        "extra": plain(extra or {}),
        **({"data_fingerprint": plain(fingerprint)} if fingerprint is not None else {}),
    }, path)


# ----------------------------------------------------------------------------- reading
def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; one-line :class:`RunError` when it cannot be.

    Refused: a file that is missing, empty, truncated or not a torch archive; one that holds
    anything but tensors and plain values (it could run code); one without the fields above.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise RunError(f"{path} was refused: it holds objects other than tensors and plain values, which could "
                           f"run code when loaded (not a checkpoint written by mixvae)") from None
        raise RunError(f"{path} is damaged: {_first_line(e)}") from None
    except FileNotFoundError:
        raise RunError(f"{path} does not exist") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError, TypeError,
            AttributeError, AssertionError) as e:  # torch's unpickler on a flipped byte: any of these
        raise RunError(f"{path} is damaged or not a checkpoint (empty, truncated or another format): "
                       f"{_first_line(e)}") from None
    missing = [k for k in FIELDS if k not in state] if isinstance(state, dict) else list(FIELDS)
    if missing:
        raise RunError(f"{path} is not a mixvae checkpoint: it lacks {', '.join(missing)}")
    if not isinstance(state["epoch"], int) or not isinstance(state["construction"], dict) \
            or not isinstance(state["config"], dict) or not isinstance(state["model"], dict):
        raise RunError(f"{path} is not a mixvae checkpoint: its epoch, construction, config or model have the wrong types")
    return state


def non_finite_parameters(state: dict) -> list:
    """The names of the checkpoint's floating-point parameters and buffers that hold NaN or infinite values."""
    return [name for name, value in state["model"].items()
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def _first_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]


def load_parameters(model, state: dict, path) -> None:
    """``model.load_state_dict(state["model"])``; a key or shape mismatch is one line.
    A checkpoint from before the data's units (:class:`~pyro_mixvae.nets.Standardize`) loads with the identity."""
    params = with_identity_units(model, state["model"])
    problem = state_mismatch(model.state_dict(), params)
    if problem:
        raise RunError(f"{path} does not fit this model: {problem}")
    try:
        model.load_state_dict(params)
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise RunError(f"{path} does not fit this model: {' '.join(str(e).split())[:150]}") from None


def state_mismatch(expected: dict, found: dict) -> str:
    """'' when ``found`` has the keys and shapes of ``expected``, else what differs (first few)."""
    if not all(torch.is_tensor(v) for v in found.values()):
        return "its parameters are not all tensors"
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in found and tuple(found[k].shape) != tuple(v.shape)]
    parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
            ([f"unexpected {', '.join(extra[:3])}"] if extra else []) + \
            ([f"shapes {'; '.join(shapes[:3])}"] if shapes else [])
    return "; ".join(parts)
