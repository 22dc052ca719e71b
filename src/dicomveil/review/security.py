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
    "close_session",
    "csrf_token",
    "current_user",
    "open_session",
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
    name, sid = request.session.get("user"), request.session.get("sid")
    store: ReviewStore = request.app.state.store
    alive = isinstance(sid, str) and isinstance(name, str) and store.session_user(sid) == name
    user = store.user(name) if alive and isinstance(name, str) else None
    if user is None:
        request.session.clear()
        raise NotLoggedInError
    return user


def open_session(request: Request, name: str) -> None:
    """A new session for ``name``: its cookie names it, and the review database keeps it
    until :func:`close_session` (shared by several processes behind one proxy). The
    cookie alone, signed but replayable, no longer lets anyone in after logging out (it
    did, for its 8 hours: found by an independent test).

    Parameters
    ----------
    request : Request
        The login request.
    name : str
        The account.
    """
    request.session.clear()
    store: ReviewStore = request.app.state.store
    request.session["user"], request.session["sid"] = name, store.open_session(name)


def close_session(request: Request) -> None:
    """End the request's session on the server, and clear its cookie.

    Parameters
    ----------
    request : Request
        The logout request.
    """
    sid = request.session.get("sid")
    if isinstance(sid, str):
        store: ReviewStore = request.app.state.store
        store.close_session(sid)
    request.session.clear()


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
