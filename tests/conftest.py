import numpy as np
import pyro
import pytest
import torch

torch.set_num_threads(2)

# Small networks so that the end-to-end tests take seconds on two CPU cores.
TINY = ["--set", "hidden=32,32", "--set", "latent_dim=3"]


@pytest.fixture(autouse=True)
def _validation_on():
    """Pyro's argument validation is on in tests (training turns it off only for speed)."""
    with pyro.validation_enabled(True):
        yield


@pytest.fixture
def blobs_npz(tmp_path):
    """A small clustered data set in [0, 1] with labels, as a .npz the package never saw."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.1, 0.9, size=(3, 12))
    y = np.repeat(np.arange(3), 40)
    x = np.clip(centres[y] + 0.03 * rng.standard_normal((120, 12)), 0, 1).astype(np.float32)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path
