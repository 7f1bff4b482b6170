"""The image grids of the figures are torchvision's make_grid layout."""
import numpy as np

from pyro_mixvae import plots


def test_image_grid_places_image_i_at_row_i_div_nrow_and_column_i_mod_nrow():
    n, h, w, nrow, pad = 5, 3, 4, 3, plots.GRID_PAD
    images = np.stack([np.full((1, h, w), (i + 1) / 10, dtype=np.float32) for i in range(n)])
    grid = plots.image_grid(images, nrow)
    assert grid.shape == (pad + 2 * (h + pad), pad + nrow * (w + pad), 3)  # grey images become RGB
    for i in range(n):
        top, left = pad + (i // nrow) * (h + pad), pad + (i % nrow) * (w + pad)
        np.testing.assert_allclose(grid[top:top + h, left:left + w], (i + 1) / 10, rtol=1e-6)
    np.testing.assert_allclose(grid[:pad], 1.0)  # white padding
    np.testing.assert_allclose(grid[pad + h:pad + h + pad], 1.0)
    assert plots._grid_ticks(2, h) == [pad + h / 2, pad + (h + pad) + h / 2]


def test_image_grid_clips_to_the_unit_interval_and_keeps_colour():
    rng = np.random.default_rng(0)
    images = rng.uniform(-0.5, 1.5, size=(4, 3, 5, 5)).astype(np.float32)
    grid = plots.image_grid(images, 2)
    assert grid.min() >= 0 and grid.max() <= 1 and grid.shape == (2 + 2 * 7, 2 + 2 * 7, 3)
    np.testing.assert_allclose(grid[2:7, 9:14], np.clip(images[1].transpose(1, 2, 0), 0, 1), rtol=1e-6)


def test_sample_figure_of_images_writes_a_png(tmp_path):
    x = np.random.default_rng(1).uniform(size=(7, 1, 8, 8)).astype(np.float32)
    plots.sample_figure(x, np.arange(7) % 3, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plots.cluster_samples_figure(np.stack([x[:4], x[3:]], axis=1), tmp_path / "c.png", n=4)
    assert (tmp_path / "c.png").stat().st_size > 0
