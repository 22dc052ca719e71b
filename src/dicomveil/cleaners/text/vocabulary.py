"""What every recognizer matches on: :func:`fold` (lower case without accents, offsets
kept), the word boundaries and digit helpers of the regular expressions, and the word lists
of ``data/text-vocabulary.json`` (month names, titles, degrees, name particles, units,
generic institution and street words, words that are not names, the words of a patient's
bed or room).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final

__all__ = ["fold", "not_names"]


@dataclass(frozen=True)
class _Vocabulary:
    months: Mapping[str, int]
    titles: frozenset[str]
    ambiguous_caps_titles: frozenset[str]
    degrees: frozenset[str]
    particles: frozenset[str]
    name_suffixes: frozenset[str]
    honorifics: frozenset[str]
    not_names: frozenset[str]
    units: frozenset[str]
    institution_generic: frozenset[str]
    street_types: frozenset[str]
    location_cues: frozenset[str]
    location_not_before: frozenset[str]


@cache
def _vocabulary() -> _Vocabulary:
    raw = json.loads(
        (files("dicomveil.cleaners.text") / "data" / "text-vocabulary.json").read_bytes()
    )

    def words(key: str) -> frozenset[str]:
        return frozenset(fold(str(w)) for w in raw[key])

    return _Vocabulary(
        months={fold(str(k)): int(v) for k, v in raw["months"].items()},
        titles=words("titles"),
        ambiguous_caps_titles=words("ambiguous_caps_titles"),
        degrees=words("degrees"),
        particles=words("particles"),
        name_suffixes=words("name_suffixes"),
        honorifics=words("honorifics"),
        not_names=words("not_names") | words("titles") | words("name_cue_relatives"),
        units=words("units"),
        institution_generic=words("institution_generic") | words("not_names"),
        street_types=words("street_types"),
        location_cues=words("location_cues"),
        location_not_before=words("location_not_before"),
    )


def not_names() -> frozenset[str]:
    """The words the word list says are no one's name (clinical, vendor and function
    words, folded): for verify, which searches for names its own way."""
    return _vocabulary().not_names


@cache
def dicom_words() -> frozenset[str]:
    """The words of the standard's attribute names (pydicom's data dictionary, folded):
    "Name", "Text", "Protocol", ... A patient's value that is one of them is not looked
    for in a code meaning (a placeholder name "Text^Name" in "Report Text")."""
    from pydicom._dicom_dict import DicomDictionary

    words: set[str] = set()
    for entry in DicomDictionary.values():
        words.update(w for w in re.split(r"[^a-z]+", fold(str(entry[2]))) if len(w) > 1)
    return frozenset(words)


def _fold_char(char: str) -> str:
    base = unicodedata.normalize("NFD", char)[:1] or char
    low = base.lower()
    return low if len(low) == 1 else base


_FOLD_TABLE: Final = {
    code: _fold_char(chr(code))
    for code in (*range(0x41, 0x5B), *range(0xC0, 0x250), *range(0x370, 0x530))
} | {0x3C2: "\u03c3"}  # Latin, Greek (final sigma as sigma: ΔΙΟΝΥΣΙΟΣ) and Cyrillic


def fold(text: str) -> str:
    """``text`` in lower case without accents, **the same length** as ``text``: every
    offset of ``text`` is the same character's offset in the result."""
    return text.translate(_FOLD_TABLE)


# Boundaries: letters and digits continue a word; underscores, hyphens, dots separate
# (protocol names such as "T1_MPRAGE_SMITH" are split at "_").
_L = r"(?<![^\W_])"
_R = r"(?![^\W_])"
_LETTER = r"[^\W\d_]"

_DIGITS = re.compile(r"\d")


def _digits(text: str) -> str:
    return "".join(_DIGITS.findall(text))
