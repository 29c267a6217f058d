"""Files generated from the code: the README's action table and deploy/rbac.yaml.

``make docs`` (``python -m tests.support.generated``) rewrites them; tests/unit/test_generated.py
fails when they are stale, so the catalogue is written once, in the registry.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from kurative.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RBAC = ROOT / "deploy" / "rbac.yaml"
BLOCK = re.compile(r"(<!-- actions:begin[^>]*-->\n)(.*?)(<!-- actions:end -->)", re.DOTALL)


def run_cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    if code != 0:
        raise RuntimeError(f"kurative {' '.join(args)} exited {code}")
    return out.getvalue()


def readme_with_table(readme: str) -> str:
    table = run_cli("actions", "--format", "markdown")
    if not BLOCK.search(readme):
        raise RuntimeError("README.md lost its <!-- actions:begin --> / <!-- actions:end --> markers")
    return BLOCK.sub(lambda m: m.group(1) + table + m.group(3), readme)


def rbac_for_rules() -> str:
    return run_cli("rbac", "--rules", str(ROOT / "rules")).replace(str(ROOT) + "/", "")


def update() -> None:
    README.write_text(readme_with_table(README.read_text()))
    RBAC.write_text(rbac_for_rules())


if __name__ == "__main__":
    update()
