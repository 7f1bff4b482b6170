"""The README's main job: VaDE on digits with the defaults reaches acc >= 0.80 for seeds 0-2.

Slow (a few minutes per seed on two CPU cores): run with ``pytest -m slow``. The recorded
figures are in experiments/results/vade_digits.md (from experiments/seeds.py vade --data digits).
"""
import json

import pytest

from pyro_mixvae.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vade_on_digits_reaches_080(seed, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "vade", "--data", "digits", "--seed", str(seed), "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["acc"] >= 0.80, metrics
