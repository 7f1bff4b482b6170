"""Pictures of trained models (matplotlib, headless).

:func:`sample_figure` draws what ``mixvae sample`` writes: an image grid for image data, a
scatter of the first two coordinates (coloured by the cluster each sample came from)
otherwise.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def sample_figure(x: np.ndarray, clusters: np.ndarray, path, title: str = "") -> None:
    """Save samples ``x`` (N, C, H, W) as an image grid, or (N, D >= 2) as a scatter, to ``path``."""
    n = len(x)
    if x.ndim == 4:
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                img = np.clip(np.transpose(x[i], (1, 2, 0)), 0, 1)
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    else:
        flat = x.reshape(n, -1)
        fig, ax = plt.subplots(figsize=(5, 5))
        if flat.shape[1] >= 2:
            sc = ax.scatter(flat[:, 0], flat[:, 1], c=clusters, cmap="tab10", s=8)
            ax.set_xlabel("x[0]")
            ax.set_ylabel("x[1]")
        else:
            sc = ax.scatter(np.arange(n), flat[:, 0], c=clusters, cmap="tab10", s=8)
            ax.set_xlabel("sample")
            ax.set_ylabel("x[0]")
        fig.colorbar(sc, ax=ax, label="cluster")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
