"""experiments/fashion_peer.py (issue 34) on a small file: a killed run of ours resumes, a finished one is
skipped, a recorded peer seed is not run again, and the table reads accuracy at a time budget."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
import fashion_peer  # noqa: E402

TINY = "--pretrain-epochs 1 --set hidden=8 --set latent_dim=2 --set gmm_assign=diag --set hold_start=0"


def test_ours_resumes_a_killed_run_and_skips_a_finished_one(tmp_path, blobs_npz):
    from pyro_mixvae.cli import main as mixvae

    results, runs = tmp_path / "results", tmp_path / "runs"
    run = runs / "fashion_peer" / "vade-s0"
    # a run stopped after its first epoch, as an interrupt leaves it: a checkpoint, metrics.json incomplete
    assert mixvae(["fit", "vade", "--data", str(blobs_npz), "--seed", "0", "--out", str(run), "--epochs", "1",
                   "--quiet", "--device", "cpu", *TINY.split()]) == 0
    first = (run / "history.jsonl").read_text().splitlines()
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "complete": False}))

    args = ["--side", "ours", "--seeds", "0", "--data", str(blobs_npz), "--results", str(results), "--runs", str(runs),
            "--epochs", "2", "--fit-args", TINY]
    fashion_peer.main(args)
    history = (run / "history.jsonl").read_text().splitlines()
    assert len(history) == 2 and history[0] == first[0]  # resumed from epoch 1, not started over
    assert json.loads((run / "metrics.json").read_text())["complete"] is True

    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    fashion_peer.main(args)  # finished: nothing trains, nothing is recorded twice
    assert (run / "checkpoint.pt").stat().st_mtime_ns == stamp
    records = [json.loads(line) for line in (results / "fashion_peer.jsonl").read_text().splitlines()]
    assert [r["side"] for r in records] == ["ours"] and len(records[0]["curve"]) == 2


def test_a_recorded_peer_seed_is_skipped_and_the_table_reads_the_budget(tmp_path, blobs_npz, capsys):
    results = tmp_path / "results"
    data = str(blobs_npz)
    fashion_peer.append(results, {"side": "peer", "seed": 0, "data": data, "acc": 0.6, "nmi": 0.5, "wall_seconds": 100})
    fashion_peer.append(results, {"side": "ours", "model": "vade", "seed": 0, "data": data, "acc": 0.7, "nmi": 0.6,
                                  "curve": [[30, 0.5, 0.4, -10.0], [60, 0.55, 0.45, -9.0], [120, 0.7, 0.6, -8.0]]})
    # the peer's folder does not exist: running seed 0 would fail, skipping it does not
    fashion_peer.main(["--side", "peer", "--seeds", "0", "--data", data, "--results", str(results),
                       "--peer-site", str(tmp_path / "absent"), "--table"])
    out = capsys.readouterr().out
    assert "peer seed 0: recorded, skipped" in out
    assert "| pyro_mixvae vade | the peer's time (1.7 min) | 1 | 0.550 ± 0.000 |" in out  # epoch 2: 60 s <= 100 s
    assert "| pyro_mixvae vade | half the peer's time (0.8 min) | 1 | 0.500 ± 0.000 |" in out  # epoch 1: 30 s <= 50 s


def test_the_budget_reads_the_last_evaluated_epoch_within_it():
    curve = [(10.0, 0.5, 0.4, -3.0), (20.0, None, None, -2.5), (30.0, 0.6, 0.5, -2.0)]
    assert fashion_peer.at_budget(curve, 25.0) == curve[0]  # epoch 2 has no metrics: epoch 1's
    assert fashion_peer.at_budget(curve, 30.0) == curve[2]
    assert fashion_peer.at_budget(curve, 5.0) is None


def test_a_labelled_configuration_has_its_own_runs_and_rows(tmp_path, blobs_npz, capsys):
    """``--label`` names a configuration (a model with its --fit-args): its run directories LABEL-sS, its records
    and its own rows in the table, beside the model's unlabelled rows."""
    results, runs, data = tmp_path / "results", tmp_path / "runs", str(blobs_npz)
    fashion_peer.main(["--side", "ours", "--seeds", "0", "--data", data, "--results", str(results), "--runs", str(runs),
                       "--epochs", "1", "--label", "vade-tiny", "--fit-args", TINY])
    assert (runs / "fashion_peer" / "vade-tiny-s0" / "checkpoint.pt").is_file()
    assert not (runs / "fashion_peer" / "vade-s0").exists()
    fashion_peer.append(results, {"side": "peer", "seed": 0, "data": data, "acc": 0.6, "nmi": 0.5, "wall_seconds": 1e6})
    fashion_peer.append(results, {"side": "ours", "model": "vade", "seed": 0, "data": data, "acc": 0.7, "nmi": 0.6,
                                  "curve": [[30, 0.5, 0.4, -10.0]]})
    fashion_peer.main(["--table", "--data", data, "--results", str(results)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pyro_mixvae")]
    assert sum(r.startswith("| pyro_mixvae vade-tiny | ") for r in rows) == 3  # two budgets and the whole run
    assert sum(r.startswith("| pyro_mixvae vade | ") for r in rows) == 3
    records = [json.loads(line) for line in (results / "fashion_peer.jsonl").read_text().splitlines()]
    assert [r.get("label") for r in records if r["side"] == "ours"] == ["vade-tiny", None]


def test_a_peer_run_slowed_by_the_machine_gives_its_acc_but_no_budget(tmp_path, capsys):
    results, data = tmp_path / "results", "some.npz"
    fashion_peer.append(results, {"side": "peer", "seed": 0, "data": data, "acc": 0.6, "nmi": 0.5, "wall_seconds": 60})
    fashion_peer.append(results, {"side": "peer", "seed": 1, "data": data, "acc": 0.5, "nmi": 0.5, "wall_seconds": 6000,
                                  "loaded": True})
    fashion_peer.main(["--table", "--data", data, "--results", str(results)])
    assert "| ClustPy VaDE (defaults) | 1.0 min (1 of 2 seeds timed) | 2 | 0.550 ± 0.071 |" in capsys.readouterr().out
