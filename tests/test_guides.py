"""The guides' code runs: every ```python block of guides/*.md, in order, in one namespace per guide,
in a temporary folder, with MIXVAE_GUIDE_QUICK=1 (the small sizes each guide shows). Their
``mixvae`` command lines must parse with the CLI's own parser."""
import re
import shlex
from pathlib import Path

import matplotlib
import pytest

from pyro_mixvae.cli import build_parser
from pyro_mixvae.models import MODELS

GUIDES = sorted((Path(__file__).resolve().parent.parent / "guides").glob("*.md"))


def blocks(path: Path, language: str) -> list:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


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
    namespace = {"__name__": f"guide_{guide.stem.replace('-', '_')}"}
    code = blocks(guide, "python")
    assert code, f"{guide.name} has no python blocks"
    try:
        for i, block in enumerate(code):
            exec(compile(block, f"{guide.name}[block {i}]", "exec"), namespace)
    finally:
        for name in set(MODELS) - known:  # a guide's own registered model must not leak into other tests
            MODELS.pop(name)
        matplotlib.pyplot.close("all")
    assert set(repo.iterdir()) == before  # what the guide wrote went to the temporary folder
    assert any(tmp_path.iterdir())


@pytest.mark.parametrize("guide", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_command_lines_parse(guide):
    parser = build_parser()
    for block in blocks(guide, "bash"):
        for line in block.splitlines():
            if line.startswith("mixvae "):
                parser.parse_args(shlex.split(line)[1:])
