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

__all__ = ["fold"]


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


def _fold_char(char: str) -> str:
    base = unicodedata.normalize("NFD", char)[:1] or char
    low = base.lower()
    return low if len(low) == 1 else base


_FOLD_TABLE: Final = {
    code: _fold_char(chr(code)) for code in (*range(0x41, 0x5B), *range(0xC0, 0x250))
}


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
