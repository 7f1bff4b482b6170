"""``mixvae`` end to end on small data, and every bad input refused in one line."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY
from pyro_mixvae import data as data_module
from pyro_mixvae.cli import main
from pyro_mixvae.infer.train import TRAIN_DEFAULTS

FAST = ["--epochs", "2", "--pretrain-epochs", "1", "--batch-size", "40", "--quiet", "--device", "cpu"] + TINY


def _fit(args, tmp_path, name="run"):
    out = tmp_path / name
    return main(["fit", "vade", *args, "--out", str(out)]), out


def test_fit_evaluate_sample_on_a_new_npz(blobs_npz, tmp_path, capsys):
    rc, out = _fit(["--data", str(blobs_npz), *FAST], tmp_path)
    assert rc == 0
    printed = capsys.readouterr().out
    assert "acc" in printed and "Hungarian" in printed and "nmi" in printed and "ari" in printed
    for name in ("config.json", "checkpoint.pt", "history.jsonl", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("acc", "acc_cluster_label", "acc_majority", "nmi", "ari", "elbo", "clusters_used",
                "train_seconds", "dataset", "model", "seed"):
        assert key in metrics, key
    assert set(metrics["definitions"]) >= {"acc", "acc_cluster_label", "acc_majority"}
    assert 0 <= metrics["acc"] <= 1 and np.isfinite(metrics["elbo"])  # a density: positive where the data vary little
    assert len((out / "history.jsonl").read_text().splitlines()) == 2

    assert main(["evaluate", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert abs(evaluated["acc"] - metrics["acc"]) < 1e-9

    png = tmp_path / "s.png"
    assert main(["sample", str(out), "--n", "9", "--cluster", "1", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_on_the_command_line_continues_the_run(blobs_npz, tmp_path):
    common = ["--data", str(blobs_npz), "--pretrain-epochs", "1", "--batch-size", "40", "--quiet",
              "--device", "cpu", *TINY]
    assert _fit([*common, "--epochs", "3"], tmp_path, "a")[0] == 0
    assert _fit([*common, "--epochs", "1"], tmp_path, "b")[0] == 0
    assert main(["fit", "vade", *common, "--epochs", "3", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["elbo"] == b["elbo"] and a["acc"] == b["acc"]


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _bad_inputs(tmp_path, blobs_npz):
    good = np.random.default_rng(0).uniform(size=(30, 4)).astype(np.float32)
    nan = good.copy()
    nan[3, 1] = np.nan
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    not_dir = tmp_path / "file.txt"
    not_dir.write_text("x")
    return {
        "unknown model": (["fit", "nosuchmodel", "--data", str(blobs_npz)], "unknown model"),
        "unknown data": (["fit", "vade", "--data", "nosuchdata"], "unknown data set"),
        "missing files": (["fit", "vade", "--data", "mnist"], "looked"),
        "wrong format": (["fit", "vade", "--data", str(garbage)], "not a valid .npz"),
        "nan": (["fit", "vade", "--data", _npz(tmp_path, "nan.npz", x=nan)], "NaN"),
        "bernoulli range": (["fit", "vade", "--data", _npz(tmp_path, "big.npz", x=good * 3), "--likelihood",
                             "bernoulli"], "outside [0, 1]"),
        "K < 1": (["fit", "vade", "--data", str(blobs_npz), "--clusters", "0"], "--clusters"),
        "K > N": (["fit", "vade", "--data", str(blobs_npz), "--clusters", "1000"], "--clusters"),
        "npz without x": (["fit", "vade", "--data", _npz(tmp_path, "nox.npz", data=good)], "x"),
        "labels length": (["fit", "vade", "--data", _npz(tmp_path, "y.npz", x=good, y=np.arange(5))], "label"),
        "unknown --set": (["fit", "vade", "--data", str(blobs_npz), "--set", "nosuch=1"], "unknown setting"),
        "--set type": (["fit", "vade", "--data", str(blobs_npz), "--set", "latent_dim=abc"], "latent_dim"),
        "negative epochs": (["fit", "vade", "--data", str(blobs_npz), "--epochs", "-1"], "epochs"),
        "no such device": (["fit", "vade", "--data", str(blobs_npz), "--device", "cuda:7"], "device"),
        "unknown device": (["fit", "vade", "--data", str(blobs_npz), "--device", "tpu"], "device"),
        "unwritable out": (["fit", "vade", "--data", str(blobs_npz), "--out", str(not_dir / "run")], "--out"),
        "resume without checkpoint": (["fit", "vade", "--data", str(blobs_npz), "--resume"], "resume"),
        "epochs not a number": (["fit", "vade", "--data", str(blobs_npz), "--epochs", "many"], "epochs"),
    }


CASES = ["unknown model", "unknown data", "missing files", "wrong format", "nan", "bernoulli range", "K < 1",
         "K > N", "npz without x", "labels length", "unknown --set", "--set type", "negative epochs",
         "no such device", "unknown device", "unwritable out", "resume without checkpoint", "epochs not a number"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_in_one_line_and_leaves_no_run_directory(case, tmp_path, blobs_npz, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(data_module, "SYSTEM_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("MIXVAE_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    argv, expected = _bad_inputs(tmp_path, blobs_npz)[case]
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "run")]
    before = set(p.name for p in tmp_path.iterdir())
    rc = main(argv[:2] + FAST + argv[2:])  # the case's own flags come last and win
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("mixvae: error:") and "\n" not in err and "Traceback" not in err
    assert expected.lower() in err.lower(), err
    assert not (tmp_path / "run").exists()
    assert set(p.name for p in tmp_path.iterdir()) == before


def test_non_finite_loss_exits_non_zero_and_keeps_last_good_checkpoint(tmp_path, capsys):
    x = np.full((40, 3), 1e25, dtype=np.float32)  # squared residuals overflow float32
    x[::2] *= -1
    path = _npz(tmp_path, "huge.npz", x=x)
    out = tmp_path / "run"
    rc = main(["fit", "vade", "--data", path, "--clusters", "2", "--pretrain-epochs", "0", "--epochs", "2",
               "--quiet", "--device", "cpu", "--out", str(out), *TINY])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert "epoch 1, step 1" in err and "last good checkpoint (epoch 0)" in err
    assert (out / "checkpoint.pt").is_file()
    stopped = json.loads((out / "metrics.json").read_text())  # the run is marked incomplete, not evaluated
    assert stopped["complete"] is False and stopped["epochs"] == 0 and "non-finite" in stopped["stopped"]


def test_console_script_reports_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pyro_mixvae", "fit", "vade", "--data", "nosuchdata",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("mixvae: error:")


@pytest.mark.parametrize("model", ["vade", "gmvae", "factorial"])
def test_settings_lists_every_key_in_aligned_columns(model, capsys):
    from pyro_mixvae.models import get_model_class

    assert main(["settings", model]) == 0
    out = capsys.readouterr().out.splitlines()
    cut = out.index("model settings (--set KEY=VALUE):")
    training, lines = out[1:cut], out[cut + 1:]
    assert [line.split()[0] for line in training] == ["--" + k.replace("_", "-") for k in TRAIN_DEFAULTS]
    keys = list(get_model_class(model).settings)
    assert [line.split()[0] for line in lines] == keys
    starts = {len(line) - len(line[2 + len(key):].lstrip()) for line, key in zip(lines, keys)}
    assert len(starts) == 1  # the longest key sets the column
