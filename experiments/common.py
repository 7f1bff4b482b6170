"""What the experiment scripts share: run ``mixvae fit`` resumably, read runs back, format tables.

A run lives in its own directory; :func:`run_fit` skips it when ``metrics.json`` exists and
adds ``--resume`` when only a checkpoint does, so an interrupted script is simply started again.
Training runs one at a time with ``OMP_NUM_THREADS`` threads (1 by default: these machines have
2 cores, and two 2-thread processes slow each other far more than they gain).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
RUNS = HERE / "runs"


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

        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
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
