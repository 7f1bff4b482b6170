"""Property-based tests (issue 32): random and damaged input to the loaders, the settings parser and the
run-directory readers ends in a correct result or a clear error -- the project's one-line errors, or exit
status 2 with one line on stderr -- never a traceback.

Everything runs in-process; the one training run (a tiny VaDE) is made once, outside the examples.
"""
import json
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_mixvae.cli import _key_value, build_parser, main
from pyro_mixvae.data import Dataset, load_dataset
from pyro_mixvae.errors import MixVAEError
from pyro_mixvae.infer.checkpoint import load_checkpoint
from pyro_mixvae.models import get_model_class
from pyro_mixvae.models.base import parse_settings
from pyro_mixvae.runs import model_from_checkpoint, read_config, read_history

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW = settings(FAST, max_examples=25)
TINY = ["--set", "hidden=16,16", "--set", "latent_dim=2"]


def one_line(err: str) -> None:
    assert err.startswith("mixvae: ") and "\n" not in err and "Traceback" not in err, err


def a_good_dataset(d: Dataset) -> None:
    """What every loader promises of what it returns."""
    assert d.x.dtype == np.float32 and d.x.ndim in (2, 4) and len(d.x) >= 2 and np.isfinite(d.x).all()
    assert 0 not in d.x.shape[1:]
    assert d.y is None or (d.y.dtype == np.int64 and d.y.shape == (len(d.x),))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


# ----------------------------------------------------------------------------- the loaders
@FAST
@given(content=st.binary(max_size=300))
def test_any_bytes_named_npz_load_or_are_refused_in_one_line(content, folder):
    path = folder / "bytes.npz"
    path.write_bytes(content)
    try:
        a_good_dataset(load_dataset(str(path)))
    except MixVAEError as e:
        assert "\n" not in str(e) and "pickled" not in str(e)


DTYPES = st.sampled_from([np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_, np.complex64, np.str_,
                          np.float16])


@FAST
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=5), dtype=DTYPES,
       fill=st.sampled_from([0.0, 0.5, 1.0, -3.0, np.nan, np.inf]), labels=st.sampled_from([None, "ints", "floats",
                                                                                            "nan", "short", "text"]))
def test_any_arrays_in_an_npz_load_as_promised_or_are_refused(shape, dtype, fill, labels, folder):
    with np.errstate(invalid="ignore"):  # NaN and inf cast to integers: whatever NumPy makes of them
        x = np.full(shape, fill).astype(dtype) if dtype is not np.str_ else np.full(shape, "a")
    n = shape[0] if shape else 0
    y = {None: None, "ints": np.arange(n) % 3, "floats": np.arange(n) / 2, "nan": np.full(n, np.nan),
         "short": np.arange(max(n - 1, 0)), "text": np.array(["a"] * n)}[labels]
    path = folder / "arrays.npz"
    np.savez(path, x=x, **({} if y is None else {"y": y}))
    d = loaded_or_refused_in_one_line(path)
    if d is not None:
        assert d.x.shape[0] == n and (labels is None) == (d.y is None)



def loaded_or_refused_in_one_line(path):
    """The data set ``load_dataset`` reads from ``path`` (checked by :func:`a_good_dataset`), or None when it
    refuses the file with a one-line error."""
    try:
        d = load_dataset(str(path))
    except MixVAEError as e:
        assert "\n" not in str(e)
        return None
    a_good_dataset(d)
    return d

CSV_ALPHABET = string.digits + ",;.\t\"- \neE" + "\ufeff"
CSV_TOKENS = st.sampled_from(["label", "y", "class", "a", "b", "nan", "inf", "1,5", "2.25", "-3", '"', '"4"', "\n",
                              ",", ";", "\t", "\ufeff", " ", "x", ""])


@FAST
@given(text=st.one_of(st.text(CSV_ALPHABET, max_size=200), st.lists(CSV_TOKENS, max_size=60).map("".join)))
def test_any_text_named_csv_loads_as_promised_or_is_refused_in_one_line(text, folder):
    path = folder / "text.csv"
    path.write_text(text, encoding="utf-8")
    d = loaded_or_refused_in_one_line(path)
    if d is not None:
        assert d.x.ndim == 2


@FAST
@given(values=st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=2, max_size=2),
                       min_size=2, max_size=8),
       style=st.sampled_from([",", ";", "\t"]), decimal_comma=st.booleans(), quoted=st.booleans(), bom=st.booleans(),
       label_first=st.booleans())
def test_a_csv_written_in_any_common_style_reads_back_the_same_numbers(values, style, decimal_comma, quoted, bom,
                                                                       label_first, folder):
    decimal_comma = decimal_comma and style != ","  # a ','-separated file has decimal points
    labels = [i % 3 for i in range(len(values))]

    def cell(v):
        text = repr(float(np.float32(v))) if not isinstance(v, str) else v
        text = text.replace(".", ",") if decimal_comma and not isinstance(v, str) else text
        return f'"{text}"' if quoted else text

    def line(cells):
        return style.join(cells) + "\n"

    header = ["label", "a", "b"] if label_first else ["a", "b", "label"]
    rows = [[str(c), *map(cell, v)] if label_first else [*map(cell, v), str(c)] for v, c in zip(values, labels)]
    text = ("\ufeff" if bom else "") + line(cell(h) if quoted else h for h in header) + "".join(map(line, rows))
    path = folder / "style.csv"
    path.write_text(text, encoding="utf-8")
    d = load_dataset(str(path))
    assert d.x.tolist() == np.asarray(values, dtype=np.float32).tolist() and d.y.tolist() == labels
    assert d.label_column == "label"


# ----------------------------------------------------------------------------- the settings parser
SETTING_TEXT = st.text(string.ascii_letters + string.digits + "=_,.-+ eE", max_size=30)


@FAST
@given(model=st.sampled_from(["vade", "gmvae", "vib-gmm", "factorial"]), texts=st.lists(SETTING_TEXT, max_size=4))
def test_any_set_values_parse_to_checked_settings_or_are_refused(model, texts):
    argv = ["settings", model]
    for text in texts:
        argv += ["--set", text]
    try:
        args = build_parser().parse_args(argv)
        values = parse_settings(model, get_model_class(model).settings, dict(args.settings))
    except MixVAEError as e:
        assert "\n" not in str(e)
        return
    given_keys = {_key_value(t)[0] for t in texts}
    assert given_keys <= set(values) and set(values) == set(get_model_class(model).settings)


@SLOW
@given(texts=st.lists(SETTING_TEXT, max_size=3), override=st.booleans())
def test_the_command_line_answers_any_set_with_a_result_or_one_line(texts, override, capsys):
    argv = ["settings", "vade", "--json"] + [a for t in texts for a in ("--override" if override else "--set", t)]
    rc = main(argv)
    out, err = capsys.readouterr()
    if rc == 0:
        assert set(json.loads(out)["settings"]) == set(get_model_class("vade").settings)
    else:
        assert rc == 2
        one_line(err.strip())


# ----------------------------------------------------------------------------- the run-directory readers
@pytest.fixture(scope="module")
def run(blobs_file, tmp_path_factory):
    """One tiny trained run (made once, outside the examples)."""
    out = tmp_path_factory.mktemp("prop-run") / "run"
    data = blobs_file(120, 8, 3)
    assert main(["fit", "vade", "--data", str(data), "--out", str(out), "--epochs", "2", "--pretrain-epochs", "0",
                 "--batch-size", "40", "--quiet", "--device", "cpu", "--no-jit", "--checkpoint-seconds", "0",
                 *TINY]) == 0
    return out


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=6)


def _paths(obj, prefix=()):
    """Every key path of a nested dict."""
    for key, value in obj.items():
        yield prefix + (key,)
        if isinstance(value, dict):
            yield from _paths(value, prefix + (key,))


@SLOW
@given(data=st.data())
def test_evaluate_sample_and_resume_answer_any_damaged_config_with_a_result_or_one_line(data, run, folder, capsys):
    cfg = json.loads((run / "config.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(sorted(_paths(cfg))))
        target = cfg
        for key in path[:-1]:
            target = target[key]
        if data.draw(st.booleans()):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = data.draw(JSON_VALUES)
    copy = folder / "damaged-config"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    (copy / "config.json").write_text(json.dumps(cfg))
    command = data.draw(st.sampled_from(["evaluate", "sample", "resume"]))
    rc = main({"evaluate": ["evaluate", str(copy), "--iw-samples", "0"],
               "sample": ["sample", str(copy), "--n", "4", "--out", str(folder / "s.png")],
               "resume": ["fit", "vade", "--out", str(copy), "--resume", "--epochs", "3", "--quiet"]}[command])
    out, err = capsys.readouterr()
    if rc == 0:
        assert command != "evaluate" or np.isfinite(json.loads(out)["elbo"])
        read_config(copy)  # accepted: then every field a command reads has its type
    else:
        assert rc == 2
        one_line(err.strip())


@FAST
@given(text=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(['{"epoch": 1}', '{"epoch": 2, "elbo": -1}', "{",
                                                                       "[]", '{"epoch": "1"}', "", "null", "\n"]),
                                                      max_size=8).map("\n".join)))
def test_any_history_reads_as_epoch_records_or_is_one_line(text, folder):
    (folder / "history.jsonl").write_text(text)
    try:
        records = read_history(folder)
    except MixVAEError as e:
        assert "\n" not in str(e)
        return
    assert all(isinstance(r, dict) and isinstance(r["epoch"], int) for r in records)


@SLOW
@given(cut=st.integers(0, 10 ** 6), flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=4))
def test_any_damaged_checkpoint_loads_a_model_or_is_one_line(cut, flips, run, folder):
    raw = bytearray((run / "checkpoint.pt").read_bytes())
    raw = raw[:cut % (len(raw) + 1)] if cut % 3 == 0 else raw
    for where, value in flips:
        if raw:
            raw[where % len(raw)] = value
    path = folder / "checkpoint.pt"
    path.write_bytes(bytes(raw))
    try:
        model = model_from_checkpoint(load_checkpoint(path), path)
    except MixVAEError as e:
        assert "\n" not in str(e)
        return
    assert model.n_clusters == 3


@SLOW
@given(data=st.data())
def test_any_checkpoint_field_replaced_is_used_correctly_or_refused_in_one_line(data, run, folder, capsys):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    field = data.draw(st.sampled_from(["epoch", "construction", "config", "model", "data_fingerprint", "extra"]))
    value = data.draw(st.one_of(JSON_VALUES, st.just(torch.full((2,), float("nan")))))
    if field == "model" and data.draw(st.booleans()):  # a parameter of another shape or value
        key = data.draw(st.sampled_from(sorted(state["model"])))
        state["model"][key] = data.draw(st.sampled_from([torch.zeros(1), torch.full_like(state["model"][key], float("nan"))
                                                         if state["model"][key].is_floating_point() else torch.zeros(1)]))
    else:
        state[field] = value
    copy = folder / "damaged-checkpoint"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    torch.save(state, copy / "checkpoint.pt")
    rc = main(["evaluate", str(copy), "--iw-samples", "0"])
    out, err = capsys.readouterr()
    if rc == 0:
        assert np.isfinite(json.loads(out)["elbo"]) and json.loads(out)["model"] == "vade"
    else:
        assert rc == 2
        one_line(err.strip())


def test_the_examples_above_do_not_touch_the_run(run):
    assert Path(run / "checkpoint.pt").is_file() and load_checkpoint(run / "checkpoint.pt")["epoch"] == 2
