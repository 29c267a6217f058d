"""The distribution installs one import package, ``kurative``, from the source root ``engine/``."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import kurative

ROOT = Path(__file__).resolve().parents[2]


def test_the_only_top_level_package_is_kurative() -> None:
    top_level = importlib.metadata.distribution("kurative").read_text("top_level.txt") or ""
    assert top_level.split() == ["kurative"]
    assert Path(kurative.__file__).resolve().parent == ROOT / "engine" / "kurative"


def test_console_script_and_tools_name_the_kurative_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["kurative"] == "kurative.cli:main"
    assert project["tool"]["setuptools"]["packages"]["find"] == {
        "where": ["engine"],
        "include": ["kurative*"],
    }
    assert project["tool"]["importlinter"]["root_package"] == "kurative"
    assert project["tool"]["mypy"]["packages"] == ["kurative"]
