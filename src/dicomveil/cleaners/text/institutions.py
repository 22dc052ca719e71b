"""Institutions that no file holds and no cue word names as such, found by the words they are
made of: capitalised words before a head word ("Keystone Freight", "Wyndcliffe Surgery",
"Kingsweston General", "Dunmore Joinery & Roofing"; leading words of the cleaner's
vocabulary left out), after one ("Clinique des Tilleuls", "Spedition Kaltwasser", "St
Wilfrid's", "Orthopädie am Inn"), or joined to one ("Orthoklinik Randersacker",
"Marien-Stift Lohberg"); and two to four words in title case after "at", "from", "via",
"chez", "au" ("seen at Larkfield Grange"). The head words are data (``institution_heads_*`` of
``data/text-vocabulary.json``); the first capitalised word must not be a word of the
cleaner's vocabulary ("Spine Surgery" is not an institution).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from typing import Final

from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.variants import _initialism, _trie_pattern
from dicomveil.cleaners.text.vocabulary import _Vocabulary, fold

_UPPER: Final = r"[A-ZÀ-ÖØ-Þ][\w'\u2019\-]*"
# A word in title case (no acronym: "at CT Head" names no place)
_TITLE_WORD: Final = r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'\u2019\-]+"
_TITLE: Final = r"(?:Dr|Prof|Dres)\.?(?:\s+(?:Dr|med|rer\.\s*nat)\.?)*"
_PARTICLES: Final = r"(?:de\s+la|de\s+l['\u2019]|des|du|de|d['\u2019]|la|le|les|am|an\s+der|im|of)"


@cache
def _patterns() -> tuple[re.Pattern[str], ...]:
    raw = json.loads(
        (files("dicomveil.cleaners.text") / "data" / "text-vocabulary.json").read_bytes()
    )

    def alternatives(key: str) -> str:  # as a trie: faster than a long alternation
        return _trie_pattern(raw[key]).replace("\\ ", r"\s+")

    after = re.compile(
        rf"(?<![\w\-])((?:{_UPPER}\s+(?:{_CONNECTORS}\s+)?){{1,4}})"
        rf"(?:{alternatives('institution_heads_after')})(?![\w\-])"
    )
    before = re.compile(
        rf"(?<![\w\-])(?:{alternatives('institution_heads_before')})\s+"
        rf"(?:{_PARTICLES}\s*)?(?:{_TITLE}\s*)?"
        rf"({_UPPER}(?:[\s\-]+(?:(?:{_PARTICLES}|{_CONNECTORS})\s*)?{_UPPER}){{0,3}})"
    )
    # a French head, an adjective or two, a particle, the name: "Centre neurochirurgical de
    # Fourvière", "Clinique privée du Parc", "Groupe hospitalier de la Haute-Vallée"
    french = re.compile(
        r"(?<![\w\-])(?i:centre|clinique|hôpital|hopital|institut|groupe|pôle|cabinet|maison"
        r"|résidence|laboratoire|pharmacie|polyclinique|école|ecole|lycée|collège|crèche"
        r"|association|faculté)"
        r"(?:\s+(?:des|du|de)\s+[a-zà-ÿ][a-zà-ÿ\-]+|\s+d['\u2019][a-zà-ÿ][a-zà-ÿ\-]+)?"
        r"(?:\s+[a-zà-ÿ][a-zà-ÿ\-]+){0,2}\s+(?:(?:de\s+la|de\s+l['\u2019]|des|du|de|d['\u2019])\s*)?"
        rf"({_UPPER}(?:[\s\-]+(?:{_PARTICLES}\s*)?{_UPPER}){{0,3}})"
    )
    cues = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in raw["institution_cues"])
    cued = re.compile(
        rf"(?<![\w\-])(?i:{cues})\s+({_TITLE_WORD}(?:\s+(?:{_PARTICLES}\s*)?{_TITLE_WORD}){{1,3}})"
        r"(?![\w\-])"
    )
    suffixes = "|".join(re.escape(w) for w in raw["institution_word_suffixes"])
    joined = re.compile(
        rf"(?<![\w\-])[A-ZÄÖÜ][\w\-]*(?i:{suffixes})\s+(?:{_TITLE}\s*)?{_UPPER}"
        rf"(?:\s+{_CONNECTORS}\s+{_UPPER})?"
    )
    return after, before, joined, cued, french


def institution_spans(text: str, vocab: _Vocabulary) -> Iterator[Span]:
    """The institutions of ``text`` found by their head words (see the module docstring),
    and the initials of each where the text uses them ("... Stroke Ctr (OGCSC)")."""
    found = list(_institutions(text, vocab))
    yield from found
    acronyms = {_initialism(text[s.start : s.end], vocab) for s in found}
    for acronym in filter(None, acronyms):
        for m in re.finditer(rf"(?<![\w\-]){re.escape(acronym)}(?![\w\-])", text):
            yield Span(m.start(), m.end(), Category.INSTITUTION, Basis.PATTERN)


def _institutions(text: str, vocab: _Vocabulary) -> Iterator[Span]:
    after, before, joined, cued, french = _patterns()
    for m in after.finditer(text):
        start = _first_proper(m, vocab)
        if start is not None:
            yield Span(start, m.end(), Category.INSTITUTION, Basis.PATTERN)
    for rx in (before, french):
        for m in rx.finditer(text):
            if _proper(m[1], vocab):
                yield Span(m.start(), m.end(1), Category.INSTITUTION, Basis.PATTERN)
    for m in joined.finditer(text):
        yield Span(m.start(), m.end(), Category.INSTITUTION, Basis.PATTERN)
    for m in cued.finditer(text):
        words = [fold(w) for w in re.findall(r"[^\W\d_]+", m[1])]
        if (
            _proper(m[1], vocab)
            and words[0] not in vocab.titles
            and words[-1] not in vocab.institution_generic  # "at Interventional Radiology"
        ):
            yield Span(m.start(1), m.end(1), Category.INSTITUTION, Basis.PATTERN)


# A clinical adjective opening the words before a head: a department, not an institution
# ("Interventional Radiology", "Pediatric Neurology", "Diagnostic Imaging").
_ADJECTIVE: Final = re.compile(r"(?:al|ic|ics|ical|ive|ary|ous|ar)$", re.IGNORECASE)


def _first_proper(m: re.Match[str], vocab: _Vocabulary) -> int | None:
    """Where the name before a head word starts: at its first capitalised word that is not
    the cleaner's vocabulary ("Patient Keystone Freight", "Cascadia MS Center"); None when
    there is none, or it is a clinical adjective ("Spine Surgery", "Pediatric Neurology")."""
    words = [w for w in re.finditer(r"[^\s]+", m[1]) if not re.fullmatch(_CONNECTORS, w[0])]
    if all(fold(w[0].strip("'\u2019")) in vocab.institution_generic for w in words):
        return None  # "Emergency Radiology", "Children's Hospital": no name in it
    for word in words:
        if _proper(word[0], vocab):
            return None if _ADJECTIVE.search(word[0]) else m.start(1) + word.start()
    return None


_CONNECTORS: Final = r"(?:&|and|und|et)"


def _proper(words: str, vocab: _Vocabulary) -> bool:
    """Capitalised words that are not the cleaner's vocabulary (clinical words, units...)."""
    found = [fold(w.strip("'\u2019-")) for w in re.split(r"[\s\-]+", words) if w]
    names = [w for w in found if w and w not in ("de", "la", "le", "les", "des", "du", "am")]
    return bool(names) and not any(
        w in vocab.not_names or w in vocab.units or w in vocab.months for w in names
    )
