"""The three patch formats the API server accepts, applied as Kubernetes applies them.

- JSON merge patch (RFC 7386): maps merge, ``null`` deletes, lists are replaced.
- JSON patch (RFC 6902): add, remove, replace, move, copy, test.
- Strategic merge patch: like a merge patch, but lists whose schema says
  ``x-kubernetes-patch-strategy: merge`` are merged by their ``x-kubernetes-patch-merge-key``
  (containers by ``name``, ports by ``containerPort``), primitive lists with that strategy are
  unioned, and the directives ``$patch: replace|delete|merge``, ``$retainKeys``,
  ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>`` are honoured.
  The merge keys come from the schemas shipped in kubernetes-validate (see :mod:`.schemas`).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.support.fakekube.schemas import SchemaNode


class PatchError(ValueError):
    """The patch cannot be applied (the server answers 422 or 400 with this message)."""


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise PatchError(f"index {part} out of range") from None
        elif isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"missing path element {part!r}")
            doc = doc[part]
        else:
            raise PatchError(f"cannot descend into {part!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if index > len(parent) or index < 0:
            raise PatchError(f"index {last} out of range")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"cannot add to {last!r}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    try:
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise PatchError(f"unable to remove nonexistent key: {last}: missing value") from None


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _walk(doc, parts)  # must exist
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, source))
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


def strategic_merge_patch(target: Any, patch: Any, schema: SchemaNode) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    return _merge_map(target if isinstance(target, dict) else {}, patch, schema)


def _merge_map(target: dict[str, Any], patch: dict[str, Any], schema: SchemaNode) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        child = schema.child(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = _merge_map(
                result.get(key) if isinstance(result.get(key), dict) else {}, value, child
            )
            if value.get("$patch") == "delete":
                result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, child)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(target: Any, patch: list[Any], schema: SchemaNode) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    if not schema.merge_strategy:
        return [_strip_directives(copy.deepcopy(item)) for item in patch]
    key = schema.merge_key
    if key is None:  # a primitive list with the merge strategy: a union, ordered as the server orders it
        left = [item for n, item in enumerate(patch) if item not in patch[:n]]
        right = [item for item in current if item not in left]
        wrap = [{"v": item} for item in left], [{"v": item} for item in right]
        return [w["v"] for w in _merge_sorted(wrap[0], wrap[1], list(current), "v")]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    items = schema.items()
    by_key = {existing.get(key): existing for existing in current if isinstance(existing, dict)}
    patched: list[Any] = []
    touched: set[Any] = set()
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list items merged by {key!r} must be objects")
        if key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        touched.add(item[key])
        if item.get("$patch") == "delete":
            continue
        base = by_key.get(item[key])
        patched.append(_merge_map(copy.deepcopy(base) if base is not None else {}, item, items))
    rest = [copy.deepcopy(e) for e in current if not (isinstance(e, dict) and e.get(key) in touched)]
    return _merge_sorted(patched, rest, [e.get(key) for e in current if isinstance(e, dict)], key)


def _merge_sorted(left: list[Any], right: list[Any], server_order: list[Any], key: str) -> list[Any]:
    """apimachinery's mergeSortedSlice: server order wins where both sides know an item, new items first."""
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
            continue
        if j >= len(right):
            out.append(left[i])
            i += 1
            continue
        li = server_order.index(left[i][key]) if left[i][key] in server_order else -1
        ri = server_order.index(right[j][key]) if right[j][key] in server_order else -1
        if li >= 0 and ri >= 0 and li > ri:
            out.append(right[j])
            j += 1
        else:
            out.append(left[i])
            i += 1
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value
