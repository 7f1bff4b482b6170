"""The guides run: every code block of every guides/*.md, in document order, in one temporary folder
and one Python namespace per guide, with MIXVAE_GUIDE_QUICK=1 (the small sizes a guide shows, where
it has any; guides/cluster-your-own-data.md runs with the models' defaults and asserts its results).

* ```python blocks are executed as written (their ``assert``s are the guide's promises);
* ```bash blocks: every line must be a ``mixvae ...`` command (comments and blank lines aside,
  ``\\`` continuations joined); each runs through :func:`pyro_mixvae.cli.main` in the same folder,
  so it sees the files the python blocks above it wrote, and must return 0. A bash line whose
  arguments are exactly those of a literal ``main([...])`` call in one of the guide's python blocks
  is skipped: the python block runs that very command (the first guide shows ``mixvae fit ...`` on
  the command line, then runs it from Python and checks its result), and running it twice would
  double the guide's cost and collide on the run directory.

A guide with no runnable block, or a bash line that is not a ``mixvae`` command, fails the test.
"""
import ast
import re
import shlex
from pathlib import Path

import matplotlib
import pytest

from pyro_mixvae.cli import main
from pyro_mixvae.models import MODELS

GUIDES = sorted((Path(__file__).resolve().parent.parent / "guides").glob("*.md"))
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", flags=re.S | re.M)
RUNNABLE = {"python", "bash", "sh", "shell"}


def code_blocks(text: str) -> list:
    """(language, source) of every fenced block whose language is runnable, in document order."""
    return [(lang, src) for lang, src in FENCE.findall(text) if lang in RUNNABLE]


def shell_commands(source: str) -> list:
    """The commands of a bash block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", source)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def cli_calls_in(python_sources) -> set:
    """The argument lists of the literal ``main([...])`` calls in python code, as tuples of strings."""
    calls = set()
    for source in python_sources:
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "main"
                    and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple))):
                try:
                    calls.add(tuple(str(v) for v in ast.literal_eval(node.args[0])))
                except ValueError:  # a computed argument: not a literal repeat
                    continue
    return calls


def run_guide(guide: Path) -> dict:
    """Execute the guide's blocks in order in the current folder; return what ran and what was skipped."""
    blocks = code_blocks(guide.read_text())
    assert blocks, f"{guide.name} has no runnable code block (```python or ```bash)"
    python_calls = cli_calls_in(src for lang, src in blocks if lang == "python")
    namespace = {"__name__": f"guide_{guide.stem.replace('-', '_')}"}
    done = {"python": 0, "commands": [], "skipped": []}
    for i, (lang, source) in enumerate(blocks):
        if lang == "python":
            exec(compile(source, f"{guide.name}[block {i}]", "exec"), namespace)
            done["python"] += 1
            continue
        for command in shell_commands(source):
            argv = shlex.split(command)
            assert argv[0] == "mixvae", f"{guide.name}[block {i}]: not a mixvae command: {command!r}"
            if tuple(argv[1:]) in python_calls:
                done["skipped"].append(command)
                continue
            assert main(argv[1:]) == 0, f"{guide.name}[block {i}]: {command!r} failed"
            done["commands"].append(command)
    return done


def test_the_three_guides_exist():
    assert {p.name for p in GUIDES} >= {"cluster-your-own-data.md", "write-your-own-mixture-model.md",
                                       "posterior-analysis-with-arviz.md"}


@pytest.mark.parametrize("guide", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_code_runs(guide, tmp_path, monkeypatch):
    repo = guide.parent.parent
    before = set(repo.iterdir())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIXVAE_GUIDE_QUICK", "1")
    known = set(MODELS)
    try:
        done = run_guide(guide)
    finally:
        for name in set(MODELS) - known:  # a guide's own registered model must not leak into other tests
            MODELS.pop(name)
        matplotlib.pyplot.close("all")
    assert done["python"] + len(done["commands"]) + len(done["skipped"]) > 0
    assert set(repo.iterdir()) == before  # what the guide wrote went to the temporary folder
    assert any(tmp_path.iterdir())


def test_the_runner_executes_bash_blocks_and_fails_on_what_it_cannot_run(tmp_path, monkeypatch, blobs_npz):
    """The runner itself: a bash line runs through the CLI after the python block that made its data,
    a literal repeat of a python ``main([...])`` call is skipped, and a guide without runnable code,
    a non-mixvae line or a failing command fails."""
    monkeypatch.chdir(tmp_path)
    guide = tmp_path / "g.md"
    guide.write_text("```python\nimport shutil\nshutil.copy(%r, 'd.npz')\n"
                     "from pyro_mixvae.cli import main\nassert main(['settings', 'vade']) == 0\n```\n"
                     "```bash\n# comment\nmixvae settings vade\nmixvae fit vade --data d.npz --clusters 3 \\\n"
                     "  --epochs 1 --pretrain-epochs 1 --set hidden=8,8 --quiet --out r\n```\n" % str(blobs_npz))
    done = run_guide(guide)
    assert done["python"] == 1 and done["skipped"] == ["mixvae settings vade"]
    assert len(done["commands"]) == 1 and (tmp_path / "r" / "metrics.json").exists()
    for text in ("no code here\n", "```text\nmixvae fit\n```\n", "```bash\nls\n```\n",
                 "```bash\nmixvae evaluate no-such-run\n```\n"):
        guide.write_text(text)
        with pytest.raises(AssertionError):
            run_guide(guide)
