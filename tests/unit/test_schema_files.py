"""The JSON schemas shipped with kurative are strict JSON: no object declares a key twice (``json.load``
keeps the last one silently, strict tools and schema linters refuse the file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = sorted(
    {p.resolve() for folder in ("schemas", "engine/kurative/schemas") for p in (ROOT / folder).glob("*.json")}
)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"duplicate keys: {twice}")
    return dict(pairs)


def test_there_are_schemas() -> None:
    assert len(SCHEMAS) >= 5


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_a_schema_declares_no_key_twice(path: Path) -> None:
    with path.open(encoding="utf-8") as file:
        json.load(file, object_pairs_hook=_no_duplicates)
