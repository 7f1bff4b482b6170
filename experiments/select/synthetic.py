"""A synthetic set with a known number of groups, for ``mixvae select`` (experiments/results/select.md).

K_TRUE = 5 Gaussian groups in 2-D (centres on a pentagon of radius 4, sd 0.6, equal weights),
pushed through one fixed nonlinear map R^2 -> R^20, x = W2 tanh(W1 z + b1) + b2 (weights drawn
once with seed 12345, the same for every data seed), plus N(0, 0.05^2) noise. ``--seed`` draws
the points.

    python experiments/select/synthetic.py --seed 0 --out experiments/select/data/synthetic-0.npz
"""
import argparse
from pathlib import Path

import numpy as np

K_TRUE, N, DIM, HIDDEN = 5, 1000, 20, 16


def fixed_map():
    rng = np.random.default_rng(12345)
    return (rng.standard_normal((HIDDEN, 2)) * 0.6, rng.standard_normal(HIDDEN) * 0.5,
            rng.standard_normal((DIM, HIDDEN)) / np.sqrt(HIDDEN), rng.standard_normal(DIM) * 0.1)


def make(seed: int, n: int = N):
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(K_TRUE) / K_TRUE
    centres = 4 * np.stack([np.cos(angles), np.sin(angles)], 1)
    y = rng.integers(K_TRUE, size=n)
    z = centres[y] + 0.6 * rng.standard_normal((n, 2))
    w1, b1, w2, b2 = fixed_map()
    x = np.tanh(z @ w1.T + b1) @ w2.T + b2 + 0.05 * rng.standard_normal((n, DIM))
    return x.astype(np.float32), y


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    x, y = make(a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, x=x, y=y)
    print(f"wrote {a.out}: {x.shape}, groups {np.bincount(y)}")
