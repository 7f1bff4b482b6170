"""Every command quoted in README.md and experiments/README.md exists and runs (slow: ``pytest -m slow``).

The ```bash blocks of both files are read when the tests are collected, so the tests follow the
documents as they change. Each command line (``\\`` continuations joined, comments dropped) is one
test, run with tiny settings, in document order, in one temporary folder per document:

* ``mixvae ...`` runs through :func:`pyro_mixvae.cli.main` in that folder (a ``fit`` without ``--out``
  or ``--resume`` in a folder of its own, as its default run directory may be another's); ``fit`` gets
  ``--epochs 1 --pretrain-epochs 1 --set hidden=16,16 --quiet`` appended (``--epochs 2`` when it
  resumes). A data file it names that the folder lacks (``my.npz``, a user's file) is made: four
  clusters in 20 dimensions, and partial labels of -1 for ``--labels``.
* ``python experiments/SCRIPT ...`` runs as a child process from the repository's root with its
  outputs sent to the temporary folder (``--results``, ``--runs``, or the script's ``--out``) and
  the small sizes of :data:`QUICK`; what it writes must record a ``python experiments/...`` command.

Skipped, with the reason: set-up lines (virtual environments, pip, the test suite itself), several
processes (``torchrun``), placeholders in capitals (``LAMBDA``, ``HOST``), CUDA without a GPU,
MNIST / Fashion-MNIST / SVHN when their files are not on the machine, and a script without
``--results`` (it would write into the repository).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyro_mixvae.cli import main
from pyro_mixvae.synthetic import make_unit_blobs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "experiments/README.md")
FENCE = re.compile(r"^```(?:bash|sh|shell)[^\n]*\n(.*?)^```", flags=re.S | re.M)
TINY_FIT = ["--pretrain-epochs", "1", "--set", "hidden=16,16", "--quiet"]
FIT_ARGS = ["--fit-args", "--epochs 1 --pretrain-epochs 1 --set hidden=16,16"]
# per script: arguments that make it small (appended before any `--`), and arguments after `--`
QUICK = {
    "benchmark.py": (["--seeds", "0", "--models", "vade", *FIT_ARGS], []),
    "seeds.py": (["--seeds", "0", *FIT_ARGS], []),
    "vib_gmm.py": (["--seeds", "0", *FIT_ARGS], []),
    "factorial.py": (["--quick", "--seeds", "0", "--log2k", "0"], []),
    "gmvae_arcs.py": (["--settings", "post-elbo", "--seeds", "0"], ["--epochs", "1"]),
    "gmvae_arcs_tune.py": (["epochs=1"], []),
    "init_study.py codes": (["--seeds", "0", "--pretrain-epochs", "1", "--fit-args", "--set hidden=16,16"], []),
    "init_study.py compare": (["--seeds", "0", "--restarts", "2", "--points", "300"], []),
    "perf/overhead.py": (["--steps", "2", "--warmup", "1", "--skip-fashion"], []),
    "perf/profile_main.py": ([], ["fit", "vade", "--data", "digits", "--epochs", "1", "--pretrain-epochs", "1",
                                  "--set", "hidden=16,16", "--quiet"]),
    "robustness.py": (["--models", "vade", "--seeds", "0"], []),
    "robustness.py --full": (["--models", "vade", "--seeds", "0", "--sets", "iris-raw"], []),
    "other_sets.py": (["--models", "vade", "--seeds", "0", "--sets", "unequal"], []),
    "stability.py": (["--seeds", "0"], []),
    "stable_answer.py": (["--seeds", "0", "--threads", "1", *FIT_ARGS], []),
    "fashion_peer.py": (["--seeds", "0", "--data", "digits", "--epochs", "1", *FIT_ARGS], []),
    "clusters_auto.py": (["--sets", "blobs-n100-d2-k2", "--max-clusters", "3", "--epochs", "1"], []),
}
OWN_OUT = {"gmvae_arcs_tune.py": "tune.jsonl", "perf/overhead.py": "perf.json",  # scripts with --out FILE
           "perf/profile_main.py": "profile.md"}
LARGE_DATA = ("mnist", "fashion-mnist", "svhn")


def quoted_commands(document: str) -> list:
    """(line number, command) of every command in the document's bash blocks, in order."""
    text = (REPO / document).read_text()
    commands = []
    for match in FENCE.finditer(text):
        number = text[:match.start(1)].count("\n")
        pending, start = "", None
        for line in match.group(1).splitlines():
            number += 1
            start = start or number
            if line.rstrip().endswith("\\"):  # continued on the next line
                pending += line.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending + line, comments=True)
            if words:
                commands.append((start, words))
            pending, start = "", None
    return commands


CASES = [(doc, line, words) for doc in DOCUMENTS if (REPO / doc).exists() for line, words in quoted_commands(doc)]


def _available(data: str) -> bool:
    from pyro_mixvae.data import load_dataset

    try:
        load_dataset(data)
    except Exception:  # the project's DataError, or a loader's own: the files are not here
        return False
    return True


def skip_reason(words: list):
    """Why a command cannot run here, or None."""
    line = " ".join(words)
    if "&&" in words or words[0].startswith((".venv", "pip")) or "venv" in words or "pytest" in words:
        return "sets up an environment or runs the test suite"
    if words[0] == "bash":
        return "a shell script that times the full main job or needs CUDA, run by hand"
    if words[0] == "torchrun" or "torch.distributed.run" in words or "distributed_digits.py" in line:
        return "needs several processes (torchrun)"
    placeholders = [w for w in re.split(r"[\s=:,]+", line) if re.fullmatch(r"[A-Z][A-Z_]{2,}", w)]
    if [p for p in placeholders if p not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")]:
        return f"placeholder {placeholders[0]}"
    if "cuda" in line:
        import torch

        if not torch.cuda.is_available():
            return "needs CUDA"
    for i, word in enumerate(words[:-1]):
        if word == "--data":
            missing = [d for d in words[i + 1:] if d in LARGE_DATA and not _available(d)]
            if missing:
                return f"{missing[0]} is not on this machine"
    return None


def _make_inputs(argv: list, folder: Path) -> None:
    """The user's files a documented command names (``--data X.npz|.csv``, ``--labels X.npy``)."""
    blobs = make_unit_blobs(100, 20, 4)
    x, y = blobs.x, blobs.y
    factors = next((int(a.split("=")[1]) for a in argv if a.startswith("factors=")), 1)
    for flag, value in zip(argv, argv[1:]):
        path = folder / value
        if flag == "--data" and value.endswith((".npz", ".csv")) and not path.exists():
            if value.endswith(".npz"):
                np.savez(path, x=x, y=y)
            else:
                np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=",".join(
                    [f"f{i}" for i in range(20)] + ["label"]), comments="")
        if flag == "--labels" and not path.exists():
            np.save(path, np.full((len(y), factors), -1))


def run_mixvae(argv: list, folder: Path) -> None:
    _make_inputs(argv, folder)
    if argv[0] == "fit":
        argv = argv + ["--epochs", "2" if "--resume" in argv else "1"] + TINY_FIT
    assert main(argv) == 0, f"mixvae {shlex.join(argv)} failed"


def run_script(words: list, folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    while "=" in words[0] and not words[0].startswith("-"):  # VAR=value before the command
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[0] in ("python", "python3") and words[1].startswith("experiments/"), f"not a study script: {words}"
    script = words[1][len("experiments/"):]
    args = words[2:]
    key = f"{script} {args[0]}" if args and f"{script} {args[0]}" in QUICK else script
    help_text = subprocess.run([sys.executable, words[1], *(args[:1] if key != script else []), "--help"],
                               cwd=REPO, env=env, capture_output=True, text=True).stdout
    results = folder / "results"
    if script in OWN_OUT:
        outputs = ["--out", str(results / OWN_OUT[script])]
    elif "--results" in help_text:
        outputs = ["--results", str(results)] + (["--runs", str(folder / "runs")] if "--runs" in help_text else [])
    else:
        pytest.skip(f"{script} has no --results option: it would write into the repository")
    before, after = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
    small, tail = QUICK.get(key, ([], []))
    argv = [sys.executable, words[1], *before, *small, *outputs, *(["--", *after, *tail] if after or tail else [])]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{shlex.join(words)} failed:\n{done.stderr[-3000:]}"
    written = [p for p in results.rglob("*") if p.is_file() and p.suffix in (".md", ".json", ".jsonl")]
    if written:
        assert any("python experiments/" in p.read_text() for p in written), "no output records its command"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {doc: tmp_path_factory.mktemp(doc.replace("/", "_")) for doc in DOCUMENTS}


@pytest.mark.parametrize("document,line,words", CASES, ids=[f"{d}:{n}" for d, n, _ in CASES])
def test_documented_command_runs(document, line, words, folders, monkeypatch):
    reason = skip_reason(words)
    if reason:
        pytest.skip(reason)
    folder = folders[document]
    if words[:2] == ["mixvae", "fit"] and "--out" not in words and "--resume" not in words:
        # no later command names its default run directory, and two such commands of a tour (other
        # settings, same model) would collide on it: each runs in its own folder
        folder = folder / f"line{line}"
        folder.mkdir(exist_ok=True)
    monkeypatch.chdir(folder)
    if words[0] == "mixvae":
        run_mixvae(words[1:], folder)
    else:
        run_script(list(words), folder)


def test_both_documents_quote_commands():
    assert {doc for doc, _, _ in CASES} == set(DOCUMENTS)
