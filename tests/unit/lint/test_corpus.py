"""Golden tests over the corpus of broken playbooks: one defect per file, found at the pinned line.

Each file in corpus/ holds exactly one defect; corpus/EXPECTED names its code and golden/ holds the
exact text lint prints for it. Regenerate the golden files after an intended change of wording with
``KURATIVE_UPDATE_GOLDEN=1 pytest tests/unit/lint`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kurative.cli import main

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
GOLDEN = HERE / "golden"
EXPECTED = dict(
    line.split()
    for line in (CORPUS / "EXPECTED").read_text().splitlines()
    if line and not line.startswith("#")
)


def test_corpus_is_large_enough() -> None:
    assert len(EXPECTED) >= 40
    assert sorted(EXPECTED) == sorted(p.name for p in CORPUS.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_playbook(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CORPUS)
    code = main(["lint", name])
    out = capsys.readouterr().out
    problems = out.splitlines()[:-1]
    expected_code = EXPECTED[name]
    assert len(problems) == 1, out
    assert problems[0].startswith(f"{name}:")
    assert f": {expected_code} " in problems[0]
    assert "(hint: " in problems[0]
    assert code == (1 if expected_code.startswith("E") else 0)
    golden = GOLDEN / f"{Path(name).stem}.txt"
    if os.environ.get("KURATIVE_UPDATE_GOLDEN"):
        golden.write_text(out)
    assert out == golden.read_text()
