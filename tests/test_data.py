import gzip
import os
import struct

import numpy as np
import pytest
import scipy.io
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from pyro_mixvae import data
from pyro_mixvae.data import (
    DATASETS,
    Dataset,
    check_data,
    in_unit_interval,
    load_dataset,
    make_arcs,
    read_idx,
)
from pyro_mixvae.errors import DataError


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------ named sets

def test_datasets_tuple():
    assert DATASETS == ("digits", "arcs", "mnist", "fashion-mnist", "svhn")


def test_digits():
    d = load_dataset("digits")
    assert isinstance(d, Dataset)
    assert d.x.shape == (1797, 1, 8, 8) and d.x.dtype == np.float32
    assert d.x.min() == 0.0 and d.x.max() == 1.0
    assert d.y.dtype == np.int64 and d.y.shape == (1797,)
    assert d.n == 1797 and d.shape == (1, 8, 8) and d.is_image and d.n_classes == 10
    assert d.name == "digits"
    assert load_dataset("DIGITS", split="test").n == 1797  # split ignored for digits


def test_arcs_shape_and_determinism():
    a, b, c = make_arcs(seed=0), make_arcs(seed=0), make_arcs(seed=1)
    assert a.x.shape == (10000, 2) and a.x.dtype == np.float32 and a.y.dtype == np.int64
    assert not a.is_image and a.n_classes == 5
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.allclose(a.x, c.x)
    assert np.bincount(a.y).tolist() == [2000] * 5
    assert np.allclose(a.x.mean(0), 0, atol=1e-3) and 0.5 < a.x.std() < 2
    d = load_dataset("arcs", seed=1)
    assert np.array_equal(d.x, c.x)
    assert make_arcs(n=101, seed=3).x.shape == (101, 2)


def test_arcs_defeat_kmeans():
    d = make_arcs(seed=0)
    pred = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(d.x)
    table = np.zeros((5, 5))
    np.add.at(table, (pred, d.y), 1)
    rows, cols = linear_sum_assignment(-table)
    acc = table[rows, cols].sum() / d.n
    assert acc < 0.85


def test_unknown_name_and_split():
    with pytest.raises(DataError) as e:
        load_dataset("foo")
    assert_one_line_error(
        e, "unknown data set 'foo'", "digits, arcs, mnist, fashion-mnist, svhn", ".npz", ".csv"
    )
    with pytest.raises(DataError) as e:
        load_dataset("digits", split="valid")
    assert_one_line_error(e, "split 'valid'")


# ------------------------------------------------------------------ idx (MNIST layout)

def write_idx(path, array, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">4B", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with (gzip.open if gz else open)(str(path), "wb") as f:
        f.write(header + array.tobytes())


def fake_mnist(folder, gz=False, n_train=6, n_test=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        parts[prefix] = (images, labels)
    return parts


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MIXVAE_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "DOWNLOAD_DIR", str(tmp_path / "no-downloads"))  # hide files downloaded earlier


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_data_dir(tmp_path, no_env, gz):
    parts = fake_mnist(tmp_path / "mnist", gz=gz)
    train = load_dataset("mnist", split="train", data_dir=str(tmp_path))
    assert train.x.shape == (6, 1, 28, 28) and train.x.dtype == np.float32
    np.testing.assert_allclose(train.x[:, 0], parts["train"][0] / 255.0, rtol=1e-6)
    assert train.y.tolist() == parts["train"][1].tolist() and train.y.dtype == np.int64
    test = load_dataset("mnist", split="test", data_dir=str(tmp_path))
    assert test.x.shape == (4, 1, 28, 28)
    every = load_dataset("mnist", data_dir=str(tmp_path))
    assert every.n == 10 and every.name == "mnist"
    assert np.array_equal(every.x, np.concatenate([train.x, test.x]))
    assert np.array_equal(every.y, np.concatenate([train.y, test.y]))


def test_idx_env_var_and_layouts(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "flat", gz=True)  # files directly in $MIXVAE_DATA_DIR
    monkeypatch.setenv("MIXVAE_DATA_DIR", str(tmp_path / "flat"))
    assert load_dataset("mnist").n == 10
    fake_mnist(tmp_path / "tv" / "FashionMNIST" / "raw", n_train=3, n_test=2)  # torchvision
    monkeypatch.setenv("MIXVAE_DATA_DIR", str(tmp_path / "tv"))
    d = load_dataset("fashion-mnist", split="all")
    assert d.n == 5 and d.name == "fashion-mnist"


def test_idx_data_dir_before_env(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "a" / "mnist", n_train=2, n_test=2)
    fake_mnist(tmp_path / "b" / "mnist", n_train=3, n_test=3)
    monkeypatch.setenv("MIXVAE_DATA_DIR", str(tmp_path / "b"))
    assert load_dataset("mnist").n == 6
    assert load_dataset("mnist", data_dir=str(tmp_path / "a")).n == 4


def test_idx_bad_magic(tmp_path, no_env):
    fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # claims float data
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        load_dataset("mnist", split="train", data_dir=str(tmp_path))
    assert_one_line_error(e, "train-images-idx3-ubyte is not an idx file of images")
    raw[2], raw[3] = 0x08, 0x07  # 7 dimensions
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        load_dataset("mnist", split="train", data_dir=str(tmp_path))
    assert_one_line_error(e, "train-images-idx3-ubyte is not an idx file of images", "magic number")


def test_idx_truncated_and_mismatched(tmp_path, no_env):
    fake_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError) as e:
        load_dataset("mnist", split="test", data_dir=str(tmp_path))
    assert_one_line_error(e, "t10k-images-idx3-ubyte is not an idx file of images", "invalid for input of size")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))  # 6 images, 5 labels
    with pytest.raises(DataError) as e:
        load_dataset("mnist", split="train", data_dir=str(tmp_path))
    assert_one_line_error(e, "6 images", "5 labels")
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as e:
        read_idx(str(tmp_path / "x.gz"), "labels")
    assert_one_line_error(e, "cannot read")


def test_idx_missing(tmp_path, no_env, monkeypatch):
    fake_mnist(tmp_path / "mnist")
    os.remove(tmp_path / "mnist" / "t10k-labels-idx1-ubyte")
    assert load_dataset("mnist", split="train", data_dir=str(tmp_path)).n == 6
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=str(tmp_path))
    assert_one_line_error(
        e, "t10k-labels-idx1-ubyte", str(tmp_path / "mnist"), str(tmp_path / "MNIST" / "raw"),
        "/usr/share/datasets/mnist", "torchvision.datasets.MNIST",
    )
    monkeypatch.setattr(data, "SYSTEM_DIR", str(tmp_path / "system"))  # hide an installed copy
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "nowhere"))
    assert_one_line_error(
        e, "apt-get install dataset-fashion-mnist", str(tmp_path / "nowhere" / "fashion-mnist"),
        str(tmp_path / "nowhere" / "FashionMNIST" / "raw"), str(tmp_path / "system" / "fashion-mnist"),
    )


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_system(no_env):
    d = load_dataset("fashion-mnist", split="test")
    assert d.x.shape == (10000, 1, 28, 28) and d.n_classes == 10
    assert in_unit_interval(d.x)
    # against the idx layout read by hand: 16 header bytes before the images, 8 before the labels
    with gzip.open(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(10000, 28, 28)
    with gzip.open(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    np.testing.assert_array_equal(d.x[:, 0], images / np.float32(255))
    np.testing.assert_array_equal(d.y, labels)


def test_torchvision_layout_is_read_by_its_dataset_class(tmp_path, no_env, monkeypatch):
    parts = fake_mnist(tmp_path / "MNIST" / "raw")
    import torchvision.datasets

    built = []

    class MNIST(torchvision.datasets.MNIST):  # torchvision's layout is named after the class
        def __init__(self, root, train=True, download=False):
            built.append((root, train, download))
            super().__init__(root, train=train, download=download)

    monkeypatch.setattr(data, "_torchvision_dataset", lambda name: MNIST)
    d = load_dataset("mnist", data_dir=str(tmp_path))
    assert built == [(str(tmp_path), True, False), (str(tmp_path), False, False)]
    np.testing.assert_array_equal(d.x[:6, 0], parts["train"][0] / np.float32(255))
    assert d.y.tolist() == parts["train"][1].tolist() + parts["t10k"][1].tolist()


def test_download_uses_torchvision_into_the_data_dir(tmp_path, no_env, monkeypatch):
    import torchvision.datasets

    calls = []

    class MNIST(torchvision.datasets.MNIST):  # no network in tests: the download writes small files
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            if download:
                fake_mnist(tmp_path / "MNIST" / "raw")
            super().__init__(root, train=train, download=False)

    monkeypatch.setattr(data, "_torchvision_dataset", lambda name: MNIST)
    assert load_dataset("mnist", split="train", data_dir=str(tmp_path), download=True).n == 6
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), True, False)]

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried http://..., got: no network")

    monkeypatch.setattr(data, "_torchvision_dataset", lambda name: Offline)
    with pytest.raises(DataError) as e:
        load_dataset("svhn", split="test", data_dir=str(tmp_path / "new"), download=True)
    assert_one_line_error(e, "svhn: torchvision could not download it to", "no network")


# ------------------------------------------------------------------ SVHN

def test_svhn(tmp_path, no_env):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    labels = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(str(tmp_path / "svhn" / "train_32x32.mat"), {"X": images, "y": labels})
    scipy.io.savemat(str(tmp_path / "svhn" / "test_32x32.mat"), {"X": images[..., :2], "y": labels[:2]})
    d = load_dataset("svhn", split="train", data_dir=str(tmp_path))
    assert d.x.shape == (5, 3, 32, 32) and d.x.dtype == np.float32
    assert d.y.tolist() == [0, 1, 2, 0, 9]
    np.testing.assert_allclose(d.x[1, 2], images[:, :, 2, 1] / 255.0, rtol=1e-6)
    assert load_dataset("svhn", data_dir=str(tmp_path)).n == 7
    with pytest.raises(DataError) as e:
        load_dataset("svhn", data_dir=str(tmp_path / "empty"))
    assert_one_line_error(e, "test_32x32.mat", str(tmp_path / "empty" / "svhn"), "torchvision.datasets.SVHN")


# ------------------------------------------------------------------ .npz

def test_npz_flat_and_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    np.savez(tmp_path / "flat.npz", x=x)
    d = load_dataset(str(tmp_path / "flat.npz"))
    assert d.x.shape == (6, 3) and d.x.dtype == np.float32 and d.y is None and d.n_classes is None
    assert d.name == "flat"
    np.savez(tmp_path / "img.npz", x=rng.random((4, 5, 5)), y=np.array([0, 1, 1, 2]))
    d = load_dataset(str(tmp_path / "img.npz"))
    assert d.x.shape == (4, 1, 5, 5) and d.is_image and d.y.dtype == np.int64 and d.n_classes == 3
    np.savez(tmp_path / "rgb.npz", x=rng.random((3, 3, 4, 4)), y=np.array([1.0, 0.0, 1.0]))
    d = load_dataset(str(tmp_path / "rgb.npz"))
    assert d.shape == (3, 4, 4) and d.y.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        (dict(z=np.zeros((3, 2))), "no array 'x' (it has: z)"),
        (dict(x=np.array([["a", "b"], ["c", "d"]])), "numeric"),
        (dict(x=np.zeros(5)), "shape (5,)"),
        (dict(x=np.zeros((2, 1, 1, 1, 1))), "shape (2, 1, 1, 1, 1)"),
        (dict(x=np.array([[0.0, np.nan], [1.0, np.inf]])), "2 NaN or infinite"),
        (dict(x=np.zeros((3, 2)), y=np.array([0, 1])), "y has shape (2,)"),
        (dict(x=np.zeros((3, 2)), y=np.array([0, 1.5, 2])), "integer"),
        (dict(x=np.zeros((1, 2))), "at least 2"),
    ],
)
def test_npz_errors(tmp_path, arrays, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert_one_line_error(e, str(path), fragment)


def test_npz_missing_and_invalid(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "none.npz"))
    assert_one_line_error(e, "does not exist")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file\n at all")
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "junk.npz"))
    assert_one_line_error(e, "is not a valid .npz file")


# ------------------------------------------------------------------ .csv

def test_csv_header_and_string_labels(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("a, b ,Class\n1,2,dog\n3,4.5,cat\n\n5,6,dog\n")
    d = load_dataset(str(path))
    assert d.x.shape == (3, 2) and d.x.dtype == np.float32
    assert d.x.tolist() == [[1, 2], [3, 4.5], [5, 6]]
    assert d.y.tolist() == [1, 0, 1] and d.n_classes == 2 and d.name == "points"


def test_csv_integer_labels_and_no_header(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text("label,x\n3,0.5\n7,0.25\n")
    d = load_dataset(str(path))
    assert d.y.tolist() == [3, 7] and d.x.tolist() == [[0.5], [0.25]]
    path = tmp_path / "plain.csv"
    path.write_text("1,2,3\n4,5,6\n")
    d = load_dataset(str(path))
    assert d.x.shape == (2, 3) and d.y is None


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("a,b\n1,2\n3,x\n", ["non-numeric value 'x'", "column 'b'", "row 3"]),
        ("1,2\n3\n", ["row 2 has 1 fields"]),
        ("", ["is empty"]),
        ("\n\n", ["is empty"]),
        ("a,b\n1,nan\n2,3\n", ["1 NaN or infinite"]),
        ("a,b\n1,2\n", ["at least 2"]),
        ("y,label\n1,2\n3,4\n", ["several label columns"]),
        ("target\n1\n2\n", ["no feature columns"]),
    ],
)
def test_csv_errors(tmp_path, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert_one_line_error(e, *fragments)


def test_csv_missing(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "gone.csv"))
    assert_one_line_error(e, "gone.csv", "does not exist")


# ------------------------------------------------------------------ CSV as users write it (issue 32)
ROWS = [(0.5, 1.25, 0), (1.5, -2.0, 1), (2.0, 3.5, 0)]
EXPECTED_X, EXPECTED_Y = [[r[0], r[1]] for r in ROWS], [r[2] for r in ROWS]


def _write(tmp_path, text, name="users.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


@pytest.mark.parametrize("form,text", [
    ("byte-order mark", "\ufefflabel,a,b\n" + "".join(f"{c},{a},{b}\n" for a, b, c in ROWS)),
    ("quoted numbers", '"a","b","label"\n' + "".join(f'"{a}", "{b}","{c}"\n' for a, b, c in ROWS)),
    ("semicolons, decimal commas", "a;b;label\n" + "".join(f"{a};{b};{c}\n".replace(".", ",") for a, b, c in ROWS)),
    ("semicolons, decimal points", "a;b;label\n" + "".join(f"{a};{b};{c}\n" for a, b, c in ROWS)),
    ("tabs, decimal commas", "a\tb\tlabel\n" + "".join(f"{a}\t{b}\t{c}\n".replace(".", ",") for a, b, c in ROWS)),
    ("mark, semicolons, quoted decimal commas", "\ufeff\"a\";\"b\";\"label\"\n"
     + "".join(f'"{a}";"{b}";"{c}"\n'.replace(".", ",") for a, b, c in ROWS)),
])
def test_csv_as_spreadsheets_write_it_is_read_correctly(form, text, tmp_path):
    d = load_dataset(_write(tmp_path, text))
    assert d.x.tolist() == EXPECTED_X and d.y.tolist() == EXPECTED_Y, form
    assert d.label_column == "label"
    assert data.describe_labels(d) == ("users: labels from column 'label' (2 classes, used only to score the "
                                       "clustering); 3 points, 2 feature columns")


def test_a_csv_without_a_label_column_says_so(tmp_path):
    d = load_dataset(_write(tmp_path, "a,b\n1,2\n3,4\n"))
    assert d.y is None and d.label_column is None
    assert "no label column (none is named label, y, class, target)" in data.describe_labels(d)


@pytest.mark.parametrize("text,fragments", [
    ("a;b\n1,5;2.5\n1,0;2,0\n", ["mixes decimal commas ('1,5' in column 'a', row 2)", "decimal points ('2.5'"]),
    ('a,b\n"1,5",2\n3,4\n', ["'1,5' in column 'a' (row 2) has a comma", "';'"]),
    ('a,b\n"1,000",2\n3,4\n', ["'1,000'", "thousands separator"]),
    ("a,b\n1,5,2,5\n3,0,4,0\n", ["row 2 has 4 fields", "decimal commas"]),
    ("a;b\n1.000,5;2\n3;4\n", ["non-numeric value '1.000,5' in column 'a' (row 2)"]),
])
def test_csv_that_cannot_be_read_for_sure_is_refused_naming_the_problem(text, fragments, tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(_write(tmp_path, text))
    assert_one_line_error(e, *fragments)


def test_csv_in_another_encoding_is_refused_naming_it(tmp_path):
    for encoding, fragment in [("utf-16", "UTF-16"), ("latin-1", "not UTF-8")]:
        with pytest.raises(DataError) as e:
            load_dataset(_write(tmp_path, "é,b\n1,2\n3,4\n", encoding=encoding))
        assert_one_line_error(e, fragment)


# ------------------------------------------------------------------ messages that name the real problem (issue 32)
@pytest.mark.parametrize("content,fragments", [
    (b"hello", ["not an npz file", "b'hello'"]),
    (b"", ["not an npz file", "empty"]),
    (b"\x80\x04K\x01.", ["not an npz file"]),  # a pickle: not called "pickled data" either
])
def test_a_file_named_npz_that_is_not_one_says_so(content, fragments, tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert_one_line_error(e, "is not a valid .npz file", *fragments)
    assert "pickled" not in str(e.value)


def test_an_npy_file_named_npz_says_so(tmp_path):
    with open(tmp_path / "x.npz", "wb") as f:
        np.save(f, np.zeros((3, 2)))
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "x.npz"))
    assert_one_line_error(e, "it is a .npy file", "numpy.savez")


@pytest.mark.parametrize("labels,fragment", [
    (np.array([0, 1, 0.5, -1]), "non-integer values (1 of them, the first 0.5 in row 3, column 1)"),
    (np.array([0, np.nan, 1, -1]), "non-integer values (1 of them, the first nan in row 2"),
    (np.array([[0, 1], [1, np.inf], [0, 0], [1, 1]]), "the first inf in row 2, column 2"),
    (np.array(["a", "b", "c", "d"]), "integer labels, not <U1"),
])
def test_a_labels_file_with_non_integer_values_says_so(labels, fragment, tmp_path):
    np.save(tmp_path / "l.npy", labels)
    with pytest.raises(DataError) as e:
        data.load_partial_labels(str(tmp_path / "l.npy"), 4, [2] * (labels.shape[1] if labels.ndim == 2 else 1))
    assert_one_line_error(e, fragment)
    assert "shape" not in str(e.value)
    np.savetxt(tmp_path / "l.csv", np.array([0, 1, 0.5, -1]), delimiter=",")
    with pytest.raises(DataError) as e:
        data.load_partial_labels(str(tmp_path / "l.csv"), 4, [2])
    assert_one_line_error(e, "non-integer values")


# ------------------------------------------------------------------ checks

def test_check_data():
    check_data(np.zeros((3, 2)), np.array([0, 1, 2]))
    check_data(np.full((2, 2), 0.5), likelihood="bernoulli")
    with pytest.raises(DataError) as e:
        check_data(np.array([[np.nan, 1.0], [np.inf, 0.0]]))
    assert_one_line_error(e, "x contains 2 NaN or infinite values")
    with pytest.raises(DataError) as e:
        check_data(np.zeros((3, 2)), np.array([0, 1]))
    assert_one_line_error(e, "3 points")
    with pytest.raises(DataError) as e:
        check_data(np.array([[-0.5, 2.0]]), likelihood="bernoulli")
    assert_one_line_error(e, "values outside [0, 1] (min -0.5, max 2)", "--likelihood gaussian")
    check_data(np.array([[-0.5, 2.0]]), likelihood="gaussian")


def test_in_unit_interval():
    assert in_unit_interval(np.array([0.0, 0.5, 1.0]))
    assert not in_unit_interval(np.array([0.0, 1.01]))
    assert not in_unit_interval(np.array([-1e-6, 0.5]))
    assert not in_unit_interval(np.array([np.nan, 0.5]))
    assert in_unit_interval([[0, 1]])


def test_svhn_bad_files(tmp_path, no_env):
    scipy.io.savemat(str(tmp_path / "train_32x32.mat"), {"images": np.zeros((2, 2))})
    with pytest.raises(DataError) as e:
        load_dataset("svhn", split="train", data_dir=str(tmp_path))
    assert_one_line_error(e, "lacks the arrays X and y (it has: images)")
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(DataError) as e:
        load_dataset("svhn", split="test", data_dir=str(tmp_path))
    assert_one_line_error(e, "test_32x32.mat is not a readable .mat file")


def test_cli_download_flag_reaches_torchvision(tmp_path, monkeypatch, capsys):
    from pyro_mixvae.cli import main

    asked = []

    class Offline:
        def __init__(self, root, train=True, download=False):
            asked.append((root, download))
            raise RuntimeError("no network")

    monkeypatch.setenv("MIXVAE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_torchvision_dataset", lambda name: Offline)
    assert main(["fit", "vade", "--data", "fashion-mnist", "--download", "--out", str(tmp_path / "run")]) == 2
    assert asked == [(str(tmp_path), True)]
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fashion-mnist: torchvision could not download it to" in err and "no network" in err
