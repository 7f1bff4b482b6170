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
        "--set type": (["fit", "vade", "--data", str(blobs_npz), "--set", "latent_dim=abc"], "latent_dim='abc'"),
        "negative epochs": (["fit", "vade", "--data", str(blobs_npz), "--epochs", "-1"], "epochs"),
        "no such device": (["fit", "vade", "--data", str(blobs_npz), "--device", "cuda:7"], "device"),
        "unknown device": (["fit", "vade", "--data", str(blobs_npz), "--device", "tpu"], "device"),
        "unwritable out": (["fit", "vade", "--data", str(blobs_npz), "--out", str(not_dir / "run")], "--out"),
        "resume without checkpoint": (["fit", "vade", "--data", str(blobs_npz), "--resume"], "resume"),
        "epochs not a number": (["fit", "vade", "--data", str(blobs_npz), "--epochs", "many"], "epochs"),
    }


def _fast_without(argv):
    """FAST less the --set keys that ``argv`` gives itself (a key given twice is refused)."""
    own = {a.split("=")[0] for a in argv if "=" in a}
    out, i = [], 0
    while i < len(FAST):
        if FAST[i] == "--set" and FAST[i + 1].split("=")[0] in own:
            i += 2
            continue
        out.append(FAST[i])
        i += 1
    return out


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
    rc = main(argv[:2] + _fast_without(argv) + argv[2:])  # the case's own flags take the place of FAST's
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


# ----------------------------------------------------------------------------- flags that cannot contradict (issue 32)
def _refused(argv, capsys, *needles):
    """``argv`` ends in one line naming ``needles`` and exit status 2."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("mixvae: error:") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle.lower() in err.lower(), err
    return err


def test_a_setting_given_twice_is_refused_naming_both_values(blobs_npz, tmp_path, capsys):
    _refused(["settings", "vade", "--set", "latent_dim=2", "--set", "latent_dim=3"], capsys,
             "--set gives latent_dim twice", "latent_dim=2", "latent_dim=3")
    _refused(["fit", "vade", "--data", blobs_npz, "--out", tmp_path / "run", "--set", "latent_dim=2", "--set",
              "latent_dim=3"], capsys, "latent_dim=2 and latent_dim=3")
    _refused(["select", "--data", blobs_npz, "--out", tmp_path / "sel", "--set", "hidden=8", "--set", "hidden=9"],
             capsys, "hidden=8 and hidden=9")
    assert not (tmp_path / "run").exists() and not (tmp_path / "sel").exists()
    assert main(["settings", "vade", "--set", "latent_dim=3", "--set", "latent_dim=3", "--json"]) == 0  # no conflict
    assert json.loads(capsys.readouterr().out)["settings"]["latent_dim"] == 3


@pytest.fixture(scope="module")
def tiny_run(blobs_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["fit", "vade", "--data", str(blobs_npz), *FAST, "--out", str(out)]) == 0
    return out


def test_an_override_and_its_flag_or_a_second_override_are_refused_naming_both_values(tiny_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    resume = ["fit", "vade", "--out", run, "--resume", "--epochs", "3", "--quiet"]
    _refused([*resume, "--override", "lr=1e-3", "--lr", "1e-4"], capsys, "--lr 0.0001", "--override lr=1e-3", "two values")
    _refused([*resume, "--override", "lr=1e-3", "--override", "lr=1e-4"], capsys, "lr=1e-3 and lr=1e-4")
    _refused([*resume, "--override", "s=2", "--set", "s=1"], capsys, "--set s=1", "--override s=2")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # a flag that agrees with its override is no contradiction
    assert main([str(a) for a in [*resume, "--override", "lr=1e-3", "--lr", "0.001"]]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 1e-3


@pytest.mark.parametrize("flag", [["--split", "test"], ["--split", "train"], ["--download"]])
def test_an_option_that_does_not_apply_to_the_data_is_refused_not_recorded(flag, blobs_npz, tmp_path, capsys):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    for data in (blobs_npz, csv, "digits"):
        _refused(["fit", "vade", "--data", data, "--out", tmp_path / "run", *flag], capsys, flag[0], "does not apply")
        assert not (tmp_path / "run").exists()
    if flag[0] == "--split":
        _refused(["select", "--data", blobs_npz, "--out", tmp_path / "sel", *flag], capsys, "--split", "does not apply")
        assert not (tmp_path / "sel").exists()


def test_evaluate_refuses_a_split_for_a_file(tiny_run, capsys):
    _refused(["evaluate", tiny_run, "--split", "test"], capsys, "--split test does not apply")


# ----------------------------------------------------------------------------- boundaries (issue 32)
@pytest.mark.parametrize("seed", ["-1", str(2 ** 32), str(2 ** 40)])
def test_a_seed_outside_numpys_range_is_one_line(seed, blobs_npz, tiny_run, tmp_path, capsys):
    for argv in (["fit", "vade", "--data", blobs_npz, "--out", tmp_path / "run", *FAST],
                 ["select", "--data", blobs_npz, "--out", tmp_path / "sel"],
                 ["sample", tiny_run, "--out", tmp_path / "s.png"],
                 ["report", tiny_run, "--out", tmp_path / "report"]):
        _refused([*argv, "--seed", seed], capsys, "--seed", "2**32 - 1", seed)
    assert list(tmp_path.iterdir()) == []


def test_the_last_restarts_seed_must_be_in_range_too(blobs_npz, tmp_path, capsys):
    _refused(["fit", "vade", "--data", blobs_npz, "--out", tmp_path / "run", *FAST, "--seed", str(2 ** 32 - 1),
              "--restarts", "2"], capsys, "--restarts", str(2 ** 32))
    assert not (tmp_path / "run").exists()


def test_counts_below_one_and_paths_that_cannot_be_written_are_one_line(blobs_npz, tiny_run, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for n in ("0", "-1", str(10 ** 11)):
        _refused(["sample", tiny_run, "--n", n, "--out", tmp_path / "s.png"], capsys, "--n must be between 1 and 10,000")
    _refused(["select", "--data", blobs_npz, "--out", tmp_path / "sel", "--stability-tie", "nan"], capsys,
             "stability tie must be >= 0")
    (tmp_path / "d.png").mkdir()
    _refused(["sample", tiny_run, "--out", tmp_path / "d.png"], capsys, "is a directory")
    _refused(["sample", tiny_run, "--out", a_file / "s.png"], capsys, "not a directory")
    _refused(["report", tiny_run, "--iw-samples", "-1"], capsys, "--iw-samples must be >= 0")
    assert not (tiny_run / "report").exists()  # refused before any folder is created
    _refused(["report", tiny_run, "--out", a_file], capsys, "exists and is not a directory")
    _refused(["select", "--data", blobs_npz, "--out", a_file, "--clusters", "2-3"], capsys,
             f"--out {a_file} exists and is not a directory")
    _refused(["select", "--data", blobs_npz, "--out", tmp_path / "sel", "--iw-samples", "0"], capsys,
             "--iw-samples must be >= 1")
    _refused(["evaluate", tiny_run, "--iw-samples", "-1"], capsys, "--iw-samples must be >= 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "d.png"]


def test_more_factorial_components_than_points_is_one_line(blobs_npz, tmp_path, capsys):
    for setting in ("components=200", "components=3,200"):
        _refused(["fit", "factorial", "--data", blobs_npz, "--out", tmp_path / "run", *FAST[:-len(TINY)],
                  "--set", "factors=2" if "," in setting else "factors=1", "--set", setting, "--set", "hidden=8"],
                 capsys, "200 components", "only 120 points")
        assert not (tmp_path / "run").exists()


def test_the_estimators_refuse_bad_counts_and_seeds_with_a_value_error_naming_the_argument(blobs_npz):
    from pyro_mixvae import VaDE, FactorialMixtureVAE

    x = np.load(blobs_npz)["x"]
    for bad in (-1, 2 ** 32, 2 ** 40):
        with pytest.raises(ValueError, match="random_state"):
            VaDE(3, random_state=bad, epochs=1, pretrain_epochs=0, hidden=(8,), latent_dim=2).fit(x)
    with pytest.raises(ValueError, match="random_state"):
        VaDE(3, random_state=2 ** 32 - 1, n_init=2, epochs=1, pretrain_epochs=0, hidden=(8,), latent_dim=2).fit(x)
    with pytest.raises(ValueError, match="components"):
        FactorialMixtureVAE(3, components=(200,), epochs=1, pretrain_epochs=0, hidden=(8,), dim=2).fit(x)
    est = VaDE(3, epochs=1, pretrain_epochs=0, hidden=(8,), latent_dim=2, batch_size=60).fit(x)
    for n in (0, -1, 2.5):
        with pytest.raises((ValueError, TypeError), match="n"):
            est.sample(n)
    assert est.sample(2)[0].shape == (2, 12)


# ----------------------------------------------------------------------------- caches used only for what they were made of
def test_select_never_reuses_candidates_made_from_other_data_or_settings(blobs_npz, blobs_file, tmp_path, capsys):
    out = tmp_path / "sel"
    args = ["select", "--clusters", "2", "--restarts", "1", "--pretrain-epochs", "0", "--batch-size", "60",
            "--iw-samples", "2", "--set", "hidden=8", "--set", "latent_dim=2", "--device", "cpu", "--quiet",
            "--out", out]
    assert main([str(a) for a in [*args, "--data", blobs_npz, "--epochs", "1"]]) == 0
    saved = (out / "selection.json").read_bytes()
    capsys.readouterr()
    other = blobs_file(120, 12, 3, noise=0.1)
    _refused([*args, "--data", other, "--epochs", "1"], capsys, "cannot reuse", "other data", "data_fingerprint.sha256")
    _refused([*args, "--data", blobs_npz, "--epochs", "2"], capsys, "train.epochs 1 -> 2")
    _refused([*args, "--data", blobs_npz, "--epochs", "1", "--holdout", "0.3"], capsys, "holdout 0.2 -> 0.3")
    assert (out / "selection.json").read_bytes() == saved  # the old table is not printed as the new one
    candidate = out / "candidates" / "vade-k2-r0.npz"
    with np.load(candidate) as f:
        arrays = {k: f[k] for k in f.files if k != "identity"}
    np.savez(candidate, **arrays)  # as an earlier mixvae saved it
    _refused([*args, "--data", blobs_npz, "--epochs", "1"], capsys, "does not record the data and settings")
    candidate.write_bytes(b"PK\x03\x04 torn")
    _refused([*args, "--data", blobs_npz, "--epochs", "1"], capsys, "is damaged")
    candidate.unlink()
    assert main([str(a) for a in [*args, "--data", blobs_npz, "--epochs", "1"]]) == 0  # computed again


def test_fit_on_a_csv_with_a_byte_order_mark_keeps_the_label_out_of_the_features_and_says_so(tmp_path, capsys):
    rows = np.random.default_rng(0).uniform(size=(40, 3))
    text = "\ufefflabel;a;b;c\n" + "".join(f"{i % 2};" + ";".join(f"{v:.4f}".replace(".", ",") for v in row) + "\n"
                                           for i, row in enumerate(rows))
    (tmp_path / "sheet.csv").write_bytes(text.encode())
    out = tmp_path / "run"
    assert main(["fit", "vade", "--data", str(tmp_path / "sheet.csv"), "--clusters", "2", *FAST, "--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("sheet: labels from column 'label' (2 classes, used only to score the clustering); 40 points, "
                     "3 feature columns")
    assert json.loads((out / "config.json").read_text())["data_fingerprint"]["shape"] == [40, 3]
