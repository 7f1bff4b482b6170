"""The tree's own upkeep: the linter's configuration holds, and the README's architecture table names every module."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_linter_finds_nothing():
    """``ruff check`` with the configuration in pyproject.toml (pyflakes and syntax errors) on the package,
    the tests and the experiments."""
    if shutil.which("ruff", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("ruff is not installed (pip install '.[dev]' installs it)")
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    done = subprocess.run([ruff, "check", "pyro_mixvae", "tests", "experiments"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_architecture_table_names_every_module():
    """Every module of the package has its row in the README's "Architecture" table, and every row names a
    file that exists."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Architecture"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    named = set(re.findall(r"^\| `([^`]+)`", section, flags=re.M))
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "pyro_mixvae").rglob("*.py")
               if p.name != "__main__.py" and not (p.name == "__init__.py" and p.parent.name != "models")}
    missing = sorted(modules - named)
    assert not missing, f"modules without a row in the README's architecture table: {missing}"
    assert all((ROOT / name.rstrip("/")).exists() for name in named), sorted(
        n for n in named if not (ROOT / n.rstrip("/")).exists())
