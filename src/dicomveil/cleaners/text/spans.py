"""What a recognizer reports: a :class:`Span` of a text, its :class:`Category` (what kind
of identifier it is: name, ID, date, ...) and its :class:`Basis` (the file holds the value,
or a pattern matched). A span holds positions only, never the value it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Basis", "Category", "Span"]


class Category(StrEnum):
    """What kind of identifier a span is; each has its own replacement token."""

    NAME = "name"
    ID = "id"
    DATE = "date"
    TIME = "time"
    PHONE = "phone"
    EMAIL = "email"
    URL = "url"
    ADDRESS = "address"
    INSTITUTION = "institution"
    AGE = "age"

    def counted(self, n: int) -> str:
        """``n`` and the noun of this category, singular or plural: ``"1 name"``,
        ``"2 names"``, ``"3 phone numbers"``."""
        one, many = _NOUNS[self]
        return f"{n} {one if n == 1 else many}"


_NOUNS: Final = {
    Category.NAME: ("name", "names"),
    Category.ID: ("ID", "IDs"),
    Category.DATE: ("date", "dates"),
    Category.TIME: ("time", "times"),
    Category.PHONE: ("phone number", "phone numbers"),
    Category.EMAIL: ("e-mail address", "e-mail addresses"),
    Category.URL: ("URL", "URLs"),
    Category.ADDRESS: ("address", "addresses"),
    Category.INSTITUTION: ("institution", "institutions"),
    Category.AGE: ("age over 89", "ages over 89"),
}


class Basis(StrEnum):
    """Why a span was found: the file holds the value, or a pattern matched."""

    DATASET = "dataset"
    PATTERN = "pattern"


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """An identifying span ``text[start:end]``; holds no value.

    Parameters
    ----------
    start : int
        Offset of the first character of the span.
    end : int
        Offset after the last character of the span.
    category : Category
        What kind of identifier the span is.
    basis : Basis
        Why the span was found.
    """

    start: int
    end: int
    category: Category
    basis: Basis
