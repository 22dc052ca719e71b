"""The free-text cleaner: identifying spans of text values replaced by tokens.

Used for clean-descriptors, retain-patient-characteristics and clean-structured-content
(whose sequences the engine walks with :mod:`dicomveil.cleaners.structured`'s rules).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, MutableSequence
from typing import Any, Final, cast

from dicomveil.cleaners.base import Cleaning, Context, Element, Outcome, as_list
from dicomveil.cleaners.structured import CODE_MEANING
from dicomveil.cleaners.text import TEXT_VRS, VR_MAX_LENGTH, Category, Cleaned


class FreeText:
    """Text VRs cleaned span by span; sequences walked item by item; nothing else."""

    reads_identifiers = True

    def clean(self, element: Element, context: Context) -> Cleaning | None:
        """Clean one element (see :class:`dicomveil.cleaners.base.Cleaner`)."""
        if element.vr == "SQ":
            return Cleaning(Outcome.WALK_ITEMS, " (items cleaned)")
        if element.vr not in TEXT_VRS:
            return None
        if element.raw is None:
            return clean_text(element, context)
        # the files of a series repeat their texts byte for byte: cleaned once per patient
        key = (element.tag, element.vr, element.raw, context.text, context.identifiers)
        known = _REMEMBERED.get(key, _MISSING)
        if known is _MISSING:
            known = clean_text(element, context)
            if len(_REMEMBERED) >= _MAX_REMEMBERED:
                _REMEMBERED.clear()
            _REMEMBERED[key] = known
        cleaning = cast("Cleaning | None", known)
        if cleaning is None or cleaning.values is None:
            return cleaning
        return Cleaning(cleaning.outcome, cleaning.note, list(cleaning.values))  # its own list


_MISSING: Final = object()
_REMEMBERED: dict[tuple[Any, ...], object] = {}
_MAX_REMEMBERED: Final = 1 << 13


def clean_text(element: Element, context: Context) -> Cleaning | None:
    """Replace the identifying spans of a text element.

    Parameters
    ----------
    element : Element
        A text element (VR in ``TEXT_VRS``).
    context : Context
        The profile's text cleaner and the file's identifiers.

    Returns
    -------
    Cleaning or None
        The cleaned values (None values when nothing changed), with a summary of what was
        replaced (categories and counts, never values); None when the value is not text
        (undecodable bytes) or a code string would need a token.
    """
    value = element.value()
    if isinstance(value, bytes):
        return None  # not decodable as text
    values = [str(v) for v in as_list(value) if v is not None]
    limit = VR_MAX_LENGTH.get(element.vr)
    if element.tag == CODE_MEANING:
        # a coded entry: clinical terms the patterns would take for names; only the
        # patient's own values are looked for (a local code's "Protocol for Smith")
        known = context.identifiers
        if known is None:
            return Cleaning(Outcome.KEEP_AS_IS, " (a code meaning: kept)")
        results = [context.text.clean_known(v, known, max_length=limit) for v in values]
    else:
        results = [context.text.clean(v, context.identifiers, max_length=limit) for v in values]
    changed = any(r.changed for r in results)
    if element.vr == "CS" and changed:
        return None  # a code string cannot take a token: the Basic Profile's action
    new = [r.text for r in results] if changed else None
    return Cleaning(Outcome.TEXT, f" (cleaned: {summarise(results)})", new)


def stored_value(original: Any, values: list[str]) -> Any:
    """The value to store for cleaned ``values``: a list where the original was multi-valued."""
    return values if isinstance(original, MutableSequence) else (values[0] if values else "")


def summarise(results: Iterable[Cleaned]) -> str:
    """What the cleaner replaced in one element: categories and counts, never values."""
    results = list(results)
    if not any(r.changed for r in results):
        return "nothing identifying found"
    counts: Counter[Category] = Counter()
    truncated = False
    for result in results:
        counts.update(result.counts())
        truncated = truncated or result.truncated
    text = ", ".join(c.counted(counts[c]) for c in Category if counts[c])
    return (text or "nothing identifying found") + (
        "; truncated to fit the VR" if truncated else ""
    )
