"""Institutions that no file holds and no cue word names as such, found by the words they are
made of: capitalised words before a head word ("Keystone Freight", "Wyndcliffe Surgery",
"Kingsweston General"), after one ("Clinique des Tilleuls", "Spedition Kaltwasser", "St
Wilfrid's", "Orthopädie am Inn"), or joined to one ("Orthoklinik Randersacker"). The head
words are data (``institution_heads_*`` of ``data/text-vocabulary.json``); the capitalised
words must not be words of the cleaner's vocabulary ("Spine Surgery" is not an institution).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from typing import Final

from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.vocabulary import _Vocabulary, fold

_UPPER: Final = r"[A-ZÀ-ÖØ-Þ][\w'\u2019\-]*"
_PARTICLES: Final = r"(?:de\s+la|de\s+l['\u2019]|des|du|de|d['\u2019]|la|le|les|am|an\s+der|im|of)"


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    raw = json.loads(
        (files("dicomveil.cleaners.text") / "data" / "text-vocabulary.json").read_bytes()
    )

    def alternatives(key: str) -> str:
        words = sorted(raw[key], key=len, reverse=True)
        return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words)

    after = re.compile(
        rf"(?<![\w\-])((?:{_UPPER}\s+){{1,3}})(?:{alternatives('institution_heads_after')})"
        r"(?![\w\-])"
    )
    before = re.compile(
        rf"(?<![\w\-])(?:{alternatives('institution_heads_before')})\s+"
        rf"(?:{_PARTICLES}\s*)?({_UPPER}(?:[\s\-]+(?:{_PARTICLES}\s+)?{_UPPER}){{0,3}})"
    )
    suffixes = "|".join(re.escape(w) for w in raw["institution_word_suffixes"])
    joined = re.compile(rf"(?<![\w\-])[A-ZÄÖÜ][\w\-]*(?:{suffixes})\s+{_UPPER}")
    return after, before, joined


def institution_spans(text: str, vocab: _Vocabulary) -> Iterator[Span]:
    """The institutions of ``text`` found by their head words (see the module docstring)."""
    after, before, joined = _patterns()
    for m in after.finditer(text):
        if _proper(m[1], vocab) and not _ADJECTIVE.search(m[1].split()[0]):
            yield Span(m.start(), m.end(), Category.INSTITUTION, Basis.PATTERN)
    for m in before.finditer(text):
        if _proper(m[1], vocab):
            yield Span(m.start(), m.end(1), Category.INSTITUTION, Basis.PATTERN)
    for m in joined.finditer(text):
        yield Span(m.start(), m.end(), Category.INSTITUTION, Basis.PATTERN)


# A clinical adjective opening the words before a head: a department, not an institution
# ("Interventional Radiology", "Pediatric Neurology", "Diagnostic Imaging").
_ADJECTIVE: Final = re.compile(r"(?:al|ic|ics|ical|ive|ary|ous|ar)$", re.IGNORECASE)


def _proper(words: str, vocab: _Vocabulary) -> bool:
    """Capitalised words that are not the cleaner's vocabulary (clinical words, units...)."""
    found = [fold(w.strip("'\u2019-")) for w in re.split(r"[\s\-]+", words) if w]
    names = [w for w in found if w and w not in ("de", "la", "le", "les", "des", "du", "am")]
    return bool(names) and not any(
        w in vocab.not_names or w in vocab.units or w in vocab.months for w in names
    )
