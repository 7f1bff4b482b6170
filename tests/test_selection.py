"""``mixvae select`` / ``select_n_clusters``: the rule, the paired standard errors, a tiny run end to end."""
import json
import warnings

import matplotlib.image
import numpy as np
import pytest

from pyro_mixvae import selection
from pyro_mixvae.cli import main
from pyro_mixvae.selection import _add_paired_se, choose, split_holdout

warnings.simplefilter("ignore", FutureWarning)
import arviz as az  # noqa: E402


def _rows(lls, stabilities, rng):
    """Rows as _row makes them: per-restart pointwise values (R=2, N=200) around the given means."""
    rows = []
    for k, (ll, stab) in enumerate(zip(lls, stabilities), start=2):
        pointwise = ll + 0.3 * rng.standard_normal((2, 200))
        rows.append({"model": "vade", "k": k, "heldout_ll": float(pointwise.mean()), "pointwise": pointwise,
                     "stability": stab})
    _add_paired_se(rows)
    return rows


def test_rule_takes_the_best_likelihood_among_the_most_stable():
    rng = np.random.default_rng(0)
    # the likelihood keeps rising with K; K = 2 and 4 are (nearly) perfectly stable, K >= 5 are not
    rows = _rows([-12.0, -11.0, -10.0, -9.9, -9.8, -9.7], [0.995, 0.7, 1.0, 0.9, 0.85, 0.8], rng)
    chosen, reason = choose(rows)
    assert chosen["k"] == 4 and "K=4" in reason and "K=7" in reason  # the best likelihood is named too
    rows = _rows([-12.0, -11.0, -10.0], [0.95, 0.99, 0.7], rng)
    assert choose(rows)[0]["k"] == 3
    # a tolerance on stability lets the likelihood decide between nearly equally stable candidates
    rows = _rows([-12.0, -11.0, -10.0, -9.0], [0.5, 1.0, 0.6, 0.99], rng)
    assert choose(rows)[0]["k"] == 3 and choose(rows, stability_tie=0.02)[0]["k"] == 5
    one_restart = _rows([-12.0, -10.0, -10.0, -9.99], [np.nan] * 4, rng)  # no stability: smallest plausible K
    assert choose(one_restart)[0]["k"] == 3


def test_reason_warns_where_restarts_left_components_empty():
    rng = np.random.default_rng(2)
    rows = _rows([-12.0, -11.0, -10.0], [0.95, 0.99, 0.7], rng)
    for row, used in zip(rows, (2.0, 3.0, 4.0)):
        row["clusters_used"] = used
    assert "Warning" not in choose(rows)[1]
    rows[2]["clusters_used"] = 3.5  # one of two restarts at K = 4 used three clusters
    reason = choose(rows)[1]
    assert "left components empty at vade K=4 (3.5 used on average)" in reason and "K=3" not in reason.split("Warning")[1]
    rows[2]["effective_components"] = 3.5  # a prior that prunes components (the factorial prior's Dirichlet)
    assert "Warning" not in choose(rows)[1]


def test_paired_se_is_az_compare_dse_per_point():
    """N x paired_se equals ArviZ's dse for the same pointwise values (WAIC of two identical draws = the values)."""
    rng = np.random.default_rng(1)
    a = -10 + rng.standard_normal(150)
    b = a - 0.2 + 0.5 * rng.standard_normal(150)
    rows = [{"model": "m", "k": k, "heldout_ll": float(v.mean()), "pointwise": v[None], "stability": 1.0}
            for k, v in ((2, a), (3, b))]
    _add_paired_se(rows)
    idata = {f"k{r['k']}": az.from_dict(posterior={"t": np.zeros((1, 2))},
                                         log_likelihood={"x": np.repeat(r["pointwise"][None], 2, 1)})
             for r in rows}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(idata, ic="waic", method="BB-pseudo-BMA", seed=0)
    assert rows[1]["paired_se"] * 150 == pytest.approx(table.loc["k3", "dse"], rel=1e-6)
    assert rows[1]["ll_diff"] * 150 == pytest.approx(table.loc["k3", "elpd_diff"], rel=1e-6)


def test_holdout_split_is_disjoint_and_refuses_bad_fractions():
    train, held = split_holdout(100, 0.2, seed=3)
    assert len(held) == 20 and not set(train) & set(held) and len(train) + len(held) == 100
    assert main(["select", "--data", "digits", "--holdout", "1.5"]) == 2


@pytest.fixture(scope="module")
def blobs(blobs_file):
    """3 groups of 30 points in [0, 1]^10, as a .npz."""
    return blobs_file(90, 10, 3, noise=0.03)


ARGS = ["--clusters", "2-3", "--restarts", "2", "--epochs", "2", "--pretrain-epochs", "2", "--batch-size", "30",
        "--set", "hidden=16", "--set", "gmm_assign=diag", "--set", "gmm_restarts=1", "--iw-samples", "5",
        "--device", "cpu", "--quiet"]


def test_select_end_to_end_and_resumes(blobs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["select", "--data", str(blobs), "--models", "vade,factorial", *ARGS,
                 "--set", "latent_dim=2", "--set", "dim=2", "--set", "prior_init_iters=1", "--out", str(out)]) == 0
    saved = json.loads((out / "selection.json").read_text())
    assert [(r["model"], r["k"]) for r in saved["table"]] == [("vade", 2), ("vade", 3), ("factorial", 2),
                                                               ("factorial", 3)]
    assert saved["chosen"]["k"] in (2, 3) and saved["reason"].startswith(f"{saved['chosen']['model']} K=")
    assert all("effective_components" in r for r in saved["table"] if r["model"] == "factorial")
    assert all(0 <= r["stability"] <= 1 or np.isnan(r["stability"]) for r in saved["table"])
    assert len(list((out / "candidates").glob("*.npz"))) == 8
    text = (out / "selection.md").read_text()
    assert "Chosen:" in text and "](selection.png)" in text and "mixvae select" in text
    image = matplotlib.image.imread(out / "selection.png")
    assert image.shape[0] > 100 and image[..., :3].std() > 0.01
    capsys.readouterr()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished candidate was trained again")

    monkeypatch.setattr(selection, "_train_candidate", no_training)
    assert main(["select", "--data", str(blobs), "--models", "vade,factorial", *ARGS,
                 "--set", "latent_dim=2", "--set", "dim=2", "--set", "prior_init_iters=1", "--out", str(out)]) == 0
    assert json.loads((out / "selection.json").read_text())["chosen"] == saved["chosen"]


def test_select_refuses_a_setting_no_model_has(blobs, capsys):
    assert main(["select", "--data", str(blobs), "--set", "nonsense=1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixvae: error:") and "\n" not in err and "nonsense" in err


def test_estimator_form_returns_a_table(blobs):
    x = np.load(blobs)["x"]
    from pyro_mixvae.infer.train import TrainConfig

    result = selection.select_n_clusters(x, [2, 3], restarts=2, holdout=0.25, iw_samples=5, progress=False,
                                         settings={"vade": {"latent_dim": 2, "hidden": (16,), "gmm_assign": "diag",
                                                            "gmm_restarts": 1}},
                                         config=TrainConfig(epochs=1, pretrain_epochs=1, batch_size=30, device="cpu"))
    frame = result.to_frame()
    assert list(frame["k"]) == [2, 3] and {"heldout_ll", "paired_se", "diff_se", "stability"} <= set(frame.columns)
    assert result.heldout_points == 22 and result.chosen["k"] in (2, 3)
