"""What the README and CONTRIBUTING promise holds for this checkout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_tier_named_exists(doc: Path) -> None:
    named = set(re.findall(r"\btests/(\w+)", doc.read_text(encoding="utf-8")))
    assert named, "the document names no test folder"
    missing = sorted(tier for tier in named if not (ROOT / "tests" / tier).exists())
    assert missing == []


def test_installation_is_from_the_repository_while_kurative_is_not_published() -> None:
    texts = [ROOT / "README.md", *(ROOT / "examples").rglob("*.yaml")]
    bare = [str(p) for p in texts if re.search(r"pip install kurative\s*$", p.read_text(), re.MULTILINE)]
    assert bare == []


def test_a_pinned_pre_commit_rev_names_a_tag_that_exists() -> None:
    revs = re.findall(r"^\s*rev:\s*(\S+)", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE)
    tags = subprocess.run(["git", "tag"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    assert [rev for rev in revs if not rev.startswith("<") and rev not in tags.split()] == []
