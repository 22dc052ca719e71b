"""What an identifying span is replaced by: the default token of each category
(``[NAME]``, ``[DATE]``, ...) and :class:`Replacements`, a profile's ``[clean]`` table (its
tokens, and the name dictionary's settings).
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
        name_dictionary = true       # names no cue points at, by a dictionary (default on)
        names = ["Zorro"]            # ... and these names of the site's own
        not_names = ["Gamma"]        # words that are never names here

    Parameters
    ----------
    default : str or None, optional
        The token of every category not in ``tokens``; ``None``: the category's
        :data:`DEFAULT_TOKENS` entry.
    tokens : tuple of (Category, str), optional
        The token of single categories, sorted by category.
    name_dictionary : bool or None, optional
        Whether the name dictionary runs (:mod:`~dicomveil.cleaners.text.dictionary`);
        ``None``: as the parent profile says (on by default).
    names, not_names : tuple of str, optional
        Names the dictionary adds, words it never takes for names.
    """

    default: str | None = None
    tokens: tuple[tuple[Category, str], ...] = ()
    name_dictionary: bool | None = None
    names: tuple[str, ...] = ()
    not_names: tuple[str, ...] = ()

    @property
    def dictionary(self) -> bool:
        """Whether the name dictionary runs."""
        return self.name_dictionary is not False

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
        dictionary = (
            child.name_dictionary if child.name_dictionary is not None else self.name_dictionary
        )
        names = tuple(sorted({*self.names, *child.names}))
        not_names = tuple(sorted({*self.not_names, *child.not_names}))
        if child.default is not None:
            return Replacements(child.default, child.tokens, dictionary, names, not_names)
        tokens = dict(self.tokens)
        tokens.update(child.tokens)
        return Replacements(
            self.default, tuple(sorted(tokens.items())), dictionary, names, not_names
        )

    def describe(self) -> list[str]:
        """For a profile digest: every token in a fixed order.

        Returns
        -------
        list of str
            ``"category=token"`` for every category, in the order of :class:`Category`.
        """
        described = [f"{c.value}={self.token(c)}" for c in Category]
        if self.name_dictionary is False:
            described.append("name_dictionary=off")
        if self.names:
            described.append("names=" + ",".join(self.names))
        if self.not_names:
            described.append("not_names=" + ",".join(self.not_names))
        return described

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
        words: dict[str, tuple[str, ...]] = {}
        dictionary: bool | None = None
        known = ["replacement", *(c.value for c in Category), *_SETTINGS]
        for key, value in table.items():
            entry = f"clean.{key}"
            if key not in known:
                raise ProfileError(
                    f"unknown key {key!r} (known: {', '.join(known)})", source=source, entry=entry
                )
            if key == "name_dictionary":
                if not isinstance(value, bool):
                    raise ProfileError("must be true or false", source=source, entry=entry)
                dictionary = value
                continue
            if key in ("names", "not_names"):
                if not isinstance(value, list) or not all(
                    isinstance(w, str) and w.strip() for w in value
                ):
                    raise ProfileError("must be a list of words", source=source, entry=entry)
                words[key] = tuple(sorted({w.strip() for w in value}))
                continue
            _check_token(value, source, entry)
            assert isinstance(value, str)
            if key == "replacement":
                default = value
            else:
                tokens[Category(key)] = value
        return cls(
            default,
            tuple(sorted(tokens.items())),
            dictionary,
            words.get("names", ()),
            words.get("not_names", ()),
        )


_SETTINGS: Final = ("name_dictionary", "names", "not_names")


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
