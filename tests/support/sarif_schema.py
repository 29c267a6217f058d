"""The official SARIF 2.1.0 JSON Schema, for checking ``lint --format sarif``.

No PyPI package ships the schema, so it is taken from a pinned npm package (Microsoft's jest-sarif
matchers bundle it) with ``npm pack`` and cached outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.debian import require_debian_tool

PACKAGE = "@microsoft/jest-sarif@1.0.0-beta.0"
MEMBER = "package/lib/schemas/sarif-2.1.0-rtm.5.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kurative" / "sarif"


def sarif_schema() -> dict[str, Any]:
    target = CACHE / "sarif-2.1.0-rtm.5.json"
    if not target.exists():
        npm = require_debian_tool(lambda: shutil.which("npm"), "npm", "npm (to fetch the SARIF 2.1.0 schema)")
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "pack", PACKAGE, "--pack-destination", str(CACHE)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            message = f"npm pack {PACKAGE} failed: {done.stderr.strip()[-500:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        archive = CACHE / done.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as tar:
            source = tar.extractfile(MEMBER)
            assert source is not None
            target.write_bytes(source.read())
    schema: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    return schema
