"""Data sets for deep generative clustering, loaded into plain numpy arrays.

Every loader returns a :class:`Dataset`: ``x`` is float32, images as ``(N, C, H, W)``
and flat data as ``(N, D)``; ``y`` holds int64 labels or is ``None``. Labels are never
used for training, only to score the clustering. Nothing is downloaded unless asked
(``download=True``, ``mixvae fit --download``).

Named sets (``load_dataset(name)``):

``digits``
    scikit-learn's bundled 8x8 handwritten digits: 1797 images, 10 classes, pixel values
    divided by 16 into [0, 1], shape ``(1797, 1, 8, 8)``.
``arcs``
    The 2-D synthetic set in the spirit of the GMVAE paper (Dilokthanakul et al., 2016):
    10,000 points on five half-circle arcs arranged as a pinwheel, 5 classes, see
    :func:`make_arcs`. The clusters are curved, so k-means on the raw points fails.
``mnist``, ``fashion-mnist``
    The idx files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each may be gzipped,
    ``.gz``): 60,000 + 10,000 images of 28x28 pixels divided by 255, 10 classes. Read by
    torchvision: its ``MNIST`` / ``FashionMNIST`` class (``download=False``) where the files
    sit unpacked in its layout ``ROOT/MNIST/raw/``, elsewhere its idx readers
    ``torchvision.datasets.mnist.read_image_file`` / ``read_label_file`` (a ``.gz`` unpacked
    by its ``extract_archive``).
``svhn``
    The Street View House Numbers files ``train_32x32.mat`` and ``test_32x32.mat``:
    colour images ``(N, 3, 32, 32)`` in [0, 1], digits 0-9 (the files' label 10 is 0).
    Read by torchvision's ``SVHN`` class where a file passes its checksum, else as that
    class reads it (``scipy.io.loadmat``).

``split`` is ``"train"``, ``"test"`` or ``"all"`` (train then test, the default). Only
mnist, fashion-mnist and svhn have a split; digits, arcs and files are returned whole
whatever the split, as is usual for clustering.

Where files are searched, first match wins (NAME is ``mnist``, ``fashion-mnist`` or
``svhn``): for ROOT in the ``data_dir`` argument, then ``$MIXVAE_DATA_DIR``, then
:data:`DOWNLOAD_DIR` (``~/.cache/pyro_mixvae/datasets``): ``ROOT/NAME/``, ``ROOT/``, and
torchvision's layout ``ROOT/MNIST/raw/`` or ``ROOT/FashionMNIST/raw/``; last
``/usr/share/datasets/NAME/``, where Debian's package ``dataset-fashion-mnist`` puts
Fashion-MNIST (``apt-get install dataset-fashion-mnist``). ``download=True`` has
torchvision fetch the files into the first ROOT, in its layout (SVHN in ``ROOT/svhn/``).

Files of your own: a path ending in ``.npz`` (array ``x``, optional integer ``y``) or
``.csv`` (numeric columns, optional header row, optional label column named ``label``,
``y``, ``class`` or ``target``). A CSV is read as spreadsheets write it: UTF-8 with or without a
byte-order mark, quoted or unquoted numbers, fields separated by ``,``, or by ``;`` or a tab, which
also allow decimal commas (``1,5``). A file that mixes decimal points and decimal commas, or has a
comma inside a number of a ``,``-separated file, is refused naming the value, never guessed.
``Dataset.label_column`` says where the labels came from.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import DataError

DATASETS = ("digits", "arcs", "mnist", "fashion-mnist", "svhn")
SPLIT_SETS = ("mnist", "fashion-mnist", "svhn")  # the sets that have a train/test split and can be downloaded
SPLITS = ("train", "test", "all")
LABEL_COLUMNS = ("label", "y", "class", "target")
SYSTEM_DIR = "/usr/share/datasets"
DOWNLOAD_DIR = "~/.cache/pyro_mixvae/datasets"  # where download=True puts files without data_dir / $MIXVAE_DATA_DIR


@dataclass
class Dataset:
    """A data set: ``x`` float32 ``(N, C, H, W)`` or ``(N, D)``, ``y`` int64 ``(N,)`` or None."""

    x: np.ndarray
    y: Optional[np.ndarray]
    name: str
    label_column: Optional[str] = None  # a CSV's: the name of the column the labels were read from

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def n_classes(self) -> Optional[int]:
        return None if self.y is None else int(np.unique(self.y).size)


def _one_line(text) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- checks

def in_unit_interval(x) -> bool:
    """Whether every value of ``x`` lies in [0, 1] (False if any is NaN)."""
    x = np.asarray(x)
    return x.size == 0 or bool(x.min() >= 0 and x.max() <= 1)


def check_data(x: np.ndarray, y=None, *, likelihood: Optional[str] = None) -> None:
    """Raise :class:`DataError` unless ``x`` (and ``y``) can be used as they are.

    ``x`` must be numeric with at least 2 dimensions and finite; ``y``, when given, one
    label per point. With ``likelihood="bernoulli"`` the values must lie in [0, 1].
    """
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise DataError(f"x must be numeric, not {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"x must have one row per point (2 or more dimensions), got shape {x.shape}")
    if 0 in x.shape[1:]:
        raise DataError(f"x has no features: its shape is {x.shape}")
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        raise DataError(f"x contains {bad} NaN or infinite values")
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"labels have shape {y.shape} but x has {len(x)} points; expected ({len(x)},)")
    if likelihood is not None and likelihood.lower() == "bernoulli" and not in_unit_interval(x):
        raise DataError(
            f"values outside [0, 1] (min {float(x.min()):.4g}, max {float(x.max()):.4g}) "
            "cannot use a Bernoulli likelihood; use --likelihood gaussian"
        )


def _checked(x, y, name, source, label_column: Optional[str] = None) -> Dataset:
    try:
        check_data(x, y)
    except DataError as e:
        raise DataError(f"{source}: {e}") from None
    return Dataset(x=x, y=y, name=name, label_column=label_column)


# --------------------------------------------------------------------------- entry point

def load_dataset(spec: str, *, split: str = "all", data_dir: Optional[str] = None, seed: int = 0,
                 download: bool = False) -> Dataset:
    """Load a named set (see :data:`DATASETS`) or a ``.npz`` / ``.csv`` file.

    ``split`` ("train", "test", "all") matters for mnist, fashion-mnist and svhn only;
    ``data_dir`` is searched first for their files; ``download=True`` first fetches them with
    torchvision (into ``data_dir``, else $MIXVAE_DATA_DIR, else :data:`DOWNLOAD_DIR`; files
    already there are kept); ``seed`` is used by ``arcs`` only.
    """
    spec = os.fspath(spec).strip()
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': expected one of {', '.join(SPLITS)}")
    name = spec.lower()
    if name == "digits":
        return _load_digits()
    if name == "arcs":
        return make_arcs(seed=seed)
    if name in ("mnist", "fashion-mnist"):
        return _load_idx_set(name, split, data_dir, download)
    if name == "svhn":
        return _load_svhn(split, data_dir, download)
    if name.endswith(".npz"):
        return _load_npz(os.path.expanduser(spec))
    if name.endswith(".csv"):
        return _load_csv(os.path.expanduser(spec))
    raise DataError(
        f"unknown data set '{spec}': expected one of {', '.join(DATASETS)}, "
        "or a path to a .npz or .csv file"
    )


def check_data_options(spec, split: Optional[str] = None, download: bool = False) -> None:
    """Refuse a command-line option that does not apply to the data ``spec`` rather than record it and
    ignore it: a ``split`` other than ``all`` for a set without one (digits, arcs, a file), ``download``
    for anything but the sets torchvision fetches (:data:`SPLIT_SETS`)."""
    name = os.fspath(spec).strip().lower()
    if name in SPLIT_SETS:
        return
    what = "a file" if name.endswith((".npz", ".csv")) else name
    if split not in (None, "all"):
        raise DataError(f"--split {split} does not apply to {spec}: only {', '.join(SPLIT_SETS)} have a train/test "
                        f"split; {what} is used whole")
    if download:
        raise DataError(f"--download does not apply to {spec}: only {', '.join(SPLIT_SETS)} are downloaded")


# --------------------------------------------------------------------------- built-in sets

def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits  # here, like each loader's backend: only this data set needs it

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return _checked(x, digits.target.astype(np.int64), "digits", "digits")


def make_arcs(n: int = 10000, seed: int = 0, noise: float = 0.05) -> Dataset:
    """Five noisy half-circle arcs arranged as a pinwheel, one class per arc.

    Arc ``k`` lies on the unit circle centred at distance 1.15 from the origin in the
    direction ``2*pi*k/5``; it spans half the circle, turned by 45 degrees from that
    direction, so each arc curls round its neighbour's end. Gaussian noise of standard
    deviation ``noise`` (in units of the arc radius) is added; the closest points of two
    noise-free arcs are 0.55 apart, 11 noise deviations at the default. The classes have
    equal sizes (up to one point) and the points are centred and divided by their
    standard deviation. The same ``seed`` gives the same set.

    The arcs are plainly separate to the eye, yet k-means on the raw points splits them across
    their curves (``experiments/archive/kmeans_baselines.py`` measured it).
    """
    if n < 5:
        raise DataError(f"make_arcs needs at least 5 points, got n={n}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 5)
    direction = 2 * np.pi * y / 5
    angle = direction + np.pi / 4 + np.pi * (rng.random(n) - 0.5)
    centre = 1.15 * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    x = centre + np.stack([np.cos(angle), np.sin(angle)], axis=1)
    x += noise * rng.standard_normal((n, 2))
    x = (x - x.mean(axis=0)) / x.std()
    return _checked(x.astype(np.float32), y.astype(np.int64), "arcs", "arcs")


# --------------------------------------------------------------------------- file search

def _search_dirs(name: str, data_dir: Optional[str], torchvision_dir: Optional[str]) -> list:
    dirs = []
    for root in (data_dir, os.environ.get("MIXVAE_DATA_DIR"), DOWNLOAD_DIR):
        if root:
            root = os.path.expanduser(os.fspath(root))
            dirs += [os.path.join(root, name), root]
            if torchvision_dir:
                dirs.append(os.path.join(root, torchvision_dir, "raw"))
    dirs.append(os.path.join(SYSTEM_DIR, name))
    return list(dict.fromkeys(dirs))  # drop repeats, keep order


def _find_files(files: list, dirs: list, allow_gz: bool) -> Optional[dict]:
    """Paths of ``files`` from the first directory holding all of them, or None."""
    for d in dirs:
        found = {}
        for f in files:
            for candidate in ([f, f + ".gz"] if allow_gz else [f]):
                if os.path.isfile(os.path.join(d, candidate)):
                    found[f] = os.path.join(d, candidate)
                    break
        if len(found) == len(files):
            return found
    return None


def _missing(name: str, files: list, dirs: list, how: str) -> DataError:
    return DataError(
        f"{name}: cannot find {', '.join(files)}; looked in {', '.join(dirs)}; to get them: {how}"
    )


# --------------------------------------------------------------------------- MNIST, Fashion-MNIST (torchvision)

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "svhn": "SVHN"}
_IDX_HOW = {
    "mnist": "put the idx files in $MIXVAE_DATA_DIR/mnist/ (or pass data_dir), "
    "or download them with mixvae fit --download (torchvision.datasets.MNIST) where you have internet",
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or put the idx files in "
    "$MIXVAE_DATA_DIR/fashion-mnist/ (or pass data_dir), or download them with mixvae fit --download "
    "(torchvision.datasets.FashionMNIST) where you have internet",
}


def _torchvision_dataset(name: str):
    import torchvision.datasets  # here: torchvision takes about a second to import

    return getattr(torchvision.datasets, _TORCHVISION_CLASS[name])


def read_idx(path: str, kind: str) -> np.ndarray:
    """An idx file of images (N, H, W) or labels (N,) as uint8, through torchvision's
    ``read_image_file`` / ``read_label_file``; a ``.gz`` is unpacked first by torchvision's
    ``extract_archive`` into a temporary folder."""
    from torchvision.datasets.mnist import read_image_file, read_label_file  # here: as torchvision.datasets above
    from torchvision.datasets.utils import extract_archive

    read = {"images": read_image_file, "labels": read_label_file}[kind]
    try:
        if not path.endswith(".gz"):
            return read(path).numpy().astype(np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            return read(extract_archive(path, tmp)).numpy().astype(np.uint8)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {_one_line(e)}") from None
    except (AssertionError, TypeError, ValueError, RuntimeError, IndexError) as e:
        reason = _one_line(e) or "its header (magic number and sizes) is not that of an idx file of unsigned bytes"
        raise DataError(f"{path} is not an idx file of {kind}: {reason}") from None


def _idx_part(name: str, part: str, paths: dict, tv_root: Optional[str]):
    """(images uint8 (N, 28, 28), labels (N,)) of one split: torchvision's dataset class when the
    files sit unpacked in its layout (``tv_root``/MNIST/raw/), else its idx readers."""
    image_path, label_path = (paths[f] for f in _IDX_FILES[part])
    if tv_root is not None and not image_path.endswith(".gz") and not label_path.endswith(".gz"):
        try:
            ds = _torchvision_dataset(name)(tv_root, train=part == "train", download=False)
        except (AssertionError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise DataError(f"{os.path.dirname(image_path)}: torchvision cannot read {name}: {_one_line(e)}") from None
        images, labels = ds.data.numpy(), ds.targets.numpy()
    else:
        images, labels = read_idx(image_path, "images"), read_idx(label_path, "labels")
    if len(images) != len(labels):
        raise DataError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    return images, labels


def _load_idx_set(name: str, split: str, data_dir: Optional[str], download: bool = False) -> Dataset:
    parts = ["train", "test"] if split == "all" else [split]
    files = [f for p in parts for f in _IDX_FILES[p]]
    if download:
        root = _download_root(data_dir)
        for part in parts:
            _download(name, root, train=part == "train")
    dirs = _search_dirs(name, data_dir, _TORCHVISION_CLASS[name])
    paths = _find_files(files, dirs, allow_gz=True)
    if paths is None:
        raise _missing(name, [f + "[.gz]" for f in files], dirs, _IDX_HOW[name])
    found = os.path.dirname(paths[files[0]])  # torchvision's layout: ROOT/MNIST/raw/
    tv_root, tail = os.path.split(os.path.dirname(found))
    tv_root = tv_root if os.path.basename(found) == "raw" and tail == _TORCHVISION_CLASS[name] else None
    xs, ys = zip(*(_idx_part(name, p, paths, tv_root) for p in parts))
    x = np.concatenate(xs)[:, None].astype(np.float32) / np.float32(255)
    return _checked(x, np.concatenate(ys).astype(np.int64), name, name)


# --------------------------------------------------------------------------- downloads (torchvision)

def _download_root(data_dir: Optional[str]) -> str:
    """Where ``download=True`` puts files: ``data_dir``, else $MIXVAE_DATA_DIR, else :data:`DOWNLOAD_DIR`."""
    return os.path.expanduser(os.fspath(data_dir or os.environ.get("MIXVAE_DATA_DIR") or DOWNLOAD_DIR))


def _download(name: str, root: str, train: bool) -> None:
    """Fetch a named set with torchvision's ``download=True`` into its layout under ``root``."""
    cls = _torchvision_dataset(name)
    split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    try:
        cls(os.path.join(root, "svhn") if name == "svhn" else root, download=True, **split)
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError, ... on a failed download
        raise DataError(f"{name}: torchvision could not download it to {root}: {_one_line(e)}") from None


# --------------------------------------------------------------------------- SVHN

_SVHN_HOW = (
    "put train_32x32.mat and test_32x32.mat in $MIXVAE_DATA_DIR/svhn/ (or pass data_dir), "
    "or download them with mixvae fit --download (torchvision.datasets.SVHN) where you have internet"
)


def _svhn_part(path: str, split: str):
    """(images uint8 (N, 3, 32, 32), labels (N,)) of one .mat file: torchvision's SVHN class when the
    file passes its checksum, else read as that class reads it (scipy.io.loadmat, X transposed, 10 -> 0)."""
    from scipy.io import loadmat  # here: only SVHN needs it, and torchvision below is slow to import
    from torchvision.datasets.utils import check_integrity

    cls = _torchvision_dataset("svhn")
    if check_integrity(path, cls.split_list[split][2]):
        ds = cls(os.path.dirname(path), split=split, download=False)
        return ds.data, ds.labels
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several kinds on a bad file
        raise DataError(f"{path} is not a readable .mat file: {_one_line(e)}") from None
    if "X" not in mat or "y" not in mat:
        names = ", ".join(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path} lacks the arrays X and y (it has: {names or 'nothing'})")
    images, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    if images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != len(labels):
        raise DataError(f"{path}: X has shape {images.shape} and y {len(labels)} labels; "
                        "expected X of shape (32, 32, 3, N) and N labels")
    return np.transpose(images, (3, 2, 0, 1)), np.where(labels == 10, 0, labels)


def _load_svhn(split: str, data_dir: Optional[str], download: bool = False) -> Dataset:
    parts = ["train", "test"] if split == "all" else [split]
    if download:
        root = _download_root(data_dir)
        for part in parts:
            _download("svhn", root, train=part == "train")
    files = [f"{p}_32x32.mat" for p in parts]
    dirs = _search_dirs("svhn", data_dir, None)
    paths = _find_files(files, dirs, allow_gz=False)
    if paths is None:
        raise _missing("svhn", files, dirs, _SVHN_HOW)
    xs, ys = zip(*(_svhn_part(paths[f], p) for f, p in zip(files, parts)))
    x = np.concatenate(xs).astype(np.float32) / np.float32(255)
    return _checked(x, np.concatenate(ys).astype(np.int64), "svhn", "svhn")


# --------------------------------------------------------------------------- user files

def _file_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise DataError(f"data file {path} does not exist")


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one: the second), which numpy.savez writes
NPY_MAGIC = b"\x93NUMPY"


def _check_npz_format(path: str) -> None:
    """Refuse a file that is not a zip archive before numpy reads it (it would call any other file pickled data)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if head.startswith(ZIP_MAGIC):
        return
    if head.startswith(NPY_MAGIC):
        raise DataError(f"{path} is not a valid .npz file: it is a .npy file (one array, numpy.save); "
                        "save x (and y) with numpy.savez instead")
    what = "it is empty" if not head else f"it starts with {head!r}"
    raise DataError(f"{path} is not a valid .npz file: not an npz file (a zip archive, as numpy.savez writes); {what}")


def _load_npz(path: str) -> Dataset:
    _require_file(path)
    _check_npz_format(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as e:  # np.load raises several kinds on a bad file
        raise DataError(f"{path} is not a valid .npz file: {_one_line(e)}") from None
    if "x" not in arrays:
        raise DataError(f"{path} has no array 'x' (it has: {', '.join(arrays) or 'nothing'})")
    x = arrays["x"]
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
        raise DataError(f"{path}: x must be numeric, not {x.dtype}")
    if not 2 <= x.ndim <= 4:
        raise DataError(f"{path}: x has shape {x.shape}; expected (N, D), (N, H, W) or (N, C, H, W)")
    if len(x) < 2:
        raise DataError(f"{path}: x has {len(x)} points; at least 2 are needed")
    x = (x[:, None] if x.ndim == 3 else x).astype(np.float32)
    y = arrays.get("y")
    if y is not None:
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{path}: y has shape {y.shape}; expected one label per point, ({len(x)},)")
        integer = np.issubdtype(y.dtype, np.integer) or y.dtype == bool or (
            np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
        )
        if not integer:
            raise DataError(f"{path}: y must hold integer labels, got {y.dtype} values that are not all whole")
        y = y.astype(np.int64)
    return _checked(x, y, _file_name(path), path)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+([eE][+-]?\d+)?$")  # 1,5  -0,25  ,5  2,5e-3


def _delimiter(line: str) -> str:
    """The field separator of a CSV from its first line: ``;`` or a tab where one is there (outside quotes), else ``,``."""
    bare = re.sub(r'"[^"]*"', "", line)
    return ";" if ";" in bare else "\t" if "\t" in bare else ","


def _read_csv_rows(path: str) -> tuple:
    """(delimiter, [(line number, stripped cells)]) of a CSV, blank lines left out; a byte-order mark is dropped."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {_one_line(e)}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"cannot read {path}: it is UTF-16 text (its byte-order mark says so); save it as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"cannot read {path}: it is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    if "\x00" in text:
        raise DataError(f"cannot read {path}: it holds NUL bytes, it is not a text file")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = _delimiter(first)
    rows = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, [cell.strip() for cell in row]))
    except csv.Error as e:
        raise DataError(f"cannot read {path}: {_one_line(e)}") from None
    return delimiter, rows


def _number_reader(path: str, delimiter: str, rows: list, header: list):
    """``number(text, column, line) -> float`` for the file: with ``;`` or tab separators decimal commas are read,
    unless the file mixes them with decimal points; a comma in a number of a ``,``-separated file is refused."""
    cells = [(cell, j, line) for line, row in rows for j, cell in enumerate(row)]
    commas = [c for c in cells if DECIMAL_COMMA.match(c[0])]
    if commas and delimiter != ",":
        points = [c for c in cells if "." in c[0] and _is_number(c[0])]
        if points:
            (a, ja, la), (b, jb, lb) = commas[0], points[0]
            raise DataError(f"{path} mixes decimal commas ('{a}' in column '{header[ja]}', row {la}) and decimal "
                            f"points ('{b}' in column '{header[jb]}', row {lb}); use one")

    def number(text: str, j: int, line: int) -> float:
        try:
            return float(text)
        except ValueError:
            pass
        if "," in text and delimiter == "," and _is_number(text.replace(",", ".")):
            raise DataError(f"{path}: the value '{text}' in column '{header[j]}' (row {line}) has a comma: a decimal "
                            "comma or a thousands separator? write it with a decimal point, or separate the fields "
                            "with ';' to use decimal commas")
        if commas and delimiter != "," and DECIMAL_COMMA.match(text):
            return float(text.replace(",", "."))
        raise DataError(f"{path}: non-numeric value '{text}' in column '{header[j]}' (row {line})")

    return number


def _load_csv(path: str) -> Dataset:
    _require_file(path)
    delimiter, rows = _read_csv_rows(path)
    if not rows:
        raise DataError(f"{path} is empty")
    width = len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            hint = " (decimal commas in a ','-separated file? separate the fields with ';')" \
                if delimiter == "," and len(row) > width else ""
            raise DataError(f"{path}: row {line} has {len(row)} fields but the first row has {width}{hint}")
    columns = [f"column {j + 1}" for j in range(width)]
    decimal_comma = delimiter != "," and any(DECIMAL_COMMA.match(c) for _, row in rows for c in row)
    is_number = (lambda c: _is_number(c) or bool(DECIMAL_COMMA.match(c))) if decimal_comma else _is_number
    header = rows[0][1] if not any(is_number(c) for c in rows[0][1]) else None
    if header is None:
        header = columns
    else:
        rows = rows[1:]
        header = [h or columns[j] for j, h in enumerate(header)]
    labels = [j for j, h in enumerate(header) if h.lower() in LABEL_COLUMNS]
    if len(labels) > 1:
        raise DataError(f"{path}: several label columns ({', '.join(header[j] for j in labels)}); keep one")
    features = [j for j in range(width) if j not in labels]
    if not features:
        raise DataError(f"{path} has no feature columns, only the label column")
    if len(rows) < 2:
        raise DataError(f"{path} has {len(rows)} data rows; at least 2 are needed")
    number = _number_reader(path, delimiter, rows, header)
    x = np.empty((len(rows), len(features)), dtype=np.float32)
    for i, (line, row) in enumerate(rows):
        for k, j in enumerate(features):
            x[i, k] = number(row[j], j, line)
    y = None
    if labels:
        values = [row[labels[0]] for _, row in rows]
        if decimal_comma:
            values = [v.replace(",", ".") if DECIMAL_COMMA.match(v) else v for v in values]
        y = _csv_labels(values, path)
    return _checked(x, y, _file_name(path), path, label_column=header[labels[0]] if labels else None)


def _csv_labels(values: list, path: str) -> np.ndarray:
    """Whole-number labels as they are; any other labels as 0..K-1 in sorted order."""
    if "" in values:
        raise DataError(f"{path}: the label column has an empty value in data row {values.index('') + 1}")
    bad = [i for i, v in enumerate(values) if _is_number(v) and not np.isfinite(float(v))]
    if bad:
        raise DataError(f"{path}: the label column has a non-finite value '{values[bad[0]]}' in data row {bad[0] + 1}")
    try:
        numbers = np.array([float(v) for v in values])
        if np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
            return numbers.astype(np.int64)
    except ValueError:
        pass
    _, codes = np.unique(np.array(values), return_inverse=True)
    return codes.astype(np.int64)


def describe_labels(data: Dataset) -> str:
    """One line saying which column of a CSV holds the labels (or that none does), for the CLI."""
    size = f"{data.n} points, {int(np.prod(data.shape))} feature columns"
    if data.label_column is None:
        return f"{data.name}: no label column (none is named {', '.join(LABEL_COLUMNS)}); {size}"
    return (f"{data.name}: labels from column '{data.label_column}' ({data.n_classes} classes, used only to score "
            f"the clustering); {size}")


# --------------------------------------------------------------------------- partial labels
def load_partial_labels(path, n_points: int, components) -> np.ndarray:
    """Per-point labels for semi-supervision: an (N, I) int64 array, -1 where a label is unknown.

    ``path`` is a ``.npy``, a ``.npz`` (array ``labels``, else its only array) or a ``.csv`` of
    integers (N rows, I columns, optional header). A 1-D array is one factor's column.
    ``components`` gives K_i per factor; a label must be -1 or in 0..K_i-1, and the file must
    have ``n_points`` rows. Anything else raises :class:`DataError` naming the problem.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"labels file {path} does not exist")
    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        elif path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                keys = list(f.keys())
                if "labels" not in keys and len(keys) != 1:
                    raise DataError(f"labels file {path} must hold an array named 'labels' (it has {', '.join(keys)})")
                arr = f["labels" if "labels" in keys else keys[0]]
        elif path.endswith(".csv"):
            arr = np.genfromtxt(path, delimiter=",", skip_header=_has_header(path), dtype=np.float64)
        else:
            raise DataError(f"labels file {path}: expected .npy, .npz or .csv")
    except (ValueError, OSError) as e:
        raise DataError(f"cannot read labels file {path}: {e}") from None
    return load_partial_labels_array(arr, n_points, components, where=f"labels file {path}")


def load_partial_labels_array(arr, n_points: int, components, where: str = "labels") -> np.ndarray:
    """Check an in-memory partial-label array like :func:`load_partial_labels`; returns (N, I) int64."""
    path = where
    arr = np.asarray(arr)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path} must hold integers in an (N,) or (N, I) array; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise DataError(f"{path} must hold integer labels, not {arr.dtype} values")
    bad = ~np.isfinite(arr) | (np.isfinite(arr) & (arr != np.round(np.nan_to_num(arr))))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        first = arr[row, col].item()
        raise DataError(f"{path} holds non-integer values ({int(bad.sum())} of them, the first {first!r} in row "
                        f"{row + 1}, column {col + 1}); labels are integers, -1 for unknown")
    if arr.shape[0] != n_points:
        raise DataError(f"{path} has {arr.shape[0]} rows; the data has {n_points} points")
    components = list(components)
    if arr.shape[1] != len(components):
        raise DataError(f"{path} has {arr.shape[1]} column(s); the model has {len(components)} factor(s)")
    arr = arr.astype(np.int64)
    for i, k in enumerate(components):
        bad = (arr[:, i] < -1) | (arr[:, i] >= k)
        if bad.any():
            raise DataError(f"{path}: factor {i} has label {arr[bad, i][0]} outside -1..{k - 1} "
                            f"(-1 means unknown)")
    return arr


def _has_header(path: str) -> int:
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.strip().split(",") if v.strip()]
        return 0
    except ValueError:
        return 1
