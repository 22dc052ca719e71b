"""The contract between the engine and a cleaner: what an option's C (clean) action does.

PS3.15 Table E.1-1 marks some attributes C under an option ("clean": keep the value, with
the identifying information taken out). The engine walks the dataset; when a decision is C,
it hands the element to the option's :class:`Cleaner` (see :mod:`dicomveil.cleaners.registry`)
and applies the :class:`Cleaning` it gets back. A cleaner never writes to the dataset and
never reports: it says what should happen, the engine does it and reports it.

A cleaner that cannot clean an element (a binary value, a code string that would need a
token) returns None: the engine then applies the Basic Profile's action for the element.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from pydicom.multival import MultiValue

from dicomveil.cleaners.text import Identifiers, TextCleaner


class Outcome(Enum):
    """What the engine does with a cleaned element."""

    WALK_ITEMS = "walk"  # a sequence: its items walked with the structure rules
    APPLY_KEEP = "keep-action"  # the K action (UIDs mapped, dates shifted, ages capped)
    KEEP_AS_IS = "keep-as-is"  # left exactly as it is
    TEXT = "text"  # text values, maybe replaced (``values``)
    BYTES = "bytes"  # a binary value replaced by ``data`` (a container, cleaned)


@dataclass(frozen=True, slots=True)
class Cleaning:
    """A cleaner's answer for one element.

    Attributes
    ----------
    outcome : Outcome
        What the engine does.
    note : str
        Appended to the decision's source in reports (no values).
    values : list of str or None
        With :attr:`Outcome.TEXT`: the new values when anything changed, else None.
    data : bytes or None
        With :attr:`Outcome.BYTES`: the new value (even length).
    """

    outcome: Outcome
    note: str = ""
    values: list[str] | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Element:
    """The element a cleaner is asked about.

    Attributes
    ----------
    tag : int
        The tag, as an int.
    vr : str
        The VR the engine acts on (a repeater's VR resolved).
    value : callable
        Returns the decoded value (called only by cleaners that read it).
    raw : tuple or None
        The value as read and the character sets that decode it, when the element is still
        undecoded: equal ``raw`` means an equal value (a cleaner may remember its answer);
        None when unknown.
    """

    tag: int
    vr: str
    value: Callable[[], Any]
    raw: tuple[bytes, tuple[str, ...]] | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What a cleaner may know beyond the element: the profile's text cleaner and the
    identifying values of the whole file (None when no cleaner of the profile reads them).
    """

    text: TextCleaner
    identifiers: Identifiers | None


def as_list(value: Any) -> list[Any]:
    """An element's value as a list of its values: none for None, the items of a
    multi-valued one, else the value alone."""
    if value is None:
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    return [value]


class Cleaner(Protocol):
    """Cleans elements for one option's C column.

    Attributes
    ----------
    reads_identifiers : bool
        True when the cleaner searches text for the file's own identifying values: the
        engine then gathers them (:class:`~dicomveil.cleaners.text.Identifiers`) per file.
    """

    reads_identifiers: bool

    def clean(self, element: Element, context: Context) -> Cleaning | None:
        """What to do with one element.

        Parameters
        ----------
        element : Element
            The element (tag, VR, value on demand).
        context : Context
            The profile's text cleaner and the file's identifiers.

        Returns
        -------
        Cleaning or None
            The cleaning, or None when this cleaner cannot clean the element (the engine
            then applies the Basic Profile's action).
        """
        ...
