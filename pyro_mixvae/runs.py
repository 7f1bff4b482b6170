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

from .errors import ConfigError, MixVAEError, RunError
from .infer.callbacks import HISTORY, read_history  # noqa: F401 (read_history: the run directory API has it)
from .infer.checkpoint import (CHECKPOINT, atomic_write, deferred_signals, load_checkpoint, load_parameters,
                               non_finite_parameters, remove_temporaries)
from .infer.train import resolve_device
from .models import build, get_model_class
from .models.base import parse_settings

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
    """``config.json`` of a run directory, refused in one line when it lacks what a run needs or a field
    has the wrong type (:func:`config_problem`)."""
    path = Path(run_dir) / CONFIG
    cfg = read_json(path)
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing:
        raise RunError(f"{path} is damaged: it lacks {', '.join(missing)}")
    problem = config_problem(cfg)
    if problem:
        raise RunError(f"{path} is damaged: {problem}")
    return cfg


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional(check):
    return lambda value: value is None or check(value)


# the type of each field of config.json that a command reads, and of each training value it may read
CONFIG_TYPES = {"model": (lambda v: isinstance(v, str), "a string"), "data": (lambda v: isinstance(v, str), "a string"),
                "split": (lambda v: isinstance(v, str), "a string"), "clusters": (_is_int, "an integer"),
                "likelihood": (lambda v: isinstance(v, str), "a string"),
                "settings": (lambda v: isinstance(v, dict), "an object"), "train": (lambda v: isinstance(v, dict), "an object"),
                "labels": (_optional(lambda v: isinstance(v, str)), "a string or null"),
                "overrides": (lambda v: isinstance(v, list) and all(isinstance(o, dict) for o in v), "a list of objects"),
                "data_fingerprint": (lambda v: isinstance(v, dict), "an object"),
                "construction": (lambda v: isinstance(v, dict), "an object")}
TRAIN_TYPES = {**{k: (_optional(_is_int), "an integer") for k in ("epochs", "pretrain_epochs", "batch_size", "lr_step",
                                                                   "lr_warmup", "num_particles", "seed", "eval_every")},
               **{k: (_optional(_is_number), "a number") for k in ("lr", "lr_decay", "checkpoint_seconds")},
               "device": (_optional(lambda v: isinstance(v, str)), "a string"),
               **{k: (_optional(lambda v: isinstance(v, bool)), "true, false or null") for k in ("jit", "validate")}}
FINGERPRINT_TYPES = {"shape": (lambda v: isinstance(v, list) and all(_is_int(n) and n >= 0 for n in v), "a list of sizes"),
                     "dtype": (lambda v: isinstance(v, str), "a string"), "sha256": (lambda v: isinstance(v, str), "a string"),
                     "labels_sha256": (lambda v: isinstance(v, str), "a string")}


def _typed(obj: dict, types: dict, where: str) -> str:
    bad = next((k for k, (ok, _) in types.items() if k in obj and not ok(obj[k])), None)
    return "" if bad is None else f"{where}{bad} is {json.dumps(obj[bad])[:40]}, not {types[bad][1]}"


def config_problem(cfg: dict) -> str:
    """'' when every field of ``config.json`` that a command reads has its type (the model known, its settings
    valid for it, the training values numbers, ...), else what is wrong, for a one-line message."""
    problem = (_typed(cfg, CONFIG_TYPES, "") or _typed(cfg["train"], TRAIN_TYPES, "train.")
               or _typed(cfg.get("data_fingerprint") or {}, FINGERPRINT_TYPES, "data_fingerprint."))
    if problem:
        return problem
    fingerprint = cfg.get("data_fingerprint")
    lacks = [k for k in ("shape", "dtype", "sha256") if fingerprint is not None and k not in fingerprint]
    if lacks:
        return f"data_fingerprint lacks {', '.join(lacks)}"
    if cfg["clusters"] < 1:
        return f"clusters is {cfg['clusters']}, not a positive integer"
    if cfg["train"].get("epochs") is not None and cfg["train"]["epochs"] < 0:
        return f"train.epochs is {cfg['train']['epochs']}, not a number of epochs"
    try:
        parse_settings(cfg["model"], get_model_class(cfg["model"]).settings, cfg["settings"])
    except ConfigError as e:
        return str(e)
    return ""


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
    check_output_dir(out)


def check_output_dir(target, flag: str = "--out", hint: str = "") -> None:
    """Refuse an output folder that is a file, or that cannot be created or written, before any work starts;
    ``hint`` ends the message (where to write instead)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{flag} {target} exists and is not a directory{hint}")
    parent = next((p for p in [target, *target.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {target} cannot be written: {parent} is not a writable directory{hint}")


def check_output_file(target, flag: str = "--out") -> None:
    """Refuse an output file that is a folder, or whose folder is missing or not writable, before any work starts."""
    target = Path(target)
    if target.is_dir():
        raise ConfigError(f"{flag} {target} is a directory; name a file")
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write {target}: {target.parent} is not a directory")
    if not os.access(target.parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(f"cannot write {target}: {target if target.exists() else target.parent} is not writable")


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
def load_run(run_dir, device="cpu", what: str = "use"):
    """The model of a run directory with its trained parameters, and its ``config.json``.

    The device is checked first (no CUDA is said as such, not as a damaged checkpoint); the
    checkpoint must belong to ``config.json`` (:func:`check_identity`) and hold finite parameters.
    ``what`` names the command in a refusal. The config returned carries ``checkpoint_epoch`` (the epoch
    the parameters are from).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run directory: it needs {CONFIG} and {CHECKPOINT}")
    device = resolve_device(device)
    cfg = read_config(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
    check_identity(cfg, state, run_dir, what)
    bad = non_finite_parameters(state)
    if bad:
        raise RunError(f"{run_dir / CHECKPOINT} holds non-finite parameters (NaN or infinite values in "
                       f"{', '.join(bad[:3])}{' and more' if len(bad) > 3 else ''}); it cannot be used")
    model = model_from_checkpoint(state, run_dir / CHECKPOINT)
    model.to(device).eval()
    return model, {**cfg, "checkpoint_epoch": state["epoch"]}


def identity_differences(cfg: dict, state: dict) -> list:
    """What a checkpoint says it belongs to that ``config.json`` contradicts, as ``(what, checkpoint's, config's)``.

    Compared: the model, K, the likelihood, the data's shape per point, the settings (those an
    ``--override`` changed are left out: the checkpoint before the resumed run's first one still holds
    the old value), the seed and -- where the checkpoint records it -- the data's fingerprint.
    Checkpoints from before the fingerprint are checked on the rest.
    """
    built = state["construction"]
    overridden = {key for change in cfg.get("overrides") or [] for key in change}
    recorded_shape = (cfg.get("data_fingerprint") or {}).get("shape")
    pairs = [("model", built.get("model"), cfg["model"]), ("K", built.get("n_clusters"), cfg["clusters"]),
             ("likelihood", built.get("likelihood"), cfg["likelihood"])]
    if recorded_shape is not None:
        pairs.append(("data shape per point", _jsonable(built.get("data_shape")), recorded_shape[1:]))
    theirs = built.get("settings") if built.get("model") == cfg["model"] else {}  # another model: its own settings
    theirs = theirs or {}
    pairs += [(f"setting {key}", _jsonable(theirs.get(key)), _jsonable(value)) for key, value in cfg["settings"].items()
              if key not in overridden and key in theirs]
    if "seed" in state["config"] and cfg["train"].get("seed") is not None:
        pairs.append(("seed", state["config"]["seed"], cfg["train"]["seed"]))
    mine, recorded = state.get("data_fingerprint"), cfg.get("data_fingerprint")
    if isinstance(mine, dict) and recorded:
        for key, what in (("shape", "data shape"), ("sha256", "data"), ("labels_sha256", "labels")):
            if key in mine and key in recorded and _jsonable(mine[key]) != recorded[key]:
                a, b = (str(v) if key == "shape" else f"sha256 {v[:12]}" for v in (_jsonable(mine[key]), recorded[key]))
                pairs.append((what, a, b))
    return [(what, a, b) for what, a, b in pairs if a != b]


def check_identity(cfg: dict, state: dict, run_dir, what: str = "use") -> None:
    """Refuse a checkpoint that belongs to another run than ``config.json`` says, naming both sides."""
    diff = identity_differences(cfg, state)
    if diff:
        run_dir = Path(run_dir)
        raise RunError(f"cannot {what} {run_dir}: its {CHECKPOINT} does not belong to its {CONFIG}: "
                       + "; ".join(f"{name} {a} in the checkpoint, {b} in {CONFIG}" for name, a, b in diff))


def _jsonable(value):
    """Tuples as lists, for comparing with what JSON read back."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


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


METRICS_TYPES = {"complete": (lambda v: isinstance(v, bool), "true or false"),
                 "stopped": (lambda v: isinstance(v, str), "a string"),
                 "definitions": (lambda v: isinstance(v, dict), "an object"),
                 "pretrain": (_optional(lambda v: isinstance(v, dict)), "an object or null"),
                 "epochs": (_is_int, "an integer"), "clusters": (_is_int, "an integer"), "seed": (_is_int, "an integer"),
                 "model": (lambda v: isinstance(v, str), "a string")}


def read_metrics(run_dir, cfg: dict) -> dict | None:
    """``metrics.json`` of a run (None when there is none), refused in one line when damaged, when a field has the
    wrong type, or when it belongs to another run than ``cfg`` (:func:`load_run`'s config): its model, K, seed or
    -- for a finished run -- its epoch differ. Its numbers are then never shown as this run's."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return None
    metrics = read_json(path)
    problem = _typed(metrics, METRICS_TYPES, "")
    if problem:
        raise RunError(f"{path} is damaged: {problem}")
    pairs = [("model", cfg["model"]), ("clusters", cfg["clusters"]), ("seed", cfg["train"].get("seed"))]
    if metrics.get("complete") is True and "checkpoint_epoch" in cfg:
        pairs.append(("epochs", cfg["checkpoint_epoch"]))
    diff = [f"{key} {metrics[key]} in {METRICS}, {value} in {CONFIG}" + (" and the checkpoint" if key == "epochs" else "")
            for key, value in pairs if key in metrics and value is not None and metrics[key] != value]
    if diff:
        raise RunError(f"{path} does not belong to this run: {'; '.join(diff)}")
    return metrics


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
