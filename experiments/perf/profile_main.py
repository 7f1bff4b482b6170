"""Where the seconds of a `mixvae fit` command go: import, data, pretraining, the mixture start,
SVI steps, per-epoch metrics, checkpoints, the final evaluation and the rest.

The command runs in this process under cProfile (its overhead is small next to torch's kernels);
the phases are the cumulative times of the functions that do them. The import is timed in a fresh
interpreter. Output: one markdown table (stdout, and appended to ``--out`` with the command).

    python experiments/perf/profile_main.py                       # the README's main job
    python experiments/perf/profile_main.py --label before -- fit vade --data digits --epochs 20
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (phase, module file, function): the cumulative time of the function is the phase's
PHASES = [
    ("data", "data.py", "load_dataset"),
    ("pretraining (autoencoder)", "pretrain.py", "pretrain_autoencoder"),
    ("mixture start (t-SNE + GMM)", "pretrain.py", "fit_diag_gmm"),
    ("SVI steps", "train.py", "_epoch_steps"),
    ("per-epoch metrics", "callbacks.py", "__call__@LabelMetrics"),
    ("checkpoints", "checkpoint.py", "save_checkpoint"),
    ("final evaluation", "runner.py", "_final_metrics"),
]
MAIN_JOB = ["fit", "vade", "--data", "digits"]


def import_seconds() -> float:
    """Seconds to import the command line in a fresh interpreter."""
    code = "import time; t = time.perf_counter(); import pyro_mixvae.cli; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def cumulative(stats: pstats.Stats, filename: str, function: str) -> float:
    """Cumulative seconds of ``function`` in a file ending in ``filename`` (``name@Class`` for a method
    whose name is shared: the line range of the class's method in callbacks.py picks it)."""
    name, _, owner = function.partition("@")
    total = 0.0
    for (file, line, func), (_, _, _, ct, _) in stats.stats.items():
        if func == name and file.endswith(filename) and (not owner or _defined_in(file, line, owner)):
            total += ct
    return total


def _defined_in(file: str, line: int, owner: str) -> bool:
    """Whether line ``line`` of ``file`` lies in the body of ``class owner``."""
    lines = Path(file).read_text().splitlines()
    for i in range(line - 1, -1, -1):
        if lines[i].startswith("class "):
            return lines[i].startswith(f"class {owner}")
    return False


def profile(argv: list) -> dict:
    """Run ``mixvae ARGV`` (a fresh run directory) under cProfile: {phase: seconds}, with the wall time."""
    from pyro_mixvae import cli

    with tempfile.TemporaryDirectory() as tmp:
        argv = argv + ([] if "--out" in argv else ["--out", str(Path(tmp) / "run")])
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        rc = cli.main(argv)
        profiler.disable()
        wall = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"mixvae {' '.join(argv)} exited with {rc}")
    stats = pstats.Stats(profiler)
    phases = {name: cumulative(stats, f, fn) for name, f, fn in PHASES}
    phases["the rest (bars, history, config, report)"] = wall - sum(phases.values())
    return {"wall": wall, **phases}


def table(label: str, argv: list, imported: float, phases: dict) -> str:
    total = imported + phases["wall"]
    rows = [f"| import | {imported:.1f} | {100 * imported / total:.0f}% |"]
    rows += [f"| {k} | {v:.1f} | {100 * v / total:.0f}% |" for k, v in phases.items() if k != "wall"]
    return "\n".join([f"### {label}: `mixvae {' '.join(argv)}`", "",
                      f"{total:.1f} s in all ({imported:.1f} s import + {phases['wall']:.1f} s command).", "",
                      "| phase | seconds | share |", "| --- | --- | --- |", *rows, ""])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", default="main job")
    p.add_argument("--out", default=None, help="markdown file the table is appended to")
    p.add_argument("command", nargs="*", default=None, help="mixvae arguments after --; default: " + " ".join(MAIN_JOB))
    args = p.parse_args(argv)
    command = args.command or MAIN_JOB
    out = table(args.label, command, import_seconds(), profile(list(command)))
    print(out)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(f"\n`python {' '.join(sys.argv)}`\n\n{out}")


if __name__ == "__main__":
    main()
