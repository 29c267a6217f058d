"""Safe YAML loading that remembers where every node came from.

ruamel.yaml's round-trip loader keeps the line and column of each key, value and item; we turn the
documents into plain JSON values (for JSON Schema) plus a map from JSON path to position (for errors).
That loader is pure Python and slow (about 7 ms for a small playbook, parsed twice), so a plain file
(no anchors, aliases, tags, directives, duplicate keys, floats or timestamps: what playbooks are) is
first built straight from libyaml's parser events, with ruamel's own YAML 1.2 resolver deciding what
each plain scalar is; anything else, and every error, goes the round-trip way, so that diagnostics do
not change.
Only plain YAML is accepted: no tags beyond the core schema (so no Python objects), a bounded size, a
bounded nesting depth and a bounded alias expansion (a "billion laughs" file is refused before it is
built).
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from kurative.diagnostics import Diagnostic

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 100_000

# A \ud800 escape in a quoted scalar yields a lone surrogate: not a character, so it cannot be
# encoded, hashed or printed as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")

_CORE_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}

Path = tuple[str | int, ...]


@dataclass(slots=True)
class Document:
    """One YAML document as plain data, with 1-based positions of its nodes."""

    path: str
    index: int
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    blocks: dict[Path, tuple[int, int, tuple[int, ...]]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list, repr=False)
    # Values plain data cannot hold (found while converting); a document with any is not loaded.
    problems: list[Diagnostic] = field(default_factory=list, repr=False)

    def position(self, path: Path, key: bool = False) -> tuple[int, int]:
        """Position of the node at ``path`` (of its key when ``key``), else of its nearest ancestor."""
        if key and path in self.key_positions:
            return self.key_positions[path]
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), (1, 1))


@dataclass(slots=True)
class LoadedFile:
    path: str
    documents: list[Document]
    diagnostics: list[Diagnostic]


def _diag(path: str, line: int, column: int, code: str, message: str, hint: str = "") -> Diagnostic:
    return Diagnostic.make(path, line, column, code, message, hint)


def _too_big(path: str, size: int) -> Diagnostic:
    return _diag(
        path,
        1,
        1,
        "E005",
        f"file is {size / 1_048_576:.1f} MiB, more than the {MAX_FILE_BYTES // 1024} KiB a playbook "
        "file may hold",
        "split it into several files; playbooks are small",
    )


def _decode(path: str, raw: bytes) -> tuple[str | None, Diagnostic | None]:
    if len(raw) > MAX_FILE_BYTES:
        return None, _too_big(path, len(raw))
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        return None, _diag(
            path, line, 1, "E001", "binary file (contains a NUL byte)", "playbooks are UTF-8 text"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, _diag(
            path,
            line,
            column,
            "E001",
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded",
            "save the file as UTF-8",
        )
    return text.removeprefix("\ufeff"), None


def _marked(path: str, exc: MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    if isinstance(exc, DuplicateKeyError):
        key = problem.split('"')[1] if '"' in problem else problem
        return _diag(
            path, line, column, "E003", f"duplicate key {key!r}", "each key may appear once per mapping"
        )
    if "'\\t'" in problem or "\t" in problem:
        return _diag(path, line, column, "E004", "tab character in indentation", "indent YAML with spaces")
    context = f" ({exc.context.strip()})" if exc.context and exc.problem else ""
    return _diag(path, line, column, "E002", f"YAML syntax error: {problem}{context}", _yaml_hint(problem))


def _yaml_hint(problem: str) -> str:
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted"
    if "could not find expected ':'" in problem:
        return "check the indentation and that every key ends with ':'"
    if "found unexpected end of stream" in problem or "found unexpected" in problem:
        return "check for an unclosed quote or bracket"
    if "found undefined alias" in problem:
        return "define the anchor (&name) before using the alias (*name)"
    return "check the indentation and quoting near this position"


def _precheck(path: str, yaml: YAML, text: str) -> Diagnostic | None:
    """Walk the parser events once: depth, alias expansion and tags, before anything is built."""
    depth = 0
    sizes: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = []
    expanded = 0
    for event in yaml.parse(text):
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        if isinstance(event, DocumentStartEvent):
            expanded = 0
        if isinstance(event, NodeEvent) and not isinstance(event, AliasEvent):
            tag = getattr(event, "tag", None)
            tag_text = str(getattr(tag, "value", tag)) if tag is not None else None
            if tag_text and tag_text not in _CORE_TAGS and tag_text != "!":
                return _diag(
                    path,
                    line,
                    column,
                    "E009",
                    f"unsupported YAML tag {tag_text.replace('tag:yaml.org,2002:', '!!')}",
                    "playbooks are plain YAML: remove the tag",
                )
        size = 0
        if isinstance(event, AliasEvent):
            size = sizes.get(str(event.anchor), 1)
        elif isinstance(event, ScalarEvent):
            surrogate = _SURROGATE.search(event.value)
            if surrogate is not None:
                return _diag(
                    path,
                    line,
                    column,
                    "E010",
                    f"string holds \\u{ord(surrogate.group()):04x}, a lone surrogate, "
                    "which is not a character",
                    "remove the escape or write the character itself; for a character outside the basic "
                    "plane write \\U0001F600, not a \\u surrogate pair",
                )
            size = 1
            if event.anchor:
                sizes[str(event.anchor)] = 1
        elif isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return _diag(
                    path,
                    line,
                    column,
                    "E007",
                    f"nesting deeper than {MAX_DEPTH} levels",
                    "playbooks need only a few levels; flatten the structure",
                )
            stack.append((str(event.anchor) if event.anchor else None, 0))
            continue
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
            anchor, inner = stack.pop()
            size = inner + 1
            if anchor:
                sizes[anchor] = size
        else:
            continue
        expanded += size
        if stack:
            anchor, inner = stack[-1]
            stack[-1] = (anchor, inner + size)
        if expanded > MAX_EXPANDED_NODES:
            return _diag(
                path,
                line,
                column,
                "E006",
                f"aliases expand to more than {MAX_EXPANDED_NODES:,} nodes",
                "this looks like an alias bomb; write the values out or use fewer aliases",
            )
    return None


def _plain(node: Any, path: Path, doc: Document) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key in node:
            name = key if isinstance(key, str) else str(key)
            child: Path = (*path, name)
            try:
                kline, kcol = node.lc.key(key)
                vline, vcol = node.lc.value(key)
            except (KeyError, TypeError):
                kline, kcol = vline, vcol = node.lc.line, node.lc.col
            doc.key_positions[child] = (kline + 1, kcol + 1)
            doc.positions[child] = (vline + 1, vcol + 1)
            out[name] = _plain(node[key], child, doc)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, item in enumerate(node):
            child = (*path, index)
            try:
                line, column = node.lc.item(index)
            except (KeyError, TypeError):
                line, column = node.lc.line, node.lc.col
            doc.positions[child] = (line + 1, column + 1)
            items.append(_plain(item, child, doc))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        if not math.isfinite(node):
            line, column = doc.positions.get(path, doc.positions.get((), (1, 1)))
            doc.problems.append(
                _diag(
                    doc.path,
                    line,
                    column,
                    "E104",
                    f"number out of range: this value reads as {node}, which JSON cannot hold",
                    "write a finite number, or quote the value to make it a string",
                )
            )
        return float(node)
    if isinstance(node, str):
        if isinstance(node, LiteralScalarString | FoldedScalarString) and path in doc.positions:
            _record_block(doc, path)
        if isinstance(node, DoubleQuotedScalarString | SingleQuotedScalarString) and path in doc.positions:
            line, column = doc.positions[path]
            doc.positions[path] = (line, column + 1)  # point at the first character inside the quotes
        return str(node)
    if isinstance(node, datetime.date | datetime.datetime):
        return node.isoformat()
    return str(node)


def _record_block(doc: Document, path: Path) -> None:
    """Remember where the content lines of a block scalar start, to position errors inside it."""
    header = doc.positions[path][0]  # the line with | or >
    first = header  # 0-based index of the line after the header
    while first < len(doc.lines) and not doc.lines[first].strip():
        first += 1
    if first >= len(doc.lines):
        return
    indent = len(doc.lines[first]) - len(doc.lines[first].lstrip(" "))
    lengths = []
    for line in doc.lines[first:]:
        if line.strip() and len(line) - len(line.lstrip(" ")) < indent:
            break
        lengths.append(max(len(line.rstrip()) - indent, 0))
    doc.blocks[path] = (first + 1, indent, tuple(lengths))


def _make_yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    return yaml


class _NotPlain(Exception):
    """The fast path does not handle this file: load it the round-trip way."""


def _libyaml_parser() -> Callable[[str], Any] | None:
    try:
        # libyaml, through PyYAML's C extension
        from yaml._yaml import CParser  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - PyYAML without libyaml
        return None
    return CParser  # type: ignore[no-any-return]


_CPARSER = _libyaml_parser()
_RESOLVER = VersionedResolver()
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_STR_TAG = "tag:yaml.org,2002:str"


@functools.lru_cache(maxsize=4096)
def _plain_tag(value: str) -> str:
    """The resolver's tag for a plain scalar: keys and values repeat across playbooks, and resolving
    runs a dozen regular expressions."""
    return str(_RESOLVER.resolve(ScalarNode, value, (True, False)))


@functools.lru_cache(maxsize=4096)
def _plain_scalar(value: str) -> Any:
    """What ruamel's round-trip loader makes of a plain scalar; :class:`_NotPlain` for the rare kinds.
    Cached: the values (str, None, bool, int) are immutable, and an exception is not cached."""
    tag = _plain_tag(value)
    if tag == _STR_TAG:
        return value
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if tag == "tag:yaml.org,2002:int" and _DECIMAL.fullmatch(value):
        return int(value)
    raise _NotPlain(tag)


_QUOTED = frozenset(('"', "'"))
_UNLIKE_CHARACTERS = ("\u2028", "\u2029", "\x85", "\ufeff")
_LONE_CR = re.compile("\r(?!\n)")
_SPACES_LINE = re.compile("\n[ ]+\r?(?:\n|\\Z)")
_FIRST_SPACES_LINE = re.compile("[ ]+\r?(?:\n|\\Z)")


def _unlike(text: str) -> bool:
    """Whether libyaml may read ``text`` otherwise than ruamel: a tab (a separator to libyaml, an error
    to ruamel), the Unicode line and paragraph separators and NEL (line breaks to libyaml only), a
    carriage return not followed by a line feed, a byte order mark (each places what follows it
    otherwise), or a line of nothing but spaces (in a block scalar, each counts its indentation its own
    way). Such a file goes the round-trip way. Searched for one by one: one pattern for all of them
    tried every character of every file, a tenth of the cost of loading a playbook."""
    if "\t" in text or ("\r" in text and _LONE_CR.search(text)):
        return True
    if not text.isascii() and any(odd in text for odd in _UNLIKE_CHARACTERS):
        return True
    # a line of spaces ends in a space (the regular expression is only worth it then)
    if " \n" not in text and " \r" not in text and not text.endswith(" "):
        return False
    return bool(_SPACES_LINE.search(text) or _FIRST_SPACES_LINE.match(text))


_BLOCK_HEADER = re.compile(r"[|>][-+0-9]*(?:[ ]|$)")
_BLOCK = frozenset(("|", ">"))
_KEY_STYLES = _QUOTED | _BLOCK


def _fast_load(path: str, text: str) -> LoadedFile | None:
    """The documents of a plain file from libyaml's events, or None when it is not plain.

    The walk compares exact event classes (the C parser makes PyYAML's own), so an event of any
    other class is not plain and the file goes the round-trip way."""
    if _CPARSER is None or _unlike(text):
        return None
    # PyYAML's event classes, for the C parser's events
    import yaml as pyyaml  # type: ignore[import-untyped]

    scalar_event = pyyaml.ScalarEvent
    sequence_start, sequence_end = pyyaml.SequenceStartEvent, pyyaml.SequenceEndEvent
    mapping_start, mapping_end = pyyaml.MappingStartEvent, pyyaml.MappingEndEvent
    plain_scalar = _plain_scalar
    parser = _CPARSER(text)
    next_event = parser.get_event
    documents: list[Document] = []
    lines = text.splitlines()
    nodes = 0

    def node(event: Any, path: Path, doc: Document, depth: int) -> Any:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_EXPANDED_NODES or depth > MAX_DEPTH:
            raise _NotPlain("size")
        kind = type(event)
        if event.anchor is not None:
            raise _NotPlain("anchor")
        positions = doc.positions
        if kind is scalar_event:
            plain_implicit, quoted_implicit = event.implicit
            if event.tag is not None and not (plain_implicit or quoted_implicit):
                raise _NotPlain("tag")
            style = event.style
            if style in _QUOTED:
                if path in positions:
                    line, column = positions[path]
                    positions[path] = (line, column + 1)  # the first character inside the quotes
                return event.value
            if style in _BLOCK:
                header = doc.lines[event.start_mark.line][event.start_mark.column :]
                if not _BLOCK_HEADER.match(header):
                    raise _NotPlain("block scalar header")  # a comment glued to it, say: ruamel refuses
                if path in positions:
                    _record_block(doc, path)
                return event.value
            return plain_scalar(event.value)
        if event.tag is not None and not event.implicit:
            raise _NotPlain("tag")
        if kind is sequence_start:
            items: list[Any] = []
            while type(item := next_event()) is not sequence_end:
                child: Path = (*path, len(items))
                mark = item.start_mark
                positions[child] = (mark.line + 1, mark.column + 1)
                items.append(node(item, child, doc, depth + 1))
            return items
        if kind is mapping_start:
            out: dict[str, Any] = {}
            key_positions = doc.key_positions
            empty: Path | None = None
            while True:
                key = next_event()
                key_kind = type(key)
                mark = key.start_mark
                if empty is not None:  # ruamel places an empty value where the next token starts
                    if mark.index >= len(text) and not text.endswith("\n"):
                        raise _NotPlain("empty value at the end of a file without a last line break")
                    positions[empty] = (mark.line + 1, mark.column + 1)
                    empty = None
                if key_kind is mapping_end:
                    return out
                if key_kind is not scalar_event or key.anchor is not None or key.tag is not None:
                    raise _NotPlain("complex or tagged key")
                name = key.value if key.style in _KEY_STYLES else plain_scalar(key.value)
                if type(name) is not str or name in out or name == "<<":
                    raise _NotPlain("key")  # non-string, duplicate or merge key
                child = (*path, name)
                value = next_event()
                value_mark = value.start_mark
                if value_mark.line > mark.line and "#" in lines[mark.line]:
                    raise _NotPlain("a comment between a key and its value")  # ruamel places it there
                key_positions[child] = (mark.line + 1, mark.column + 1)
                positions[child] = (value_mark.line + 1, value_mark.column + 1)
                out[name] = node(value, child, doc, depth + 1)
                if type(value) is scalar_event and value.value == "" and not value.style:
                    if event.flow_style or "#" in lines[mark.line]:
                        # ruamel places it otherwise: in a flow mapping, or before a comment
                        raise _NotPlain("empty value in a flow mapping or before a comment")
                    empty = child
        raise _NotPlain(kind.__name__)

    try:
        while not isinstance(event := next_event(), pyyaml.StreamEndEvent):
            if isinstance(event, pyyaml.StreamStartEvent | pyyaml.DocumentEndEvent):
                continue
            if not isinstance(event, pyyaml.DocumentStartEvent) or event.version or event.tags:
                raise _NotPlain("directive")
            root = next_event()
            if not isinstance(root, pyyaml.MappingStartEvent | pyyaml.SequenceStartEvent):
                raise _NotPlain("scalar document")
            nodes = 0
            doc = Document(path, len(documents), None, lines=lines)
            doc.positions[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
            doc.data = node(root, (), doc, 1)
            documents.append(doc)
    except (_NotPlain, pyyaml.YAMLError, RecursionError, ValueError, TypeError, AttributeError):
        return None
    if not documents:
        return None
    return LoadedFile(path, documents, [])


def load_yaml_text(path: str, text: str) -> LoadedFile:
    """Parse every document of ``text``; problems come back as diagnostics, never as exceptions."""
    fast = _fast_load(path, text)
    return fast if fast is not None else _roundtrip_load(path, text)


def _roundtrip_load(path: str, text: str) -> LoadedFile:
    """The round-trip way, for every file: the reference the fast path must agree with."""
    yaml = _make_yaml()
    try:
        problem = _precheck(path, yaml, text)
        if problem is not None:
            return LoadedFile(path, [], [problem])
        raw_documents = list(_make_yaml().load_all(text))
    except MarkedYAMLError as exc:
        return LoadedFile(path, [], [_marked(path, exc)])
    except (YAMLError, RecursionError, ValueError, TypeError) as exc:
        return LoadedFile(
            path, [], [_diag(path, 1, 1, "E002", f"YAML error: {exc}", "check the file's syntax")]
        )
    documents: list[Document] = []
    diagnostics: list[Diagnostic] = []
    starts = list(_document_starts(text))
    lines = text.splitlines()
    for index, raw in enumerate(raw_documents):
        line = starts[index] if index < len(starts) else 1
        if raw is None:
            trailing = index > 0 and index == len(raw_documents) - 1  # a harmless final '---'
            if not trailing:
                diagnostics.append(
                    _diag(path, line, 1, "E008", "empty YAML document", "remove it or write a playbook")
                )
            continue
        doc = Document(path, index, None, lines=lines)
        doc.positions[()] = (
            (raw.lc.line + 1, raw.lc.col + 1) if isinstance(raw, CommentedMap | CommentedSeq) else (line, 1)
        )
        doc.data = _plain(raw, (), doc)
        if doc.problems:
            diagnostics.extend(doc.problems)
            continue
        documents.append(doc)
    if not raw_documents:
        diagnostics.append(
            _diag(path, 1, 1, "E008", "empty file: no YAML document", "write a playbook or delete the file")
        )
    return LoadedFile(path, documents, diagnostics)


def _document_starts(text: str) -> Iterator[int]:
    """1-based line of each document start, for errors about empty documents."""
    yield 1
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("---") and number > 1:
            yield number


def read_bounded(path: str) -> tuple[bytes | None, Diagnostic | None]:
    """A playbook file's bytes without ever reading more than the limit, or why not: a larger file is
    refused by its size, a FIFO or device before anything is read (it could block, or never end).

    A path that is not a regular file is not even opened: opening a device can act (a tape rewinds, a
    watchdog arms, a terminal becomes the controlling terminal of a daemon that has none). The type is
    checked again on the open file (it may have been swapped meanwhile), which is opened without
    blocking and without ever taking a terminal as the controlling one."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, _diag(path, 0, 0, "E001", "not a regular file", "name a file")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None, _diag(path, 0, 0, "E001", "not a regular file", "name a file")
            if info.st_size > MAX_FILE_BYTES:
                return None, _too_big(path, info.st_size)
            return file.read(MAX_FILE_BYTES + 1), None
    except OSError as exc:
        reason = f"cannot read file: {exc.strerror or exc}"
        return None, _diag(path, 0, 0, "E001", reason, "check the path and its permissions")


def load_yaml_file(path: str | os.PathLike[str]) -> LoadedFile:
    """Load a YAML file, read with :func:`read_bounded`."""
    name = str(path)
    raw, problem = read_bounded(name)
    if raw is None:
        return LoadedFile(name, [], [problem] if problem else [])
    return load_yaml_bytes(name, raw)


def load_yaml_bytes(path: str, raw: bytes) -> LoadedFile:
    text, problem = _decode(path, raw)
    if problem is not None or text is None:
        return LoadedFile(path, [], [problem] if problem else [])
    return load_yaml_text(path, text)
