"""Who may do what in the review application: sessions, roles and CSRF tokens (see
:mod:`dicomveil.review.app` for how they are set up)."""

from __future__ import annotations

import secrets

from fastapi import Request

from dicomveil.review.store import ReviewStore, Role, User

__all__ = [
    "ForbiddenError",
    "NotLoggedInError",
    "admin",
    "checked_form",
    "csrf_token",
    "current_user",
    "reviewer",
]


class NotLoggedInError(Exception):
    """A request without a valid session."""


class ForbiddenError(Exception):
    """A request the account's role, or the four-eyes rule, does not allow (403); or one
    naming a subject or record that does not exist (``status`` 404)."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def current_user(request: Request) -> User:
    """The logged-in account (its role read again from the database on every request, so
    that a disabled account or a changed role takes effect at once).

    Parameters
    ----------
    request : Request
        The request.

    Returns
    -------
    User
        The account.

    Raises
    ------
    NotLoggedInError
        No session, or its account is gone or disabled.
    """
    name = request.session.get("user")
    store: ReviewStore = request.app.state.store
    user = store.user(name) if isinstance(name, str) else None
    if user is None:
        request.session.clear()
        raise NotLoggedInError
    return user


def reviewer(request: Request) -> User:
    """The logged-in account, which must review (see :class:`Role`).

    Parameters
    ----------
    request : Request
        The request.

    Returns
    -------
    User
        The account.

    Raises
    ------
    NotLoggedInError
        No session.
    ForbiddenError
        An operator's account.
    """
    user = current_user(request)
    if not user.role.reviews:
        raise ForbiddenError("original values, images and sign-off are for reviewers")
    return user


def admin(request: Request) -> User:
    """The logged-in account, which must be an admin.

    Parameters
    ----------
    request : Request
        The request.

    Returns
    -------
    User
        The account.

    Raises
    ------
    NotLoggedInError
        No session.
    ForbiddenError
        Another role.
    """
    user = current_user(request)
    if user.role is not Role.ADMIN:
        raise ForbiddenError("the export with original IDs is for admins")
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made when the session has none).

    Parameters
    ----------
    request : Request
        The request.

    Returns
    -------
    str
        The token every form of the page carries.
    """
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def checked_form(request: Request) -> dict[str, str]:
    """The fields of a POSTed form whose CSRF token is the session's.

    Parameters
    ----------
    request : Request
        The request.

    Returns
    -------
    dict of str to str
        The fields (files are ignored).

    Raises
    ------
    ForbiddenError
        No token, or not the session's.
    """
    form = await request.form(max_files=0, max_fields=50)
    given = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(given, str) or not isinstance(expected, str):
        raise ForbiddenError("the form has no valid CSRF token: reload the page and try again")
    if not secrets.compare_digest(given, expected):
        raise ForbiddenError("the form has no valid CSRF token: reload the page and try again")
    return {k: v for k, v in form.items() if isinstance(v, str)}
