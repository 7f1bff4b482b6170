"""The README's results table is the one `experiments/benchmark.py` generates from benchmark.json."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "experiments" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return module


def test_the_readme_table_is_generated_from_benchmark_json():
    records = json.loads((ROOT / "experiments" / "results" / "benchmark.json").read_text())
    table = _benchmark_module().readme_table(records)
    assert table.count("\n") >= 5
    assert table in (ROOT / "README.md").read_text(), "rerun: python experiments/benchmark.py --table-only"


def test_the_table_follows_the_records():
    bench = _benchmark_module()
    records = [{"data": "digits", "model": "vade", "seed": s, "acc": a, "nmi": 0.5, "elbo": e}
               for s, a, e in [(0, 0.8, -3.0), (1, 0.9, -1.0)]]
    row = bench.readme_table(records).splitlines()[-1]
    assert row == "| digits | VaDE | 0.850 ± 0.071 | 0.500 ± 0.000 | 1, 0.900 |"
