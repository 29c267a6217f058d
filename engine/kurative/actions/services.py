"""What the non-Kubernetes actions need from the runner: small protocols over the adapters.

Actions do not import :mod:`kurative.adapters` (the layers contract keeps the two independent); the
runner puts the adapters into ``ActionContext.services`` and the actions talk to them through these
protocols, as the Kubernetes actions do through ``KubeClient``:

- ``services["http"]``: :class:`HttpClient` (``kurative.adapters.http.HttpAdapter``);
- ``services["prometheus"]``: :class:`PrometheusClient` (``kurative.adapters.prometheus``);
- ``services["secrets"]``: :class:`SecretResolver` (``kurative.adapters.secrets.SecretStore``).

:class:`ResolvedSecrets` resolves the ``{secretRef: name}`` params of one step and remembers every
value it handed out, so that the step can scrub them from whatever it returns or raises.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kurative.actions.base import ActionContext
from kurative.errors import ActionError, PermanentActionError
from kurative.logging import MIN_SECRET_FORM, written_forms

# Secret values shorter than this are not scrubbed from text: replacing every "1" in an answer would
# mangle it and hide nothing worth hiding (the log redactor's rule too).
MIN_SCRUBBED_SECRET = MIN_SECRET_FORM


class SecretValue(Protocol):
    @property
    def name(self) -> str: ...

    def reveal(self) -> str: ...


class SecretResolver(Protocol):
    async def resolve(self, name: str) -> SecretValue:
        """The secret ``name``; a permanent error naming the reference (never a value) when missing."""
        ...


class HttpResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Header names in lower case."""
        ...

    @property
    def content(self) -> bytes: ...

    @property
    def truncated(self) -> bool: ...

    @property
    def text(self) -> str: ...

    @property
    def is_json(self) -> bool: ...

    def json(self) -> Any: ...

    def failure(self, why: str = "", *, scrub: Callable[[str], str] | None = None) -> ActionError:
        """The error for this status: 4xx permanent, 429 and 5xx temporary with ``Retry-After``;
        ``scrub`` is applied to the whole body before it is cut to fit the message."""
        ...


class HttpClient(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = ...,
        content: str | bytes | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        shown: str | None = None,
    ) -> HttpResponse:
        """The answer whatever its status; transport failures raise temporary errors, and
        ``BreakerOpen`` while the host's breaker is open. ``deadline`` (the event loop's clock) cuts
        ``timeout`` short; ``shown`` is the URL as messages show it."""
        ...


class PrometheusResult(Protocol):
    @property
    def result_type(self) -> str: ...

    @property
    def result(self) -> Any: ...


class PrometheusClient(Protocol):
    async def query(
        self,
        query: str,
        *,
        url: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        shown: str | None = None,
        scrub: Callable[[str], str] | None = None,
    ) -> PrometheusResult:
        """An instant query at ``url`` (default: the configured Prometheus); ``scrub`` is applied to
        remote text before it is cut to fit a message."""
        ...


def service(ctx: ActionContext, name: str, what: str) -> Any:
    """``ctx.services[name]``, or a permanent error saying that the daemon has no ``what``."""
    found = ctx.services.get(name)
    if found is None:
        raise PermanentActionError(f"no {what} is configured for this step ({name} is missing)")
    return found


CREDENTIAL_PARAMETERS = frozenset(
    {
        "key", "token", "secret", "sig", "signature", "password", "passwd", "pass", "pwd", "auth",
        "apikey", "api_key", "api-key", "access_token", "accesstoken", "client_secret", "code",
        "credential", "credentials", "session", "jwt", "bearer", "private_token", "x-amz-signature",
        "x-goog-signature", "x-amz-credential", "x-amz-security-token",
    }
)  # fmt: skip
"""Query parameters whose value alone is scrubbed whatever it looks like (compared in lower case)."""
_NAME_WORDS = re.compile(r"[-_.]|(?<=[a-z0-9])(?=[A-Z])")
_CREDENTIAL_WORDS = ("key", "token", "secret", "pass", "pwd", "auth", "sig", "cred", "session", "jwt")
"""A query parameter whose name holds one of these (``accessKey``, ``apiToken``, ``x-auth``) is a
credential too."""
_SEPARATORS = frozenset("-./:, ")
LONG_VALUE = 16
"""A query value this long that reads as one token (no separators) is scrubbed whatever its name."""


def _is_token_like(value: str) -> bool:
    """Long and in one piece (no separators), as an API token or a random id is."""
    return len(value) >= LONG_VALUE and not _SEPARATORS.intersection(value)


def _is_credential(name: str, value: str) -> bool:
    """A query value that may be a credential, to scrub on its own: named like one (``key``, ``token``,
    ``accessKey``, ``X-Amz-Signature``, ``private_token``...), or long and token-like. An ordinary value
    such as ``tenant=prod``, ``dedup=true`` or ``job=kube-state-metrics`` is not: scrubbed everywhere,
    it would rewrite a label or a message that merely holds the word."""
    words = [word.lower() for word in _NAME_WORDS.split(name) if word]
    lowered = name.lower()
    if lowered in CREDENTIAL_PARAMETERS or any(word in CREDENTIAL_PARAMETERS for word in words):
        return True
    if any(part in lowered for part in _CREDENTIAL_WORDS):
        return True
    return _is_token_like(value)


def _url_parts(url: str) -> list[str]:
    """The parts of a URL that carry its secret: path with query, the query, each path segment and
    query value that may be a credential (a token-like segment, :func:`_is_credential`; as written
    and decoded: a remote that echoes ``key=...`` or a webhook's token back often quotes the value
    alone), user credentials."""
    try:
        split = urllib.parse.urlsplit(url)
        values = urllib.parse.parse_qsl(split.query, keep_blank_values=False)
    except ValueError:
        return []
    path_query = split.path + (f"?{split.query}" if split.query else "")
    parts = [path_query, split.path, split.query, split.password or "", split.username or ""]
    if split.password is not None:
        # the client sends the URL's credentials as a basic Authorization header, which a remote may
        # quote back
        for user, password in {
            (split.username or "", split.password),
            (urllib.parse.unquote(split.username or ""), urllib.parse.unquote(split.password)),
        }:
            parts.append(base64.b64encode(f"{user}:{password}".encode()).decode())
    for segment in split.path.split("/"):
        decoded = urllib.parse.unquote(segment)
        if _is_token_like(decoded):
            parts += [segment, decoded]
    for name, value in values:
        if _is_credential(name, value):
            parts += [value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)]
    for piece in split.query.split("&"):
        name, _, written = piece.partition("=")
        if _is_credential(urllib.parse.unquote_plus(name), urllib.parse.unquote_plus(written)):
            parts += [piece, written]  # the value as written, encoded or not, and with its name
    return [part for part in parts if len(part) >= MIN_SCRUBBED_SECRET]


class ResolvedSecrets:
    """The secrets one step resolved, to put them where they are needed and scrub them everywhere else."""

    def __init__(self, ctx: ActionContext) -> None:
        self._ctx = ctx
        self._values: dict[str, str] = {}  # value -> name
        self._compiled: tuple[int, re.Pattern[str]] | None = None

    def _pattern(self) -> re.Pattern[str]:
        if self._compiled is None or self._compiled[0] != len(self._values):
            scrubbed = sorted(
                (v for v in self._values if len(v) >= MIN_SCRUBBED_SECRET), key=len, reverse=True
            )
            self._compiled = (len(self._values), re.compile("|".join(map(re.escape, scrubbed)) or "(?!)"))
        return self._compiled[1]

    async def text(self, value: Any, what: str, *, url: bool = False) -> tuple[str, str]:
        """(the value to use, how messages show it) of a param that is a string or ``{secretRef}``.

        For a secret ``url`` its path, query and credentials are scrubbed on their own too: an
        answer or an error may quote the path without the host (a Slack webhook's token is its path).
        """
        if isinstance(value, str):
            return value, value
        if isinstance(value, Mapping) and set(value) == {"secretRef"} and isinstance(value["secretRef"], str):
            resolver: SecretResolver = service(self._ctx, "secrets", "secret store")
            secret = await resolver.resolve(value["secretRef"])
            revealed = secret.reveal()
            self._values[revealed] = secret.name
            for part in [revealed, *(_url_parts(revealed) if url else ())]:
                for form in written_forms(part):
                    self._values.setdefault(form, secret.name)
            return revealed, f"<secret {secret.name}>"
        raise PermanentActionError(
            f"{what} must be a string or {{secretRef: name}}, got {type(value).__name__}"
        )

    def scrub(self, value: Any) -> Any:
        """``value`` (text, or JSON of any depth) with every resolved secret replaced by its name.

        Mapping keys are kept as they are: two keys scrubbed to the same placeholder would merge, and
        the data of one would be lost (a key is a label name or a field name, not where a remote
        quotes a credential back)."""
        if not self._values:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            # a numeric secret (an account number, a PIN) quoted back as a JSON number
            written = str(value)
            if written in self._values:
                return f"<secret {self._values[written]}>"
            if isinstance(value, float) and value.is_integer() and f"{value:.0f}" in self._values:
                return f"<secret {self._values[f'{value:.0f}']}>"
            return value
        if isinstance(value, str):
            if value in self._values:
                return f"<secret {self._values[value]}>"
            # one pass, longest form first: a replacement is never scanned again (a short part such as
            # a URL's user name must not match inside an earlier "<secret name>")
            return self._pattern().sub(lambda found: f"<secret {self._values[found.group(0)]}>", value)
        if isinstance(value, Mapping):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value

    def scrub_text(self, text: str) -> str:
        """:meth:`scrub` for text."""
        scrubbed: str = self.scrub(text)
        return scrubbed

    def scrub_error(self, error: BaseException) -> BaseException:
        """``error`` with the secrets scrubbed from its message (in place), and no chained cause."""
        error.args = tuple(self.scrub(arg) if isinstance(arg, str) else arg for arg in error.args)
        error.__cause__ = None
        error.__suppress_context__ = True
        return error
