"""What the experiment scripts share: their output arguments, the command that made a result, running
``mixvae fit`` resumably, reading runs back, formatting tables.

Every script takes ``--results DIR`` (default ``experiments/results``: the tables, JSON and figures
it writes) and ``--runs DIR`` (default ``experiments/runs``, not in git: the run directories it
trains), and records in what it writes the command that produced it (:func:`record_command`).

A run lives in its own directory; :func:`run_fit` skips it when ``metrics.json`` exists and
adds ``--resume`` when only a checkpoint does, so an interrupted script is simply started again.
Training runs one at a time with ``OMP_NUM_THREADS`` threads (1 by default: these machines have
2 cores, and two 2-thread processes slow each other far more than they gain).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
RUNS = HERE / "runs"


def add_output_arguments(parser: argparse.ArgumentParser, fits: bool = True) -> None:
    """``--results`` and ``--runs``, parsed to paths (default: ``experiments/results``, ``experiments/runs``),
    and, for scripts that train (``fits``), ``--fit-args``: arguments appended to every ``mixvae fit``
    the script runs (a quick check: ``--fit-args "--epochs 1 --pretrain-epochs 1 --set hidden=16,16"``)."""
    parser.add_argument("--results", type=Path, default=RESULTS, help="where tables, JSON and figures go "
                        "(default: experiments/results)")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where the training runs go (default: "
                        "experiments/runs, not in git)")
    if fits:
        parser.add_argument("--fit-args", type=shlex.split, default=[], metavar="'ARGS'",
                            help="appended to every mixvae fit this script runs (after its own arguments)")


def record_command(argv=None) -> str:
    """The command that runs this script with these arguments, from the repository's root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script.name
    return shlex.join(["python", str(shown), *(sys.argv[1:] if argv is None else argv)])


def fit_command(model: str, data: str, seed: int, run: Path, extra=()) -> list:
    return [sys.executable, "-m", "pyro_mixvae", "fit", model, "--data", data, "--seed", str(seed),
            "--out", str(run), "--quiet", *extra]


def run_fit(model: str, data: str, seed: int, run: Path, extra=(), threads: int = 1) -> dict:
    """Train (or finish) one run and return its ``metrics.json`` plus the command."""
    run = Path(run)
    cmd = fit_command(model, data, seed, run, extra)
    done = (run / "metrics.json").exists() and json.loads((run / "metrics.json").read_text()).get("complete", True)
    if not done:  # an interrupted run's metrics.json says "complete": false
        if (run / "checkpoint.pt").exists():
            cmd_run = cmd + ["--resume"]
        else:
            cmd_run = cmd
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        t0 = time.time()
        print(" ".join(cmd_run[2:]), flush=True)
        subprocess.run(cmd_run, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        print(f"  {time.time() - t0:.0f} s wall", flush=True)
    record = json.loads((run / "metrics.json").read_text())
    if "pretrain" not in record:  # runs made before metrics.json carried it: read the checkpoint
        import torch

        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
        record["pretrain"] = state["extra"].get("pretrain", {})
    shown = [str(c) if not str(c).startswith(str(ROOT) + "/") else str(c)[len(str(ROOT)) + 1:] for c in cmd[3:]]
    record["command"] = "mixvae " + " ".join(c for c in shown if c != "--quiet")
    return record


def read_history(run: Path) -> list:
    path = Path(run) / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(float(values[0]))
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_json(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")
