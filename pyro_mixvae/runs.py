"""Run directories: what ``mixvae fit`` writes and ``evaluate`` / ``sample`` / ``report`` read.

A run directory holds ``config.json`` (every setting used, the model's defaults included, the
model's construction and a fingerprint of the data), ``checkpoint.pt``
(:mod:`pyro_mixvae.infer.checkpoint`), ``history.jsonl`` (one line per epoch) and
``metrics.json`` (``"complete": true`` once training has finished; a run stopped early by an
interrupt or a non-finite loss writes ``"complete": false`` and why). ``history.jsonl`` is read by
:func:`~pyro_mixvae.infer.callbacks.read_history` (beside the callback that writes it) and the
parameters by :func:`~pyro_mixvae.infer.checkpoint.load_parameters`, which the training loop resumes with.

One process at a time writes it: ``fit`` (new or resumed) and ``report`` hold an exclusive
``fcntl.flock`` on ``.lock`` (which holds the writer's pid) while they run
(:func:`run_lock`); the kernel drops the lock when its process dies, so a lock file left by a
killed process does not block the next run. Anything wrong with a run directory -- a damaged
or foreign file, a missing one, a directory in use -- is a one-line
:class:`~pyro_mixvae.errors.RunError`.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, MixVAEError, RunError
from .infer.callbacks import HISTORY, read_history  # noqa: F401 (read_history: the run directory API has it)
from .infer.checkpoint import (CHECKPOINT, atomic_write, deferred_signals, load_checkpoint, load_parameters,
                               remove_temporaries)
from .models import build

CONFIG = "config.json"
METRICS = "metrics.json"
LOCK = ".lock"
CONFIG_KEYS = ("model", "data", "clusters", "likelihood", "settings", "train")


# ----------------------------------------------------------------------------- JSON files
def write_json(path, obj) -> None:
    """Write ``obj`` as JSON atomically (never half a file)."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path) -> dict:
    """The JSON object in ``path``; a missing, unreadable or damaged file is a one-line :class:`RunError`."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunError(f"{path} is damaged (not a JSON file: {' '.join(str(e).split())[:120]})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path} is damaged: it holds a JSON {type(obj).__name__}, not an object")
    return obj


def read_config(run_dir) -> dict:
    """``config.json`` of a run directory, refused in one line when it lacks what a run needs."""
    cfg = read_json(Path(run_dir) / CONFIG)
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing or not isinstance(cfg.get("train"), dict) or not isinstance(cfg.get("settings"), dict):
        raise RunError(f"{Path(run_dir) / CONFIG} is damaged: it lacks {', '.join(missing) or 'a valid train/settings'}")
    return cfg


# ----------------------------------------------------------------------------- the data's fingerprint
def data_fingerprint(x, y=None) -> dict:
    """Shape, dtype and SHA-256 of the model input ``x`` (and of the labels ``y``), for ``config.json``."""
    x = np.ascontiguousarray(x)
    out = {"shape": list(x.shape), "dtype": str(x.dtype), "sha256": hashlib.sha256(memoryview(x).cast("B")).hexdigest()}
    if y is not None:
        out["labels_sha256"] = hashlib.sha256(memoryview(np.ascontiguousarray(y)).cast("B")).hexdigest()
    return out


def check_same_data(cfg: dict, x, y, what: str, where) -> None:
    """Refuse data whose fingerprint differs from the one ``config.json`` recorded (runs from before it pass)."""
    recorded = cfg.get("data_fingerprint")
    if not recorded:
        return
    now = data_fingerprint(x, y if "labels_sha256" in recorded else None)
    diff = [k for k in ("shape", "dtype", "sha256", "labels_sha256") if recorded.get(k) != now.get(k)]
    if diff:
        detail = "shape " + f"{tuple(now['shape'])} != {tuple(recorded['shape'])}" if "shape" in diff else \
            ", ".join("contents" if k == "sha256" else "labels" if k == "labels_sha256" else k for k in diff)
        raise RunError(f"cannot {what}: the data {cfg['data']!r} differ from those {where} was trained on ({detail})")


# ----------------------------------------------------------------------------- one writer at a time
@contextmanager
def run_lock(run_dir, what: str, required: bool = True):
    """Hold an exclusive lock on ``run_dir`` for the block; a second holder is refused in one line.

    ``required=False`` (readers that write elsewhere): a directory where no lock file can be
    created (read-only) is used without one.
    """
    path = Path(run_dir) / LOCK
    fd = _acquire(path, what, required)
    try:
        yield
    finally:
        if fd is not None:
            with deferred_signals():
                Path(path).unlink(missing_ok=True)
                os.close(fd)  # closing drops the flock


def _acquire(path: Path, what: str, required: bool):
    """Open and flock ``path`` (retrying if the file was replaced meanwhile); its fd, or None (read-only, optional)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if not required and e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                return None
            raise RunError(f"cannot {what}: {path.parent} is not writable ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunError(f"cannot {what}: {path.parent} is in use by another mixvae process (pid {holder}); "
                           "wait for it to finish") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the previous holder removed the file between our open and our flock: start again
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


# ----------------------------------------------------------------------------- fit's run directory
def check_writable(out: Path, resume: bool) -> None:
    """Refuse an output directory that cannot be created or written, before any work starts."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"cannot resume: {out} holds no {CHECKPOINT}")
        if not os.access(out, os.W_OK | os.X_OK):
            raise RunError(f"cannot resume: {out} is not writable")
        return
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir() and (out / CHECKPOINT).exists():
        raise ConfigError(f"--out {out} already holds a run; use --resume to continue it or choose another --out")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out} cannot be written: {parent} is not a writable directory")


@contextmanager
def run_directory(out: Path, resume: bool):
    """``out`` locked for this process; for a new run created, and removed again if the run fails before
    its first checkpoint. Leftover temporary files are deleted; a resumed run's stale ``metrics.json`` too."""
    try:
        out.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be created: {e.strerror}") from None
    with run_lock(out, "resume" if resume else "fit"):
        try:
            if not resume and (out / CHECKPOINT).exists():  # another fit finished here after our first check
                raise ConfigError(f"--out {out} already holds a run; use --resume to continue it or choose another --out")
            remove_temporaries(out)
            if resume:
                (out / METRICS).unlink(missing_ok=True)
            yield out
        except BaseException:
            if not resume and not (out / CHECKPOINT).exists():
                with deferred_signals():
                    _remove_new_run(out, created)
            raise


def _remove_new_run(out: Path, created: bool) -> None:
    if created:
        shutil.rmtree(out, ignore_errors=True)  # the lock file goes with it; our flock stays valid until closed
    else:
        for name in (CONFIG, HISTORY, METRICS):
            (out / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- reading a run back
def load_run(run_dir, device="cpu"):
    """The model of a run directory with its trained parameters, and its ``config.json``.

    The config returned carries ``checkpoint_epoch`` (the epoch the parameters are from).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run directory: it needs {CONFIG} and {CHECKPOINT}")
    cfg = read_config(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
    model = model_from_checkpoint(state, run_dir / CHECKPOINT)
    model.to(torch.device(device)).eval()
    return model, {**cfg, "checkpoint_epoch": state["epoch"]}


def model_from_checkpoint(state: dict, path):
    """Build the model a checkpoint names and load its parameters; a mismatch is one line."""
    try:
        model = build(**state["construction"])
    except MixVAEError as e:
        raise RunError(f"{path} names a model that cannot be built: {e}") from None
    except (TypeError, ValueError, KeyError) as e:
        raise RunError(f"{path} is damaged: its model construction is not valid ({' '.join(str(e).split())[:150]})") from None
    load_parameters(model, state, path)
    return model


def completion(cfg: dict, metrics: dict | None = None) -> str:
    """'' for a run that reached its last epoch, else one sentence saying where it stopped and why."""
    planned = int(cfg["train"].get("epochs") or 0)
    epoch = int(cfg.get("checkpoint_epoch", planned))
    if metrics is not None and metrics.get("complete") is False:
        why = metrics.get("stopped") or "stopped"
        return f"the run is incomplete: {why} at epoch {epoch} of {planned}"
    if epoch < planned:
        return f"the run is incomplete: its checkpoint is from epoch {epoch} of {planned}"
    return ""
