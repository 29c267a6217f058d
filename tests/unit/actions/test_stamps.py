"""The ``kurative/step`` annotation: a bounded list of the steps that stamped an object."""

from __future__ import annotations

from kurative.actions.base import ActionContext
from kurative.actions.kubernetes._common import STAMP_ANNOTATION, STAMP_HISTORY, stamp, stamped, stamps_of


def _obj(value: str | None) -> dict[str, object]:
    return {"metadata": {"annotations": {} if value is None else {STAMP_ANNOTATION: value}}}


def test_a_stamp_is_added_to_the_earlier_ones_and_a_repeat_is_not_doubled() -> None:
    first, second = ActionContext("e1", "scale"), ActionContext("e2", "restart")
    after_first = _obj(stamp(first, _obj(None))[STAMP_ANNOTATION])
    after_second = _obj(stamp(second, after_first)[STAMP_ANNOTATION])
    assert stamps_of(after_second) == ["e1/scale", "e2/restart"]
    assert stamped(after_second, first)
    assert stamped(after_second, second)
    again = stamp(first, after_second)[STAMP_ANNOTATION]
    assert again == "e2/restart,e1/scale"  # a retry moves it to the newest end, once


def test_the_history_keeps_only_the_most_recent_stamps() -> None:
    obj = _obj(None)
    for i in range(STAMP_HISTORY + 3):
        obj = _obj(stamp(ActionContext(f"e{i}", "s"), obj)[STAMP_ANNOTATION])
    assert stamps_of(obj) == [f"e{i}/s" for i in range(3, STAMP_HISTORY + 3)]
    assert not stamped(obj, ActionContext("e2", "s"))


def test_a_single_stamp_of_an_older_build_still_counts() -> None:
    assert stamped(_obj("e1/scale"), ActionContext("e1", "scale"))
    assert stamps_of({"metadata": {}}) == []
    assert stamps_of(None) == []
