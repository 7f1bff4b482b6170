"""Run directories: what ``mixvae fit`` writes and ``evaluate`` / ``sample`` read.

A run directory holds ``config.json`` (the command's settings and the model's construction),
``checkpoint.pt`` (:mod:`pyro_mixvae.infer.checkpoint`), ``history.jsonl`` (one line per
epoch) and, once training has finished, ``metrics.json``.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import ConfigError
from .infer.checkpoint import CHECKPOINT, atomic_write, load_checkpoint
from .models import build

CONFIG = "config.json"
METRICS = "metrics.json"


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON atomically (never half a file)."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def check_writable(out: Path, resume: bool) -> None:
    """Refuse an output directory that cannot be created or written, before any work starts."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"cannot resume: {out} holds no {CHECKPOINT}")
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
    """Create ``out`` for a new run; if the run fails before its first checkpoint, remove what it created."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be created: {e.strerror}") from None
    try:
        yield out
    except BaseException:
        if not resume and not (out / CHECKPOINT).exists():
            if created:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for name in (CONFIG, "history.jsonl"):
                    (out / name).unlink(missing_ok=True)
        raise


def load_run(run_dir, device="cpu"):
    """The model of a run directory with its trained parameters, and its ``config.json``."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run directory: it needs {CONFIG} and {CHECKPOINT}")
    state = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
    model = build(**state["construction"])
    model.load_state_dict(state["model"])
    model.load_extra_state(state["model_extra"])
    model.to(torch.device(device)).eval()
    return model, read_json(run_dir / CONFIG)
