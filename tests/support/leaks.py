"""Find known secret values in what a run left behind: log files, journal table dumps, HTTP bodies.

A secret leaks not only verbatim: a log line may hold it JSON-escaped, a URL percent-encoded, a basic
auth header base64-encoded (alone or as ``user:password``). :func:`scan` looks for every one of these
forms of each value in every text and reports each occurrence with where it was found, so that a
failing test says which secret, in which form, in which file or row, and shows the context.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Leak:
    secret: str
    """The secret's name (never its value: the report itself must not leak)."""
    form: str
    """How it was written: plain, base64, url, json, ..."""
    where: str
    """The file, table row or response the text came from."""
    offset: int
    context: str
    """The text around the occurrence, with the secret replaced by its name."""

    def __str__(self) -> str:
        return f"{self.where}@{self.offset}: secret {self.secret!r} ({self.form}): ...{self.context}..."


def encodings(value: str) -> dict[str, str]:
    """The forms in which ``value`` could appear in a text, by name; forms shorter than 6 characters
    are left out (they would match by chance)."""
    raw = value.encode()
    forms = {
        "plain": value,
        "json": json.dumps(value)[1:-1],
        "json-in-json": json.dumps(json.dumps(value)[1:-1])[1:-1],
        "json-unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "url": urllib.parse.quote(value, safe=""),
        "url-plus": urllib.parse.quote_plus(value),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "hex": raw.hex(),
        "repr-bytes": repr(raw)[2:-1],
    }
    # base64 of the value inside a longer text (user:password, a header in a dump): at each of the
    # three alignments, the groups of four characters that encode the value's bytes alone
    for shift in (0, 1, 2):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        end = len(encoded) - (4 if (shift + len(raw)) % 3 else 0)
        forms[f"base64+{shift}"] = encoded[4 if shift else 0 : end]
    return {name: form for name, form in forms.items() if len(form) >= 6}


def scan(secrets: Mapping[str, str], texts: Iterable[tuple[str, str]], *, context: int = 40) -> list[Leak]:
    """Every occurrence of every form of every secret (name -> value) in ``texts`` ((where, text))."""
    patterns = [
        (name, form_name, form)
        for name, value in secrets.items()
        for form_name, form in encodings(value).items()
    ]
    leaks: list[Leak] = []
    for where, text in texts:
        seen: set[tuple[str, int]] = set()
        for name, form_name, form in patterns:
            start = text.find(form)
            while start != -1:
                if (name, start) not in seen:
                    seen.add((name, start))
                    around = text[max(0, start - context) : start + len(form) + context]
                    leaks.append(Leak(name, form_name, where, start, around.replace(form, f"<{name}>")))
                start = text.find(form, start + 1)
    return leaks


def file_texts(*roots: Path) -> Iterable[tuple[str, str]]:
    """Each regular file under ``roots`` (or each root that is a file), decoded leniently."""
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if path.is_symlink():
                continue
            data = path.read_bytes()
            yield str(path), data.decode("utf-8", errors="replace")
            if b"\0" in data:  # a binary file (SQLite): also its bytes as Latin-1, one char a byte
                yield f"{path} (bytes)", data.decode("latin-1")


def report(leaks: list[Leak], limit: int = 20) -> str:
    lines = [str(leak) for leak in leaks[:limit]]
    if len(leaks) > limit:
        lines.append(f"... and {len(leaks) - limit} more")
    return "\n".join(lines)
