"""The journal schema: migrations shipped in the package, one plain SQL file per version and backend.

Files live in ``kurative/journal/migrations/<backend>/NNNN_name.sql``; a ``schema_version`` table in the
database lists what was applied. Numbers are contiguous from 1 so that a missing file is a packaging
bug caught at start, not a silently skipped migration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from kurative.errors import SchemaVersionError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

SCHEMA_VERSION_TABLE = "schema_version"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(backend: str) -> tuple[Migration, ...]:
    """The migrations for ``backend`` (``postgresql`` or ``sqlite``), ordered by version."""
    folder = resources.files("kurative.journal").joinpath("migrations").joinpath(backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise SchemaVersionError(
                f"journal migrations for {backend} are not contiguous: expected {expected:04d}, "
                f"found {migration.version:04d}_{migration.name}.sql"
            )
    return tuple(found)


def check_version(current: int, latest: int, url: str, *, migrating: bool) -> None:
    """Refuse a schema newer than this build, and (unless migrating) one older than it."""
    if current > latest:
        raise SchemaVersionError(
            f"the journal at {url} has schema version {current}, newer than version {latest} that this "
            "kurative knows: upgrade kurative (never run an older build against a migrated journal)"
        )
    if current < latest and not migrating:
        raise SchemaVersionError(
            f"the journal at {url} has schema version {current}, this kurative needs {latest}: "
            f"run `kurative migrate --journal {url}` (or start the daemon with --migrate)"
        )
