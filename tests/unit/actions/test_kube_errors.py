"""API answers map to the error tree: permanent or temporary, with Retry-After and a short message."""

from __future__ import annotations

import json

import pytest

from kurative.actions.base import ActionContext
from kurative.actions.kubernetes._common import KubeGuards, check_name, check_namespace, parse_quantity
from kurative.adapters.kubernetes import (
    ForbiddenError,
    InvalidObjectError,
    ServerError,
    TooManyRequestsError,
    UnauthorizedError,
    map_status,
)
from kurative.errors import (
    GuardRefused,
    ObjectConflict,
    ObjectNotFound,
    PermanentActionError,
    TemporaryActionError,
)


def status(code: int, message: str, reason: str = "", **details: object) -> str:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return json.dumps(body)


@pytest.mark.parametrize(
    ("code", "headers", "kind", "temporary", "retry_after"),
    [
        (404, None, ObjectNotFound, False, None),
        (409, None, ObjectConflict, True, 1.0),
        (403, None, ForbiddenError, False, None),
        (401, None, UnauthorizedError, False, None),
        (422, None, InvalidObjectError, False, None),
        (400, None, InvalidObjectError, False, None),
        (429, {"Retry-After": "10"}, TooManyRequestsError, True, 10.0),
        (429, None, TooManyRequestsError, True, 1.0),
        (500, None, ServerError, True, None),
        (503, {"Retry-After": "4"}, ServerError, True, 4.0),
        (410, None, TemporaryActionError, True, 0.0),
        (418, None, PermanentActionError, False, None),
    ],
)
def test_status_codes(
    code: int, headers: dict | None, kind: type, temporary: bool, retry_after: float | None
) -> None:
    error = map_status(code, status(code, "the message"), headers, "GET /x")
    assert type(error) is kind
    assert error.temporary is temporary
    assert getattr(error, "retry_after", None) == retry_after
    assert str(error).startswith("GET /x: the message")


def test_forbidden_points_at_kurative_rbac_and_bodies_are_truncated() -> None:
    error = map_status(403, status(403, 'pods is forbidden: User "x" cannot list'), None, "GET /api/v1/pods")
    assert "kurative rbac" in str(error)
    long = map_status(500, "<html>" + "x" * 5000, None, "GET /y")
    assert len(str(long)) < 500


def test_quantities() -> None:
    assert parse_quantity("500m", "cpu") == 0.5
    assert parse_quantity("2", "cpu") == 2
    assert parse_quantity("512Mi", "memory") == 512 * 1024**2
    assert parse_quantity("1G", "memory") == 1e9
    # the whole grammar: the API server keeps 129e6 as written, and canonicalises 0.1 to 100m
    for text, amount in (
        ("129e6", 129e6), ("1E3", 1e3), ("1e-3", 1e-3), ("2E+2", 200), ("1E", 1e18), ("100n", 1e-7),
        ("5u", 5e-6), ("+1.5Gi", 1.5 * 1024**3), ("1.", 1), (".5", 0.5), ("0", 0), ("-0", 0),
        (129e6, 129e6), (1e20, 1e20), ("3Ei", 3 * 1024**6),
    ):  # fmt: skip
        assert parse_quantity(text, "memory") == pytest.approx(amount), text
    for bad in ("lots", "", "1.2.3Gi", True, None, "1e", "e3", "1Gi3", "1 Gi", "1ki", "1e3Gi", "."):
        with pytest.raises(PermanentActionError, match="not a Kubernetes quantity"):
            parse_quantity(bad, "x")
    with pytest.raises(PermanentActionError, match="'-1' is negative"):
        parse_quantity("-1", "x")
    for huge in ("1e400", "1e" + "9" * 5000, "1" * 400):  # an exponent past int()'s 4,300 digits too
        with pytest.raises(PermanentActionError, match="too large"):
            parse_quantity(huge, "x")
    assert parse_quantity("0e999999", "x") == 0


def test_names_and_protected_namespaces() -> None:
    assert check_name("web-1.example", "pod") == "web-1.example"
    for bad in ("Web", "-web", "a_b", "x" * 254, ""):
        with pytest.raises(PermanentActionError):
            check_name(bad, "pod")
    with pytest.raises(PermanentActionError, match="DNS-1123 label"):
        check_name("a.b", "namespace", label=True)
    ctx = ActionContext(
        "e", "s", services={"kubernetes_guards": KubeGuards(protected_namespaces=("payments",))}
    )
    with pytest.raises(GuardRefused, match="payments is protected"):
        check_namespace(ctx, "payments")
    assert check_namespace(ctx, "payments", mutating=False) == "payments"
    assert check_namespace(ctx, "kube-system") == "kube-system"  # configured away
    with pytest.raises(GuardRefused):
        check_namespace(ActionContext("e", "s"), "kube-system")
    lists = KubeGuards(allowed_namespaces=("shop", "payments"), denied_namespaces=("payments",))
    listed = ActionContext("e", "s", services={"kubernetes_guards": lists})
    assert check_namespace(listed, "shop") == "shop"
    for refused, why in (("payments", "denied"), ("other", "not allowed"), ("kube-system", "protected")):
        with pytest.raises(GuardRefused, match=f"{refused} is {why}"):
            check_namespace(listed, refused)
        assert check_namespace(listed, refused, mutating=False) == refused
