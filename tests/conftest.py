import numpy as np
import pyro
import pytest
import torch

from pyro_mixvae.synthetic import make_unit_blobs

torch.set_num_threads(2)

# Small networks so that the end-to-end tests take seconds on two CPU cores.
TINY = ["--set", "hidden=32,32", "--set", "latent_dim=3"]


@pytest.fixture(autouse=True)
def _validation_on():
    """Pyro's argument validation is on in tests (training turns it off only for speed)."""
    with pyro.validation_enabled(True):
        yield


@pytest.fixture(scope="session")
def blobs_file(tmp_path_factory):
    """``blobs_file(n, dim, k, noise)``: a .npz (``x``, ``y``) of :func:`~pyro_mixvae.synthetic.make_unit_blobs`,
    a labelled data set the package never saw; each one written once per session. Tests only read it."""
    folder = tmp_path_factory.mktemp("blobs")

    def path(n: int, dim: int, k: int, noise: float = 0.05):
        out = folder / f"blobs-n{n}-d{dim}-k{k}-noise{noise}.npz"
        if not out.exists():
            data = make_unit_blobs(n, dim, k, noise=noise)
            np.savez(out, x=data.x, y=data.y)
        return out

    return path


@pytest.fixture(scope="session")
def blobs_npz(blobs_file):
    """3 groups of 40 points in [0, 1]^12 with labels, as a .npz."""
    return blobs_file(120, 12, 3, noise=0.03)
