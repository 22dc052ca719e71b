"""Bearer tokens of the DICOMweb side: made at random, kept only as hashes.

A route's ``[route.web] tokens`` lists the SHA-256 hashes of the tokens that may use it
(``sha256:`` and 64 hex digits); ``dicomveil gateway token`` makes a token and prints its
hash. A token is 32 random bytes (256 bits, URL-safe base64), so one unsalted SHA-256 is
enough at rest: nothing can be guessed from the hash, and a request costs one hash instead
of a password hash's deliberate work. Tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

__all__ = ["hash_token", "new_token", "token_matches"]

_PREFIX = "sha256:"


def new_token() -> str:
    """A new random bearer token.

    Returns
    -------
    str
        43 URL-safe characters (256 random bits).
    """
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The form a token is kept in (the configuration's ``tokens``).

    Parameters
    ----------
    token : str
        The token as clients send it.

    Returns
    -------
    str
        ``sha256:`` and the 64 hex digits of the token's SHA-256.
    """
    return _PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(authorization: str | None, hashes: Iterable[str]) -> bool:
    """Whether an ``Authorization`` header carries one of the tokens of ``hashes``.

    Parameters
    ----------
    authorization : str or None
        The request's header (``Bearer <token>``), or None when it has none.
    hashes : iterable of str
        The route's token hashes.

    Returns
    -------
    bool
        True when the header is a bearer token whose hash is one of them.
    """
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    digest = hash_token(token.strip())
    found = False
    for known in hashes:  # every hash compared: the time says nothing about which matched
        found |= hmac.compare_digest(digest, known)
    return found
