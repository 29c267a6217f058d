"""The libyaml fast path of playbook loading gives exactly what the round-trip loader gives.

Same data, same positions of every key and value, same block-scalar layout; and every file it does
not handle (anchors, tags, duplicate keys, floats, timestamps, syntax errors) goes the round-trip way,
so its diagnostics are the ones users have always seen.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kurative.playbooks import yamlload
from kurative.playbooks.yamlload import LoadedFile, load_yaml_text

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[3]
REPO_YAML = sorted(
    p
    for pattern in ("*.yaml", "*.yml")
    for p in ROOT.rglob(pattern)
    if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
)

PLAIN = {
    "scalars": """\
        apiVersion: kurative/v1
        kind: Playbook
        metadata: {name: "quoted", version: 1, labels: {'team': x, on: yes}}
        spec:
          flag: true
          other: FALSE
          nothing: ~
          empty:
          negative: -3
          duration: 30m
          size: 200Gi
          time: 12:30
          plain: a plain
            scalar folded over lines
          when: "labels.severity != 'info' && labels.namespace != 'kube-system'"
          single: 'it''s'
          escaped: "tab\\there \\u00e9"
        """,
    "blocks": """\
        steps:
          - name: literal
            params:
              script: |
                echo one
                  indented two

                echo three
          - name: folded
            params: {description: x}
            text: >-
              folded text
              continues here
          - - nested
            - [flow, "seq", 3]
          -
            late: value
        """,
    "documents": """\
        ---
        a: 1
        ---
        - b
        - c: {d: [e, {f: g}]}
        """,
    "empty values": """\
        a:
        b: 1
        c:
          d:
          e:
            - ""
            - x
            -
        f:
        """,
    "comments": """\
        # leading comment
        a: 1  # trailing
        b:
          # inside
          - x   # item
        """,
}

NOT_PLAIN = {
    # where libyaml and ruamel part ways (found by fuzzing the two against each other)
    "tag on a key": "!x a: b\n",
    "python tag on a key": "a:\n  !!python/name:os.system k: v\n",
    "float tag on a key": "!!float a: b\n",
    "trailing tab": "a: b\t\nc: 1\n",
    "tab after a colon": "a:\t1\n",
    "tab inside a plain scalar": "a: x\ty\n",
    "comment glued to a block header": "a: |#\n  x\n",
    "line of spaces first in a block": "s:\n  script: |\n  \n    echo two\n",
    "line of spaces and a carriage return": "a: >-\n \r\n  text\n",
    "lone carriage return": "a: >\n \r   q\n",
    "empty value at the end without a line break": "a:\n  b:",
    "empty value in a flow mapping": "a: {b: }\n",
    "empty value in a flow pair": "a: [b: ]\n",
    "key without a value in a flow mapping": "{a, b: c}\n",
    "empty value before a comment": "a:\n  b: #\n  d: 1\n",
    "comment between a key and its mapping": "a:\n  - f: #g\n    h: 'i'\n",
    "line separator in a folded scalar": "- >\n\u2028 p\n\n  q\n",
    "next line character": "a: x\x85y\n",
    "byte order mark inside": "a:\n  \ufeff: 'i'\n",
    "anchor": "a: &x {b: 1}\nc: *x\n",
    "tag": "a: !!str 1\n",
    "python tag": "a: !!python/object:os.system x\n",
    "duplicate": "a: 1\na: 2\n",
    "float": "a: 1.5\n",
    "timestamp": "a: 2024-05-01\n",
    "octal": "a: 0o17\n",
    "merge": "base: {a: 1}\nb:\n  <<: {c: 2}\n",
    "syntax": "a: [1, 2\nb: 3\n",
    "tab": "a:\n\tb: 1\n",
    "scalar document": "just text\n",
    "empty": "# nothing\n",
    "directive": "%YAML 1.1\n---\na: yes\n",
    "non-string key": "1: a\n",
}


def same(fast: LoadedFile, slow: LoadedFile) -> None:
    assert fast.diagnostics == slow.diagnostics
    assert len(fast.documents) == len(slow.documents)
    for got, want in zip(fast.documents, slow.documents, strict=True):
        assert got.data == want.data
        assert got.positions == want.positions
        assert got.key_positions == want.key_positions
        assert got.blocks == want.blocks
        assert got.index == want.index


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_files_load_the_same_both_ways(name: str) -> None:
    text = textwrap.dedent(PLAIN[name])
    fast = yamlload._fast_load("p.yaml", text)
    assert fast is not None, "the fast path should take this file"
    same(fast, yamlload._roundtrip_load("p.yaml", text))


@pytest.mark.parametrize("name", sorted(NOT_PLAIN))
def test_other_files_go_the_round_trip_way(name: str) -> None:
    text = NOT_PLAIN[name]
    assert yamlload._fast_load("p.yaml", text) is None
    loaded = load_yaml_text("p.yaml", text)
    reference = yamlload._roundtrip_load("p.yaml", text)
    assert loaded.diagnostics == reference.diagnostics
    assert [d.data for d in loaded.documents] == [d.data for d in reference.documents]


def test_every_yaml_file_of_the_repository_loads_the_same_both_ways() -> None:
    assert REPO_YAML, "no YAML files found"
    taken = 0
    for path in REPO_YAML:
        text = path.read_text(encoding="utf-8", errors="replace")
        fast = yamlload._fast_load(str(path), text)
        if fast is None:
            continue
        taken += 1
        same(fast, yamlload._roundtrip_load(str(path), text))
    assert taken >= len(REPO_YAML) // 2, f"the fast path took only {taken} of {len(REPO_YAML)} files"
