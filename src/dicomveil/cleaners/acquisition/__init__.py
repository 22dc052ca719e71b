"""``retain-acquisition-parameters``: the vendor private elements converters read, cleaned.

The option keeps the private elements listed in ``standard/data/acquisition.toml`` (see
:mod:`dicomveil.standard.acquisition`): numbers as they are; text only when it matches a
conservative pattern and holds none of the file's own identifying values; Siemens CSA
headers parsed with nibabel, filtered item by item and re-encoded
(:mod:`~dicomveil.cleaners.acquisition.csa`), the Phoenix protocol inside them cut to its
allowed parameter lines (:mod:`~dicomveil.cleaners.acquisition.phoenix`). What cannot be
cleaned goes (the Basic Profile's X).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from dicomveil.cleaners.acquisition.csa import clean_csa
from dicomveil.cleaners.acquisition.phoenix import clean_protocol
from dicomveil.cleaners.base import Cleaning, Context, Element, Outcome, as_list
from dicomveil.cleaners.text import Identifiers
from dicomveil.standard.acquisition import csa_policy

__all__ = ["AcquisitionParameters", "clean_csa", "clean_protocol"]

_PROTOCOL_MARK = b"### ASCCONV BEGIN"


class AcquisitionParameters:
    """The cleaner of the option's C decisions (its K decisions need none)."""

    reads_identifiers = True

    def clean(self, element: Element, context: Context) -> Cleaning | None:
        """Clean one listed private element (see :class:`dicomveil.cleaners.base.Cleaner`)."""
        keep_text = _keeper(context)
        value = element.value()
        if isinstance(value, bytes):
            return _clean_binary(value, keep_text)
        texts = [str(v) for v in as_list(value) if v is not None]
        pattern = csa_policy().text_pattern
        if all(pattern.match(t) and keep_text(t) for t in texts):
            return Cleaning(Outcome.KEEP_AS_IS, " (acquisition parameter, nothing identifying)")
        return None  # text that could identify: removed


def _keeper(context: Context) -> Callable[[str], bool]:
    """Whether a text holds none of the file's own identifying values: neither where the
    free-text cleaner finds them nor anywhere inside a word (a container's codes run
    words together: ``SMITH1_1_1``)."""
    known = context.identifiers
    if known is None:
        return lambda text: True
    parts = _parts(known)

    def keep(text: str) -> bool:
        folded = text.casefold()
        return not any(part in folded for part in parts) and not known.find(text)

    return keep


@lru_cache(maxsize=16)
def _parts(known: Identifiers) -> tuple[str, ...]:
    """The file's identifying values as substrings to look for: name components, IDs,
    institutions, addresses, phones, e-mails (3 characters or more), dates as YYYYMMDD."""
    found: set[str] = set()
    for name in known.names:
        found.update(p for p in re.split(r"[\^=,\s]+", name) if len(p) >= 3)
    for group in (known.ids, known.institutions, known.addresses, known.phones, known.emails):
        found.update(v for v in group if len(v) >= 3)
    found.update(d.strftime("%Y%m%d") for d in known.dates)
    return tuple(sorted(p.casefold() for p in found))


def _clean_binary(value: bytes, keep_text: Callable[[str], bool]) -> Cleaning | None:
    if value.startswith(b"SV10"):
        cleaned = clean_csa(value, keep_text, lambda text: clean_protocol(text, keep_text))
        if cleaned is None or not cleaned.kept:
            return None
        note = f" (CSA header: {cleaned.kept} items kept, {cleaned.dropped} removed)"
        return Cleaning(Outcome.BYTES, note, data=_even(cleaned.data))
    if _PROTOCOL_MARK in value:
        text = clean_protocol(value.decode("latin-1"), keep_text)
        if not text:
            return None
        data = _even(text.encode("latin-1") + b"\x00")
        return Cleaning(Outcome.BYTES, " (Phoenix protocol: parameter lines kept)", data=data)
    return None


def _even(data: bytes) -> bytes:
    return data + b"\x00" if len(data) % 2 else data
