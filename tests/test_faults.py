"""Fault injection on run directories (issue 19): every fault ends in one line, never a traceback.

Families: a checkpoint that would run code; two writers on one directory and a stale lock;
resume with changed flags, data or architecture; SIGINT / SIGTERM in pretraining, mid-epoch
(eager and traced loss) and during the checkpoint write; damaged files; a read-only directory;
bad data; the non-finite guard. Signals are real (``os.kill`` of this process at a chosen
point, or of a subprocess at a moment of its run); the runs are tiny (3 steps per epoch).
"""
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_mixvae.cli import main
from pyro_mixvae.infer import train as train_module
from pyro_mixvae.infer.checkpoint import load_checkpoint
from pyro_mixvae.models import VaDE
from pyro_mixvae.runs import read_history, run_lock

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "hidden=16,16", "--set", "latent_dim=2"]
SIGINT, SIGTERM = int(signal.SIGINT), int(signal.SIGTERM)


def fit_args(data, out, *extra, jit=False, epochs=2, checkpoint_seconds=0):
    """A tiny run; a checkpoint every epoch unless ``checkpoint_seconds`` says otherwise."""
    return ["fit", "vade", "--data", str(data), "--out", str(out), "--epochs", str(epochs), "--pretrain-epochs", "0",
            "--batch-size", "40", "--quiet", "--device", "cpu", *TINY, "--jit" if jit else "--no-jit",
            "--checkpoint-seconds", str(checkpoint_seconds), *extra]


def without_tiny_keys_of(argv, extra):
    """``argv`` less TINY's ``--set`` pairs for the keys that ``extra`` sets or overrides: a key given twice,
    or by ``--set`` and ``--override`` at once, is refused by itself (issue 32)."""
    keys = {a.split("=")[0] for a in extra if "=" in a}
    drop = {i for i in range(len(argv) - 1) if argv[i] == "--set" and argv[i + 1] in TINY
            and argv[i + 1].split("=")[0] in keys}
    return [a for i, a in enumerate(argv) if i not in drop and i - 1 not in drop]


def cli(argv, capsys):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.err.strip(), captured.out


def one_line(err, *needles):
    assert err.startswith("mixvae: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle.lower() in err.lower(), err


def no_stray(run):
    assert not list(Path(run).rglob("*.tmp")) and not (Path(run) / ".lock").exists()


def params(run):
    return load_checkpoint(Path(run) / "checkpoint.pt")["model"]


def same_params(a, b):
    pa, pb = params(a), params(b)
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def consistent(run, epoch):
    """The checkpoint is from ``epoch``, the history ends there, metrics.json says incomplete, nothing stray."""
    assert load_checkpoint(Path(run) / "checkpoint.pt")["epoch"] == epoch
    assert [r["epoch"] for r in read_history(run)] == list(range(1, epoch + 1))
    metrics = json.loads((Path(run) / "metrics.json").read_text())
    assert metrics["complete"] is False and metrics["epochs"] == epoch
    no_stray(run)
    return metrics


@pytest.fixture(scope="module")
def data(blobs_file):
    """3 groups of 40 points in [0, 1]^8, as a .npz."""
    return blobs_file(120, 8, 3)


@pytest.fixture(scope="module")
def refs(data, tmp_path_factory):
    """Uninterrupted 2-epoch runs, eager (False) and traced (True)."""
    base = tmp_path_factory.mktemp("refs")
    for jit in (False, True):
        assert main(fit_args(data, base / f"jit{jit}", jit=jit)) == 0
    return {jit: base / f"jit{jit}" for jit in (False, True)}


def copy_run(ref, tmp_path, name="run"):
    return Path(shutil.copytree(ref, tmp_path / name))


def snapshot(run):
    return {p.name: p.read_bytes() for p in Path(run).iterdir() if p.is_file()}


# ----------------------------------------------------------------------------- 1. no code on load
class _Payload:
    """Unpickling this calls open(marker, 'w'): a file appears if the loader runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path, marker, raw):
    obj = {"epoch": 1, "model": _Payload(marker)}
    if raw:
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path)


def test_the_payload_is_real(tmp_path):
    marker = tmp_path / "pwned"
    _plant(tmp_path / "c.pt", marker, raw=False)
    torch.load(tmp_path / "c.pt", weights_only=False)  # what the loader did before
    assert marker.exists()


@pytest.mark.parametrize("command", ["evaluate", "sample", "report", "resume", "evaluate-raw-pickle"])
def test_a_malicious_checkpoint_is_refused_without_running_code(command, refs, data, tmp_path, capsys):
    run, marker = copy_run(refs[False], tmp_path), tmp_path / "pwned"
    _plant(run / "checkpoint.pt", marker, raw=command.endswith("raw-pickle"))
    argv = {"sample": ["sample", run, "--out", tmp_path / "s.png"], "report": ["report", run],
            "resume": fit_args(data, run, "--resume", epochs=3)}.get(command, ["evaluate", run])
    rc, err, _ = cli(argv, capsys)
    assert rc == 2
    one_line(err, str(run / "checkpoint.pt"), "refused")
    assert not marker.exists()


# ----------------------------------------------------------------------------- 2. one writer per directory
def test_a_second_writer_is_refused_naming_the_holder(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    before = snapshot(run)
    with run_lock(run, "test"):
        for argv in (fit_args(data, run, "--resume", epochs=3), ["report", run]):
            rc, err, _ = cli(argv, capsys)
            assert rc == 2
            one_line(err, "in use", f"pid {os.getpid()}")
        assert {k: v for k, v in snapshot(run).items() if k != ".lock"} == before
    new = tmp_path / "new"
    new.mkdir()
    with run_lock(new, "test"):  # another fit, before its first checkpoint
        rc, err, _ = cli(fit_args(data, new), capsys)
        assert rc == 2 and (new / ".lock").exists()  # the holder's directory is left alone
        one_line(err, "in use")


def test_a_lock_left_by_a_killed_process_does_not_block(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX);"
            " os.write(fd, b'%d' % os.getpid()); os.kill(os.getpid(), 9)")
    assert subprocess.run([sys.executable, "-c", code, str(run / ".lock")]).returncode == -9
    assert (run / ".lock").exists()
    rc, err, _ = cli(fit_args(data, run, "--resume", epochs=3), capsys)
    assert rc == 0, err
    no_stray(run)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_two_fits_started_together_leave_one_consistent_run(data, tmp_path):
    run = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "pyro_mixvae", *fit_args(data, run, "--seed", str(s), epochs=3)],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (0, 1)]
    results = [(p.wait(timeout=120), p.communicate()[1].strip()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    winner = [s for s, (rc, _) in enumerate(results) if rc == 0][0]
    loser_err = [err for rc, err in results if rc == 2][0]
    assert "in use" in loser_err or "already holds a run" in loser_err
    one_line(loser_err)
    metrics = json.loads((run / "metrics.json").read_text())
    state = load_checkpoint(run / "checkpoint.pt")
    cfg = json.loads((run / "config.json").read_text())
    assert metrics["seed"] == state["config"]["seed"] == cfg["train"]["seed"] == winner
    assert [r["epoch"] for r in read_history(run)] == [1, 2, 3] and state["epoch"] == 3
    no_stray(run)


# ----------------------------------------------------------------------------- 3. resume keeps the run's settings
def test_a_resume_that_changes_settings_is_refused_listing_the_differences(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    before = snapshot(run)
    for extra, needles in [(["--lr", "0.01", "--batch-size", "20"], ["lr 0.002 -> 0.01", "batch-size 40 -> 20"]),
                           (["--set", "latent_dim=3"], ["latent_dim 2 -> 3"]),
                           (["--likelihood", "bernoulli"], ["likelihood"]),
                           (["--clusters", "4"], ["clusters 3 -> 4"]),
                           (["--override", "hidden=8,8"], ["does not fit"]),
                           (["--override", "model=gmvae"], ["--override model"]),
                           (["--override", "lr=-1"], ["lr"])]:
        rc, err, _ = cli(without_tiny_keys_of(fit_args(data, run, "--resume", *extra, epochs=3), extra), capsys)
        assert rc == 2, extra
        one_line(err, *needles)
        assert snapshot(run) == before  # nothing rewritten
    rc, err, _ = cli(fit_args(data, tmp_path / "new", "--override", "lr=1e-4"), capsys)
    assert rc == 2
    one_line(err, "--override applies only with --resume")


def test_an_override_is_applied_for_real_and_recorded(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    rc, err, _ = cli(fit_args(data, run, "--resume", "--override", "lr=1e-4", epochs=3), capsys)
    assert rc == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["lr"] == 1e-4 and cfg["overrides"] == [{"lr": [0.002, 0.0001]}]
    last = read_history(run)[-1]
    state = load_checkpoint(run / "checkpoint.pt")
    # the new lr under the warm-up still in progress (WarmupStepDecay: 9 steps done of 100)
    lr = 1e-4 * min(1.0, (state["scheduler"]["steps"] + 1) / cfg["train"]["lr_warmup"])
    assert state["scheduler"]["steps"] == 9 and cfg["train"]["lr_warmup"] == 100
    assert last["epoch"] == 3 and last["changed"] == {"lr": [0.002, 0.0001]} and last["lr"] == pytest.approx(lr)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [pytest.approx(lr)]
    # flags left out on resume take the recorded values (and the resumed run needs no --data)
    rc, err, _ = cli(["fit", "vade", "--out", run, "--resume", "--epochs", "4", "--quiet"], capsys)
    assert rc == 0, err
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 4


def test_resume_evaluate_and_report_refuse_changed_data(data, tmp_path, capsys):
    mine, run = tmp_path / "d.npz", tmp_path / "run"
    shutil.copy(data, mine)
    assert cli(fit_args(mine, run, epochs=1), capsys)[0] == 0
    recorded = json.loads((run / "config.json").read_text())["data_fingerprint"]
    with np.load(mine) as arrays:
        x, y = arrays["x"].copy(), arrays["y"]
    assert recorded["sha256"] == hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    assert recorded["shape"] == [120, 8] and recorded["dtype"] == "float32"
    x[0, 0] = 1 - x[0, 0]
    np.savez(mine, x=x, y=y)
    for argv in (fit_args(mine, run, "--resume", epochs=2), ["evaluate", run], ["report", run]):
        rc, err, _ = cli(argv, capsys)
        assert rc == 2, argv
        one_line(err, "differ")
    rc, err, _ = cli(fit_args(data, run, "--resume", epochs=2), capsys)  # another file named on resume
    assert rc == 2
    one_line(err, "data")
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1


# ----------------------------------------------------------------------------- 4. clean interrupts
@pytest.mark.parametrize("sig,jit", [(SIGINT, False), (SIGTERM, False), (SIGINT, True), (SIGTERM, True)])
def test_an_interrupt_mid_epoch_keeps_the_last_checkpoint_and_resumes_exactly(sig, jit, refs, data, tmp_path,
                                                                              capsys, monkeypatch):
    real, calls = train_module.svi_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # epoch 2, step 2
            os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "svi_step", step)
    run = tmp_path / "run"
    rc, err, _ = cli(fit_args(data, run, jit=jit), capsys)
    assert rc == 128 + sig
    one_line(err, signal.Signals(sig).name, "--resume")
    assert consistent(run, 1)["stopped"] == f"interrupted by {signal.Signals(sig).name}"
    monkeypatch.undo()
    rc, err, out = cli(["evaluate", run], capsys)  # the run says it is incomplete
    assert rc == 0 and json.loads(out)["complete"] is False
    one_line(err, "incomplete", "epoch 1 of 2")
    rc, err, _ = cli(fit_args(data, run, "--resume", jit=jit), capsys)
    assert rc == 0, err
    assert same_params(run, refs[jit])
    assert json.loads((run / "metrics.json").read_text())["complete"] is True
    no_stray(run)


def test_an_interrupt_between_checkpoints_resumes_from_the_last_one_exactly(refs, data, tmp_path, capsys,
                                                                              monkeypatch):
    real, calls = train_module.svi_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # epoch 2, step 2; no checkpoint since epoch 0
            os.kill(os.getpid(), SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "svi_step", step)
    run = tmp_path / "run"
    rc, err, _ = cli(fit_args(data, run, checkpoint_seconds=3600), capsys)
    assert rc == 128 + SIGINT
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 0
    assert [r["epoch"] for r in read_history(run)] == [1]  # past the checkpoint: dropped when the run resumes
    monkeypatch.undo()
    rc, err, _ = cli(fit_args(data, run, "--resume", checkpoint_seconds=3600), capsys)
    assert rc == 0, err
    assert same_params(run, refs[False])
    assert [r["epoch"] for r in read_history(run)] == [1, 2] and load_checkpoint(run / "checkpoint.pt")["epoch"] == 2
    no_stray(run)


@pytest.mark.parametrize("sig", [SIGINT, SIGTERM])
def test_an_interrupt_during_the_checkpoint_write_completes_it_first(sig, refs, data, tmp_path, capsys, monkeypatch):
    real, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # epoch 1's checkpoint (call 1 is epoch 0)
            os.kill(os.getpid(), sig)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    rc, err, _ = cli(fit_args(data, run), capsys)
    assert rc == 128 + sig
    one_line(err, "--resume")
    consistent(run, 1)
    monkeypatch.undo()
    assert cli(fit_args(data, run, "--resume"), capsys)[0] == 0
    assert same_params(run, refs[False])


@pytest.mark.parametrize("sig", [SIGINT, SIGTERM])
def test_an_interrupt_in_pretraining_says_nothing_was_kept(sig, data, tmp_path, capsys, monkeypatch):
    real = VaDE.pretrain

    def pretrain(self, *args, **kwargs):
        os.kill(os.getpid(), sig)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(VaDE, "pretrain", pretrain)
    run = tmp_path / "run"
    rc, err, _ = cli(fit_args(data, run, "--pretrain-epochs", "1"), capsys)
    assert rc == 128 + sig
    one_line(err, "before the first checkpoint", "nothing was kept")
    assert "--resume" not in err and not run.exists()
    run.mkdir()  # an --out that existed before the run is kept, empty
    rc, err, _ = cli(fit_args(data, run, "--pretrain-epochs", "1"), capsys)
    assert rc == 128 + sig and list(run.iterdir()) == []
    one_line(err, "nothing of this run was kept")


@pytest.mark.parametrize("sig,jit", [(SIGINT, True)])  # the other pairs: in-process above
def test_a_signal_at_any_moment_of_a_real_run_ends_in_one_line(sig, jit, data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = fit_args(data, run, "--batch-size", "4", jit=jit, epochs=500)
    proc = subprocess.Popen([sys.executable, "-m", "pyro_mixvae", *argv], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while len(read_history(run)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.07)  # somewhere inside an epoch of 30 steps
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    one_line(err.strip(), "--resume")
    epoch = load_checkpoint(run / "checkpoint.pt")["epoch"]
    assert epoch >= 2
    consistent(run, epoch)


def test_leftover_temporary_files_are_removed_at_start(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    (run / "checkpoint.pt.k3j2_x.tmp").write_bytes(b"half a checkpoint")  # what a SIGKILL mid-write leaves
    (run / "history.jsonl.a1.tmp").write_text("{")
    assert cli(fit_args(data, run, "--resume", epochs=3), capsys)[0] == 0
    no_stray(run)


# ----------------------------------------------------------------------------- 5. a damaged run directory
def _wrong_shape(run):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3, 3)
    torch.save(state, run / "checkpoint.pt")


DAMAGE = {
    "truncated checkpoint": lambda run: (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:5000]),
    "empty checkpoint": lambda run: (run / "checkpoint.pt").write_bytes(b""),
    "random checkpoint": lambda run: (run / "checkpoint.pt").write_bytes(np.random.default_rng(0).bytes(4096)),
    "wrong-shaped checkpoint": _wrong_shape,
    "foreign checkpoint": lambda run: torch.save({"weights": torch.zeros(2)}, run / "checkpoint.pt"),
    "missing config": lambda run: (run / "config.json").unlink(),
    "corrupt config": lambda run: (run / "config.json").write_text('{"model": "vade", '),
    "config not an object": lambda run: (run / "config.json").write_text("[]"),
    "config without keys": lambda run: (run / "config.json").write_text("{}"),
    "history damaged mid-file": lambda run: (run / "history.jsonl").write_text('{"epoch": 1}\n{oops\n{"epoch": 2}\n'),
}
NEEDLES = {"missing config": "config.json", "history damaged mid-file": "history.jsonl is damaged at line 2"}


@pytest.mark.parametrize("command", ["evaluate", "resume", "report"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_directory_is_one_line(damage, command, refs, data, tmp_path, capsys):
    if damage.startswith("history") and command == "evaluate":
        pytest.skip("evaluate does not read the history")
    run = copy_run(refs[False], tmp_path)
    DAMAGE[damage](run)
    argv = {"evaluate": ["evaluate", run], "report": ["report", run, "--num-samples", "2", "--max-points", "30"],
            "resume": fit_args(data, run, "--resume", epochs=3)}[command]
    rc, err, _ = cli(argv, capsys)
    assert rc == 2
    one_line(err, NEEDLES.get(damage, "history.jsonl" if "history" in damage else
                               "config.json" if "config" in damage else "checkpoint.pt"))
    no_stray(run)


def test_a_torn_last_history_line_is_tolerated_and_cut_to_the_checkpoint(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    with open(run / "history.jsonl", "a") as f:
        f.write('{"epoch": 3, "elbo": -1')  # killed while appending
    assert [r["epoch"] for r in read_history(run)] == [1, 2]
    rc, err, _ = cli(fit_args(data, run, "--resume", epochs=3), capsys)
    assert rc == 0, err
    lines = (run / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_a_corrupt_metrics_file_is_one_line_for_report_and_ignored_by_evaluate(refs, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    (run / "metrics.json").write_text("{\"acc\": ")
    assert cli(["evaluate", run], capsys)[0] == 0
    rc, err, _ = cli(["report", run], capsys)
    assert rc == 2
    one_line(err, "metrics.json", "damaged")


def test_report_of_an_interrupted_run_says_it_is_incomplete(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["complete"] is True and metrics["epochs_planned"] == 2
    (run / "metrics.json").write_text(json.dumps({"complete": False, "stopped": "interrupted by SIGINT", "epochs": 2}))
    with open(run / "history.jsonl", "a") as f:
        f.write('{"epoch": 3, "el')
    rc, err, out = cli(["report", run, "--num-samples", "2", "--max-points", "30"], capsys)
    assert rc == 0, err
    summary = (run / "report" / "summary.md").read_text()
    assert "**Incomplete**: the run is incomplete: interrupted by SIGINT at epoch 2 of 2" in summary
    no_stray(run)


def _read_only(run, argv):
    """Run ``argv`` with ``run`` read-only: chmod for a user, a read-only bind mount for root."""
    if os.geteuid() != 0:
        run.chmod(0o555)
        try:
            return main([str(a) for a in argv]), None
        finally:
            run.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("root ignores permissions and unshare is missing: no read-only directory to test")
    script = (f"mount --bind -o ro {run} {run} || exit 97; exec {sys.executable} -m pyro_mixvae "
              + " ".join(map(str, argv)))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], env=_env(), capture_output=True, text=True)
    if proc.returncode == 97 or proc.stderr.startswith("unshare:"):
        pytest.skip(f"no read-only bind mount here: {proc.stderr.strip()}")
    return proc.returncode, proc.stderr.strip()


def test_a_read_only_run_directory_is_refused_for_resume_in_one_line(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    rc, err = _read_only(run, fit_args(data, run, "--resume", epochs=3))
    err = err if err is not None else capsys.readouterr().err.strip()
    assert rc == 2
    one_line(err, "not writable")
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2


def test_zero_columns_and_a_nan_csv_label_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "empty.npz", x=np.zeros((30, 0), dtype=np.float32))
    (tmp_path / "nan.csv").write_text("a,b,label\n" + "".join(f"{i / 10},{1 - i / 10},{'nan' if i == 3 else i % 2}\n"
                                                               for i in range(10)))
    for name, needle in [("empty.npz", "no features"), ("nan.csv", "non-finite value 'nan' in data row 4")]:
        rc, err, _ = cli(fit_args(tmp_path / name, tmp_path / "run"), capsys)
        assert rc == 2
        one_line(err, needle)
        assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 6. the run directory tells the truth
def test_config_records_every_value_used(refs):
    cfg = json.loads((refs[False] / "config.json").read_text())
    expected = {k: (list(s.default) if isinstance(s.default, tuple) else s.default) for k, s in VaDE.settings.items()}
    expected.update(hidden=[16, 16], latent_dim=2)
    assert cfg["settings"] == expected
    assert cfg["settings_given"] == {"hidden": "16,16", "latent_dim": "2"}
    assert all(v is not None for v in cfg["train"].values())
    assert cfg["construction"]["settings"] == expected and cfg["likelihood"] == "gaussian-shared"


# ----------------------------------------------------------------------------- 7. the non-finite guard
def test_the_non_finite_guard_fires_before_metrics_and_keeps_a_checkpoint_that_evaluates(data, tmp_path, capsys):
    run = tmp_path / "run"
    # one step per epoch; the step's loss is finite, its update (lr 1e30) is not usable
    rc, err, _ = cli(fit_args(data, run, "--batch-size", "120", "--lr", "1e30"), capsys)
    assert rc == 1
    one_line(err, "epoch 1, step 1", "last good checkpoint (epoch 0)")
    assert "proba" not in err
    consistent(run, 0)
    rc, err, out = cli(["evaluate", run], capsys)
    assert rc == 0 and np.isfinite(json.loads(out)["elbo"])


# ----------------------------------------------------------------------------- 8. identity before use (issue 32)
@pytest.fixture(scope="module")
def others(data, blobs_file, tmp_path_factory):
    """Runs whose checkpoints do not belong beside refs[False]'s config.json: GMVAE, VaDE with K = 4, VaDE on other
    data of the same shape."""
    base = tmp_path_factory.mktemp("others")
    gmvae = fit_args(data, base / "gmvae")
    gmvae[1] = "gmvae"
    assert main(gmvae) == 0
    assert main(fit_args(data, base / "k4", "--clusters", "4")) == 0
    assert main(fit_args(blobs_file(120, 8, 3, noise=0.1), base / "other-data", "--clusters", "3")) == 0
    return {name: base / name for name in ("gmvae", "k4", "other-data")}


def _commands(run, data, tmp_path):
    return {"evaluate": ["evaluate", run], "report": ["report", run, "--num-samples", "2", "--max-points", "30"],
            "sample": ["sample", run, "--out", tmp_path / "s.png"], "resume": fit_args(data, run, "--resume", epochs=3)}


@pytest.mark.parametrize("swap,needles", [("gmvae", ["model gmvae in the checkpoint, vade in config.json"]),
                                          ("k4", ["K 4 in the checkpoint, 3 in config.json"]),
                                          ("other-data", ["data sha256", "in the checkpoint"])])
def test_a_checkpoint_from_another_run_is_refused_naming_both_sides(swap, needles, refs, others, data, tmp_path,
                                                                    capsys):
    run = copy_run(refs[False], tmp_path)
    shutil.copy(others[swap] / "checkpoint.pt", run / "checkpoint.pt")
    before = snapshot(run)
    for command, argv in _commands(run, data, tmp_path).items():
        rc, err, out = cli(argv, capsys)
        assert rc == 2, (command, out)
        one_line(err, "does not belong to", *needles)
        assert snapshot(run) == before and not (run / "report").exists() and not (tmp_path / "s.png").exists()
        no_stray(run)


def test_a_checkpoint_from_before_the_fingerprint_still_loads_and_is_checked_on_the_rest(refs, others, tmp_path,
                                                                                        capsys):
    run = copy_run(refs[False], tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state.pop("data_fingerprint")["sha256"] == json.loads((run / "config.json").read_text())["data_fingerprint"]["sha256"]
    torch.save(state, run / "checkpoint.pt")
    rc, err, out = cli(["evaluate", run, "--iw-samples", "0"], capsys)
    assert rc == 0, err
    assert json.loads(out)["model"] == "vade"
    old_k4 = torch.load(others["k4"] / "checkpoint.pt", weights_only=True)
    del old_k4["data_fingerprint"]
    torch.save(old_k4, run / "checkpoint.pt")
    rc, err, _ = cli(["evaluate", run], capsys)
    assert rc == 2
    one_line(err, "K 4 in the checkpoint, 3 in config.json")


@pytest.mark.parametrize("damage", ["emptied", "removed", "first line gone"])
def test_resume_refuses_a_history_that_lacks_the_checkpoints_epochs(damage, refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    history = run / "history.jsonl"
    {"emptied": lambda: history.write_text(""), "removed": history.unlink,
     "first line gone": lambda: history.write_text(history.read_text().splitlines()[1] + "\n")}[damage]()
    before = snapshot(run)
    rc, err, _ = cli(fit_args(data, run, "--resume", epochs=3), capsys)
    assert rc == 2
    one_line(err, "history.jsonl", "checkpoint.pt is from epoch 2")
    assert snapshot(run) == before
    no_stray(run)


def test_metrics_count_the_epochs_of_a_resumed_run(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    assert cli(fit_args(data, run, "--resume", epochs=3), capsys)[0] == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 == load_checkpoint(run / "checkpoint.pt")["epoch"] and metrics["complete"] is True


WRONG_TYPES = {"clusters": ("clusters", "3"), "model": ("model", 5), "data": ("data", ["x"]), "split": ("split", 1),
               "train": ("train", []), "settings": ("settings", "x"), "likelihood": ("likelihood", None),
               "train.epochs": ("train.epochs", "2"), "train.lr": ("train.lr", "fast"), "train.seed": ("train.seed", 1.5),
               "setting": ("settings.latent_dim", "two"), "unknown model": ("model", "nosuch"),
               "fingerprint": ("data_fingerprint.shape", "120x8"), "overrides": ("overrides", {"lr": 1}),
               "negative K": ("clusters", -3)}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_a_config_field_of_the_wrong_type_is_one_line(case, refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    key, value = WRONG_TYPES[case]
    cfg = json.loads((run / "config.json").read_text())
    *parents, last = key.split(".")
    target = cfg
    for part in parents:
        target = target[part]
    target[last] = value
    (run / "config.json").write_text(json.dumps(cfg))
    before = snapshot(run)
    for command, argv in _commands(run, data, tmp_path).items():
        rc, err, _ = cli(argv, capsys)
        assert rc == 2, command
        one_line(err, "config.json")
        assert snapshot(run) == before
    no_stray(run)


def test_a_checkpoint_with_nan_parameters_is_refused_by_sample_evaluate_and_report(refs, data, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = torch.full_like(state["model"][key], float("nan"))
    torch.save(state, run / "checkpoint.pt")
    for command in ("evaluate", "sample", "report"):
        rc, err, _ = cli(_commands(run, data, tmp_path)[command], capsys)
        assert rc == 2, command
        one_line(err, "non-finite parameters", key)
    assert not (tmp_path / "s.png").exists() and not (run / "report").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_says_so(refs, capsys):
    rc, err, _ = cli(["evaluate", refs[False], "--device", "cuda"], capsys)
    assert rc == 2
    one_line(err, "CUDA is not available")
    assert "damaged" not in err


def test_report_on_a_read_only_run_directory_says_to_use_out(refs, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    rc, err = _read_only(run, ["report", run])
    err = err if err is not None else capsys.readouterr().err.strip()
    assert rc == 2
    one_line(err, "not a writable directory", f"mixvae report {run} --out DIR")
    assert not (run / "report").exists()
    rc, err = _read_only(run, ["report", run, "--out", tmp_path / "elsewhere", "--num-samples", "2", "--max-points", "30"])
    assert rc == 0, err
    assert (tmp_path / "elsewhere" / "summary.md").is_file()


@pytest.mark.parametrize("damage,needles", [
    ("foreign metrics", ["metrics.json does not belong to this run", "model gmvae in metrics.json, vade in config.json"]),
    ("metrics of another epoch", ["epochs 7 in metrics.json, 2 in config.json and the checkpoint"]),
    ("definitions not an object", ["metrics.json is damaged", "definitions"]),
    ("pretrain a list", ["metrics.json is damaged", "pretrain"]),
    ("an elbo that is text", ["history.jsonl is damaged", "epoch 2 has elbo \"x\""]),
])
def test_report_shows_no_numbers_of_another_run_or_of_a_damaged_file(damage, needles, refs, others, tmp_path, capsys):
    run = copy_run(refs[False], tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    if damage == "foreign metrics":
        shutil.copy(others["gmvae"] / "metrics.json", run / "metrics.json")
    elif damage == "an elbo that is text":
        lines = (run / "history.jsonl").read_text().splitlines()
        (run / "history.jsonl").write_text(lines[0] + "\n" + json.dumps({**json.loads(lines[1]), "elbo": "x"}) + "\n")
    else:
        key, value = {"metrics of another epoch": ("epochs", 7), "definitions not an object": ("definitions", []),
                      "pretrain a list": ("pretrain", [1])}[damage]
        (run / "metrics.json").write_text(json.dumps({**metrics, key: value}))
    rc, err, _ = cli(["report", run, "--num-samples", "2", "--max-points", "30"], capsys)
    assert rc == 2
    one_line(err, *needles)
    assert not (run / "report" / "summary.md").exists()
    rc, err, out = cli(["evaluate", run, "--iw-samples", "0"], capsys)  # evaluate does not need either file
    assert rc == 0 and json.loads(out)["model"] == "vade"
