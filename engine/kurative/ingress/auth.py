"""Who is calling: bearer tokens and basic auth, compared in constant time.

Every configured credential is compared on every request (no early exit), with
:func:`hmac.compare_digest`, so the time an answer takes says nothing about how close a guess was or
which credential it resembled. The identity is what the journal records as "who" for approvals.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from kurative.ingress.settings import Credentials


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _sent(header_text: str) -> bytes:
    """A header's value as the client sent it: servers decode header bytes as latin-1."""
    try:
        return header_text.encode("latin-1")
    except UnicodeEncodeError:  # not from a header after all: its UTF-8
        return header_text.encode("utf-8", "surrogatepass")


def authenticate(credentials: Credentials, authorization: str | None) -> str | None:
    """The caller's identity (the token's name, ``token#N`` for an unnamed one, or the basic-auth user
    name), or None when the header proves nothing.

    Without any credential configured everyone is ``anonymous`` (the listener is loopback only)."""
    if not credentials:
        return "anonymous"
    if not authorization:
        return None
    # ASCII blanks only: the header is latin-1 text, where U+00A0 and U+0085 (which str.strip takes
    # for blanks) are the last bytes of many a UTF-8 letter
    scheme, _, value = authorization.strip(" \t").partition(" ")
    value = value.strip(" \t")
    found: str | None = None
    if scheme.lower() == "bearer":
        for number, token in enumerate(credentials.bearer_tokens, 1):
            # a token is configured as text: the client sends its UTF-8
            if hmac.compare_digest(_sent(value), token.encode("utf-8", "surrogatepass")) and found is None:
                names = credentials.bearer_names
                found = names[number - 1] if number <= len(names) else f"token#{number}"
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        user, colon, password = decoded.partition(":")
        if not colon:
            return None
        for name, secret in credentials.basic:
            if _same(user, name) & _same(password, secret) and found is None:
                found = name
    return found
