"""Names and values a Kubernetes action checks are whole-string matches: a trailing newline (a label
value can carry one) never slips past a guard to a path that does not exist."""

from __future__ import annotations

import pytest

from kurative.actions.kubernetes._common import check_name
from kurative.durations import DurationError, parse_duration
from kurative.errors import PermanentActionError


@pytest.mark.parametrize("value", ["kube-system\n", "web\n", "web\r\n", "\nweb"])
def test_names_with_line_breaks_are_refused(value: str) -> None:
    with pytest.raises(PermanentActionError, match="not a valid"):
        check_name(value, "namespace")


def test_durations_are_whole_matches() -> None:
    with pytest.raises(DurationError):
        parse_duration("5m\n")
    assert parse_duration("5m") == 300
