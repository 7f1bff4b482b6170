"""Docstrings state the mathematics, the defaults and where a default is justified -- not the
measurements themselves (those live in experiments/results/ and docs/studies/, where they can be
rerun and replaced). A docstring quoting an accuracy, a score or a p-value fails here."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "pyro_mixvae"
MEASURED = [
    re.compile(r"\b(acc|accuracy|accuracies|nmi|ari|silhouette)\b[^.;\n]{0,40}?\b0\.\d{2,}", re.I),
    re.compile(r"\b0\.\d{2,}\b[^.;\n]{0,20}?\b(acc|accuracy|nmi|ari)\b", re.I),
    re.compile(r"\bp\s*[=<]\s*0\.\d", re.I),
    re.compile(r"\bwilcoxon\b", re.I),
]


def docstrings():
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text:
                    name = getattr(node, "name", "module")
                    yield f"{path.relative_to(ROOT.parent)}:{name}", text


def test_the_pattern_catches_a_quoted_result():
    assert any(p.search("on digits it reached acc 0.894 over five seeds") for p in MEASURED)
    assert any(p.search("the gain was significant (Wilcoxon p = 0.03)") for p in MEASURED)
    assert not any(p.search("weights w in (0, 1]; pi_c = 1 / K; lr 0.002 decayed x0.9") for p in MEASURED)


def test_no_docstring_quotes_a_measured_result():
    found = list(docstrings())
    assert len(found) > 100  # the walk sees the package's docstrings
    hits = [(where, m.group(0)) for where, text in found for p in MEASURED for m in p.finditer(text)]
    assert not hits, f"docstrings quoting a measurement (link the results file instead): {hits}"
