"""The quick schema check never calls a document valid that jsonschema finds an error in.

It stands in front of jsonschema on every playbook load, so a wrong "valid" would silently drop a
diagnostic. Checked over every shipped and test playbook, the example config and every action's
params, each as it is and mutated a field at a time (removed, or replaced by values of other types
and edge values), and over documents written to hit each keyword; and the check of that rule is
itself checked: a quick check that calls everything valid fails it.
"""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kurative.actions.registry import all_actions
from kurative.durations import FORMATS, format_checker
from kurative.playbooks.quickcheck import compile_check
from kurative.playbooks.validation import load_schema
from kurative.playbooks.yamlload import load_yaml_file

ROOT = Path(__file__).parents[3]
REPLACEMENTS: list[Any] = [
    None, True, False, 0, -1, 1, 1.5, 2.0, 10**9, "", "x", "5m", "1h30m", "99999999d", "5 minutes",
    "${labels.pod}", [], ["a"], ["a", "a"], [1, 1], {}, {"x": 1}, "web\n", "5m\n", "Deployment\n",
]  # fmt: skip


def _documents(*folders: Path) -> list[Any]:
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*.yaml")):
            for doc in load_yaml_file(path).documents:
                found.append(doc.data)
    return found


def _mutations(data: Any) -> Iterator[Any]:
    """``data`` with one place changed: each key removed, each value replaced."""

    def places(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield (*path, key)
                yield from places(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield (*path, index)
                yield from places(value, (*path, index))

    for path in places(data, ()):
        for replacement in [*REPLACEMENTS, "<delete>"]:
            changed = copy.deepcopy(data)
            parent = changed
            for part in path[:-1]:
                parent = parent[part]
            if replacement == "<delete>":
                del parent[path[-1]]
            else:
                parent[path[-1]] = replacement
            yield changed


def _places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index)
            yield from _places(value, (*path, index))


def _mutated_at_random(data: Any, rng: random.Random, times: int) -> Any:
    """``data`` changed in ``times`` places at random: removed, replaced, or a key misspelt."""
    changed = copy.deepcopy(data)
    for _ in range(times):
        places = list(_places(changed))
        if not places:
            break
        path = rng.choice(places)
        parent = changed
        for part in path[:-1]:
            parent = parent[part]
        choice = rng.random()
        if choice < 0.2:
            del parent[path[-1]]
        elif choice < 0.35 and isinstance(parent, dict):
            parent[str(path[-1])[::-1] or "x"] = parent.pop(path[-1])
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return changed


def _template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _agree(
    schema: dict[str, Any],
    documents: list[Any],
    *,
    templates: bool = False,
    quick: Callable[[Any], bool] | None = None,
) -> tuple[int, int]:
    """Asserts the rule; returns how many documents the quick check passed and how many it saw.
    With ``templates``, as ``kurative lint`` checks params: errors about a template do not count."""
    quick = quick or compile_check(schema, FORMATS, templates=templates)
    assert quick is not None
    full = jsonschema.Draft202012Validator(schema, format_checker=format_checker())
    passed = 0
    for document in documents:
        before = copy.deepcopy(document)
        verdict = quick(document)
        assert document == before, "the quick check changed the document (defaults filled in?)"
        if verdict:
            passed += 1
            errors = [
                e.message for e in full.iter_errors(document) if not (templates and _template(e.instance))
            ]
            assert errors == [], f"quick check passed a document jsonschema rejects: {errors}"
    return passed, len(documents)


def _playbooks() -> list[Any]:
    docs = _documents(ROOT / "examples" / "playbooks", ROOT / "rules", ROOT / "tests" / "unit" / "lint")
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == "Playbook"]


@pytest.mark.timeout(120)
def test_playbooks_as_shipped_pass_the_quick_check() -> None:
    full = jsonschema.Draft202012Validator(load_schema("playbook"), format_checker=format_checker())
    valid = [d for d in _playbooks() if not list(full.iter_errors(d))]
    assert len(valid) >= 5
    passed, seen = _agree(load_schema("playbook"), valid)
    assert passed == seen, "a valid playbook should not need the full validation"


@pytest.mark.timeout(300)
def test_mutated_playbooks_never_pass_wrongly() -> None:
    sources = [ROOT / "examples" / "playbooks", ROOT / "rules"]
    mutated = [m for doc in _documents(*sources)[:6] for m in _mutations(doc)]
    passed, seen = _agree(load_schema("playbook"), mutated + _playbooks())
    assert 0 < passed < seen


@pytest.mark.timeout(300)
def test_playbooks_mutated_in_several_places_never_pass_wrongly() -> None:
    rng = random.Random(20261201)
    sources = _documents(ROOT / "examples" / "playbooks", ROOT / "rules") + _playbooks()
    mutated = [_mutated_at_random(rng.choice(sources), rng, rng.randint(1, 4)) for _ in range(3000)]
    passed, seen = _agree(load_schema("playbook"), mutated)
    assert 0 < passed < seen


@pytest.mark.timeout(120)
def test_mutated_config_never_passes_wrongly() -> None:
    config = _documents(ROOT / "examples")
    configs = [d for d in config if isinstance(d, dict) and d.get("kind") == "Config"]
    assert configs
    passed, _ = _agree(load_schema("config"), [m for c in configs for m in _mutations(c)] + configs)
    assert passed > 0


@pytest.mark.timeout(120)
def test_action_params_never_pass_wrongly() -> None:
    for spec in all_actions():
        schema = dict(spec.params)
        required = dict.fromkeys(schema.get("required", []), "x")
        examples: list[Any] = [{}, {"namespace": "shop", "name": "web"}]
        examples += [{**required, "nmae": value} for value in REPLACEMENTS]  # a misspelt param
        for name, sub in schema.get("properties", {}).items():
            for value in REPLACEMENTS:
                examples.append({name: value})
                examples.append({**dict.fromkeys(schema.get("required", []), "x"), name: value})
            if "default" in sub:
                examples.append({name: sub["default"]})
        _agree(schema, examples)
        _agree(schema, examples, templates=True)


def test_the_rule_is_checked_not_assumed() -> None:
    """A quick check that calls everything valid (or rejects nothing) fails the test above."""
    sources = [ROOT / "examples" / "playbooks", ROOT / "rules"]
    mutated = [m for doc in _documents(*sources)[:1] for m in _mutations(doc)]
    with pytest.raises(AssertionError, match="jsonschema rejects"):
        _agree(load_schema("playbook"), mutated, quick=lambda document: True)
    spec = next(s for s in all_actions() if s.name == "kubernetes.rollout_restart")
    with pytest.raises(AssertionError, match="jsonschema rejects"):
        _agree(dict(spec.params), [{"nmae": "${labels.pod}"}], templates=True, quick=lambda d: True)


def test_every_shipped_schema_and_action_has_a_quick_check() -> None:
    """Else loading would silently fall back to jsonschema for every document."""
    for name in ("playbook", "config", "alerts"):
        assert compile_check(load_schema(name), FORMATS) is not None, name
    for spec in all_actions():
        for templates in (False, True):
            assert compile_check(dict(spec.params), FORMATS, templates=templates) is not None, spec.name


def test_fastjsonschema_is_imported_on_first_check_only() -> None:
    code = (
        "import sys, kurative.playbooks.validation, kurative.linting.checks;"
        "assert 'fastjsonschema' not in sys.modules, 'imported at start'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "integer"}, [1, 0, 1.0], [1.5, True, "1", None]),
        ({"type": "number", "minimum": 0, "maximum": 2}, [0, 1.5, 2], [-1, 3, True, "1"]),
        ({"minimum": 1}, ["text", None, [0], True], [0, 0.5]),
        ({"exclusiveMinimum": 1, "exclusiveMaximum": 3}, [2, "x", False], [1, 3]),
        ({"const": 1}, [1, 1.0], [True, "1"]),
        ({"const": {"a": [1]}}, [{"a": [1]}], [{"a": [True]}, {"a": [1], "b": 2}]),
        ({"enum": ["a", False]}, ["a", False], [0, "b", None]),
        ({"uniqueItems": True}, [["a", "b"], "x", [1, True], [0, False], [[1], [True]]],
         [["a", "a"], [[1], [1]], [1, 1.0], [{"a": 1}, {"a": 1}]]),
        ({"items": {"type": "string"}, "minItems": 1, "maxItems": 2}, [["a"], {}], [[], [1], ["a"] * 3]),
        ({"pattern": "^a", "minLength": 2, "maxLength": 3}, ["ab", 5], ["ba", "a", "abcd"]),
        ({"pattern": "^a+$"}, ["aa", 1], ["b", "aa\n"]),  # "aa\n": stricter than jsonschema, which takes it
        ({"format": "duration"}, ["5m", 5], ["99999999d"]),
        ({"format": "date-time"}, ["not a date"], []),  # an annotation to jsonschema's checker too
        ({"required": ["a"], "properties": {"a": {"type": "string"}}}, [{"a": "x"}, []], [{}, {"a": 1}]),
        ({"additionalProperties": False, "patternProperties": {"^x-": True}}, [{"x-a": 1}], [{"b": 1}]),
        ({"minProperties": 1, "maxProperties": 1}, [{"a": 1}, []], [{}, {"a": 1, "b": 2}]),
        ({"propertyNames": {"maxLength": 2}}, [{"ab": 1}], [{"abc": 1}]),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, ["a", 1], [None]),
        ({"allOf": [{"type": "string"}, {"minLength": 2}]}, ["ab"], ["a", 1]),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, ["a", 1], [None, 1.5]),
        ({"oneOf": [{"type": "string"}, {"type": "object", "required": ["r"]}]}, ["a", {"r": 1}], [{}, 1]),
        ({"oneOf": [{"minLength": 1}, {"pattern": "^a"}]}, ["b"], ["a", "", {}]),
        ({"not": {"type": "string"}}, [1, None], ["a"]),
        ({"not": {"required": ["a", "b"]}}, [{"a": 1}], [{"a": 1, "b": 2}, "x"]),
        ({"not": {"type": "integer"}}, ["a", 1.5, True], [1, 1.0]),
        ({"not": {"enum": ["a", 1]}}, ["b", True], ["a", 1, 1.0]),
        (
            {"$defs": {"n": {"type": ["object", "null"], "properties": {"next": {"$ref": "#/$defs/n"}}}},
             "$ref": "#/$defs/n"},
            [None, {"next": {"next": None}}],
            [{"next": {"next": 1}}],
        ),
        # 2020-12 applies the keywords next to a $ref (draft 7, and fastjsonschema, would not)
        ({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "minLength": 2}, ["ab"], ["a", 1]),
        ({"properties": {"a": {"$ref": "#/$defs/s", "enum": ["x"]}}, "$defs": {"s": {"type": "string"}}},
         [{"a": "x"}], [{"a": "y"}, {"a": 1}]),
    ],
)  # fmt: skip
def test_each_keyword(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    """``good``: the quick check says valid; ``bad``: it leaves them to jsonschema (not all are invalid
    to jsonschema: the quick check may be stricter, never laxer)."""
    quick = compile_check(schema, FORMATS)
    assert quick is not None
    assert [v for v in good if not quick(v)] == []
    assert [v for v in bad if quick(v)] == []
    _agree(schema, good + bad)


def test_values_whose_errors_are_dropped_pass_except_under_any_or_one_of() -> None:
    """``kurative lint`` drops every param error about a template (``${...}``), checked at run time."""
    schema = {
        "type": "object",
        "$defs": {"count": {"type": "integer", "minimum": 1}},
        "properties": {
            "n": {"$ref": "#/$defs/count"},
            "pair": {"anyOf": [{"properties": {"n": {"$ref": "#/$defs/count"}}}, {"required": ["m"]}]},
            "names": {"type": "array", "items": {"enum": ["a", "b"]}},
            "one": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
        },
    }
    quick = compile_check(schema, FORMATS, templates=True)
    assert quick is not None
    assert quick({"n": "${labels.count}"})
    assert quick({"pair": "${labels.pair}"})
    assert quick({"names": ["a", "${labels.name}"]})
    assert quick({"one": "${labels.one}"})
    assert not quick({"n": "labels.count"})  # not a template
    assert not quick({"pair": {"n": "${labels.n}"}})  # jsonschema's anyOf error is about the mapping
    plain = compile_check(schema, FORMATS)
    assert plain is not None
    assert not plain({"n": "${labels.count}"})  # templates pass only when asked for
    closed = compile_check({"additionalProperties": False, "properties": {"a": {}}}, FORMATS, templates=True)
    assert closed is not None
    assert not closed({"b": "${x}"})  # "additional properties" is about the mapping too
    full = jsonschema.Draft202012Validator(schema, format_checker=format_checker())
    assert [e for e in full.iter_errors({"pair": {"n": "${x}"}}) if not _template(e.instance)]
    documents = [
        {"n": "${x}"}, {"pair": "${x}"}, {"pair": {"n": "${x}"}}, {"names": ["${x}", "c"]},
        {"one": "${x}"}, {"one": 1.5}, {"n": 0}, {"names": "${x}"},
    ]  # fmt: skip
    _agree(schema, documents, templates=True)


@pytest.mark.parametrize(
    "schema",
    [{"if": {"type": "string"}}, {"$ref": "https://example.com/s"}, {"prefixItems": [], "items": True},
     {"type": "mystery"}, {"pattern": "("}, {"multipleOf": 2}, {"unevaluatedProperties": False},
     {"contains": {"type": "string"}}, {"dependentRequired": {"a": ["b"]}}, {"$ref": "#/$defs/missing"},
     {"not": {"pattern": "^a$"}}, {"oneOf": [{"$ref": "#/$defs/d"}, True], "$defs": {"d": {"pattern": "a$"}}},
     {"properties": {"a": {"$id": "urn:x", "type": "string"}}}, {"items": [{"type": "string"}]},
     {"$defs": {"a/b": {}}, "$ref": "#/$defs/a~1b"}],
)  # fmt: skip
def test_what_it_does_not_handle_gets_no_quick_check(schema: dict[str, Any]) -> None:
    assert compile_check(schema, FORMATS) is None
