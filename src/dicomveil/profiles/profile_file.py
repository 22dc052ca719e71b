"""The shape of a profile TOML file (which keys, of which types), checked by pydantic models
with ``extra="forbid"`` before :mod:`~dicomveil.profiles.loading` reads it: every problem
becomes one :class:`~dicomveil.errors.ProfileError` naming the file and the entry. Apart from
the loading, so that pydantic is loaded with the first user's file, not with every run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from dicomveil.errors import ProfileError
from dicomveil.validation import key_path


def check_shape(data: dict[str, Any], source: str) -> None:
    """Check a profile file's TOML data against :class:`ProfileFile`.

    Parameters
    ----------
    data : dict
        The file's TOML, parsed.
    source : str
        The file, for messages.

    Raises
    ------
    ProfileError
        An unknown key, or a value of the wrong type (one problem per entry).
    """
    try:
        ProfileFile.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc)
        if len(problems) == 1:
            entry, message = problems[0]
            raise ProfileError(message, source=source, entry=entry or None) from None
        text = "; ".join(f"{entry}: {message}" if entry else message for entry, message in problems)
        raise ProfileError(text, source=source) from None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RuleEntry(_Entry):
    """One ``[[rules]]`` table: exactly one of tag, keyword or private, and an action."""

    tag: str | None = None
    keyword: str | None = None
    private: dict[str, str | int] | None = None
    action: str | None = None
    value: str | None = None
    reason: str = ""


class ProfileFile(_Entry):
    """A profile TOML file, as written (see :mod:`dicomveil.profiles.model`)."""

    name: str | None = None
    description: str | None = None
    source: str | None = None
    base: str | None = None
    extends: str | None = None
    options: list[str] = []
    allow: list[str] = []
    private: Literal["keep", "remove"] | None = None
    references: Literal["keep", "remove"] | None = None
    verify: bool | None = None
    rules: list[RuleEntry] = []
    clean: dict[str, Any] | None = None
    generalize: dict[str, Any] | None = None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(entry, message) per problem, unknown keys of one table together."""
    unknown: dict[str, list[str]] = {}
    found: list[tuple[str, str]] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            unknown.setdefault(key_path(loc[:-1]), []).append(str(loc[-1]))
            continue
        entry = key_path(loc)
        if kind == "list_type" and loc == ("rules",):
            message = "must be an array of tables ([[rules]])"
        elif kind in ("model_type", "dict_type") and loc[:1] == ("rules",) and len(loc) == 2:
            message = "a rule must be a table"
        elif kind == "string_type":
            message = "must be a string"
        elif kind == "list_type":
            message = "must be a list"
        elif kind == "literal_error":
            message = "must be 'keep' or 'remove'"
        elif kind in ("model_type", "dict_type"):
            message = "must be a table"
        else:
            message = str(error["msg"])
        if (entry, message) not in found:
            found.append((entry, message))
    extra = [
        (entry, f"unknown key(s) {', '.join(sorted(keys))}") for entry, keys in unknown.items()
    ]
    return extra + found
