"""What an identifying span is replaced by: the default token of each category
(``[NAME]``, ``[DATE]``, ...) and :class:`Replacements`, a profile's ``[clean]`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from dicomveil.cleaners.text.spans import Category
from dicomveil.errors import ProfileError

__all__ = ["DEFAULT_TOKENS", "Replacements"]


# The default token of each category: its name in capitals, in brackets ("[NAME]").
DEFAULT_TOKENS: Final[Mapping[Category, str]] = {c: f"[{c.value.upper()}]" for c in Category}

# A token must fit an SH value (16 characters, PS3.5 6.2).
_TOKEN_MAX = 16


@dataclass(frozen=True)
class Replacements:
    """Replacement tokens: one for every category, or one per category.

    In a profile (TOML)::

        [clean]
        replacement = "[REDACTED]"   # every category ...
        name = "[PERSON]"            # ... except those given: name id date time phone
                                     # email url address institution age

    Parameters
    ----------
    default : str or None, optional
        The token of every category not in ``tokens``; ``None``: the category's
        :data:`DEFAULT_TOKENS` entry.
    tokens : tuple of (Category, str), optional
        The token of single categories, sorted by category.
    """

    default: str | None = None
    tokens: tuple[tuple[Category, str], ...] = ()

    def token(self, category: Category) -> str:
        """The token that replaces a span of ``category``: the category's own token if
        given, else the default if given, else the category's :data:`DEFAULT_TOKENS` entry."""
        for known, token in self.tokens:
            if known is category:
                return token
        return self.default if self.default is not None else DEFAULT_TOKENS[category]

    def merged(self, child: Replacements) -> Replacements:
        """This profile's tokens with a child profile's on top.

        Parameters
        ----------
        child : Replacements
            The tokens of the child profile.

        Returns
        -------
        Replacements
            ``child`` if it gives a default token, else these tokens updated by the child's.
        """
        if child.default is not None:
            return child
        tokens = dict(self.tokens)
        tokens.update(child.tokens)
        return Replacements(self.default, tuple(sorted(tokens.items())))

    def describe(self) -> list[str]:
        """For a profile digest: every token in a fixed order.

        Returns
        -------
        list of str
            ``"category=token"`` for every category, in the order of :class:`Category`.
        """
        return [f"{c.value}={self.token(c)}" for c in Category]

    @classmethod
    def parse(cls, table: object, source: str) -> Replacements:
        """The ``[clean]`` table of a profile; unknown keys and unusable tokens are errors.

        Parameters
        ----------
        table : object
            The ``[clean]`` table as read from the profile (a dict).
        source : str
            The profile the table comes from, named in errors.

        Returns
        -------
        Replacements
            The tokens of the table.

        Raises
        ------
        ProfileError
            If ``table`` is not a table, holds an unknown key, or a token that is not a
            string, is longer than 16 characters, or holds a backslash or control characters.
        """
        if not isinstance(table, dict):
            raise ProfileError("must be a table ([clean])", source=source, entry="clean")
        default: str | None = None
        tokens: dict[Category, str] = {}
        known = ["replacement", *(c.value for c in Category)]
        for key, value in table.items():
            entry = f"clean.{key}"
            if key not in known:
                raise ProfileError(
                    f"unknown key {key!r} (known: {', '.join(known)})", source=source, entry=entry
                )
            _check_token(value, source, entry)
            assert isinstance(value, str)
            if key == "replacement":
                default = value
            else:
                tokens[Category(key)] = value
        return cls(default, tuple(sorted(tokens.items())))


def _check_token(value: object, source: str, entry: str) -> None:
    if not isinstance(value, str):
        raise ProfileError("must be a string", source=source, entry=entry)
    if len(value) > _TOKEN_MAX:
        raise ProfileError(
            f"a replacement token has at most {_TOKEN_MAX} characters (it must fit an SH value)",
            source=source,
            entry=entry,
        )
    if "\\" in value or not value.isprintable():
        raise ProfileError(
            "a replacement token cannot hold a backslash or control characters",
            source=source,
            entry=entry,
        )
