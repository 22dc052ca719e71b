"""Person names that nothing cues and no file holds, found by a dictionary: the first names
and surnames of English, German and French (``data/names.json``, made from Faker's person
providers by ``tools/build_name_lists.py``; source, version and licence recorded there).

A capitalised word is a name when it is a first name of the list, unless a guard says it is
something else: a word of the cleaner's vocabulary (``not_names``: clinical words, sequence
names...), a month, a title, a unit, a degree, a street or institution word, or an eponym in
its medical setting ("Parkinson's disease", "circle of Willis", "maladie de Crohn", "Morbus
Bechterew", "Guillain-Barré"). A surname alone, and a name that is also an ordinary word
("Grace", "Will", "Rose", "Pierre", "Klein"), needs a cue: a relative before it ("daughter
Grace", "Tochter Lea", "sa fille Camille"), or a preposition of contact or a contact verb
("discussed with Hartmann", "call Will", "vu avec Benoît", "Befund an Schneider"); an
ordinary-word first name is also a name before a surname of the list ("Kyle Brennan"). After
a relative, a person's role or an alias (``name_cue_relatives``, ``name_cue_roles``,
``name_cue_alias``: "husband Quang", "interpreter Oanh", "Dolmetscherin Ayse", "known as
'Bibi'") any capitalised word is a name, in the list or not.
Capitalised words right after a first name that could be its surname join the span
("Nadia Okafor").

A profile turns the dictionary off, or adds names and words of its own (``[clean]``:
``name_dictionary``, ``names``, ``not_names``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final

from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.vocabulary import _Vocabulary, fold


@dataclass(frozen=True)
class NameLists:
    """The dictionary: first names, surnames, and those of them that are ordinary words."""

    first: frozenset[str]
    surnames: frozenset[str]
    ambiguous: frozenset[str]
    never: frozenset[str] = frozenset()  # a profile's words that are never names

    def with_words(self, names: Iterable[str], not_names: Iterable[str]) -> NameLists:
        """These lists with a profile's own names (always names) and words (never)."""
        extra = {fold(n) for n in names}
        never = {fold(n) for n in not_names}
        if not extra and not never:
            return self  # no copy of the lists (each engine of a run asks)
        return NameLists(
            (self.first | extra) - never,
            self.surnames - never,
            (self.ambiguous - extra) - never,
            (self.never - extra) | never,
        )


@cache
def name_lists() -> NameLists:
    """The shipped lists (``data/names.json``)."""
    raw = json.loads((files("dicomveil.cleaners.text") / "data" / "names.json").read_bytes())
    return NameLists(
        frozenset(raw["first_names"]), frozenset(raw["surnames"]), frozenset(raw["ambiguous"])
    )


@cache
def _cue_file() -> dict[str, list[str]]:
    data = (files("dicomveil.cleaners.text") / "data" / "text-vocabulary.json").read_bytes()
    raw: dict[str, list[str]] = json.loads(data)
    return raw


def _cue_words(key: str) -> frozenset[str]:
    return frozenset(fold(w) for w in _cue_file()[key])


_WORD: Final = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*")

# Words after which a name may be a surname or an ordinary word and still be a name.
_RELATIVES: Final = _cue_words("name_cue_relatives")
_CONTACT: Final = _cue_words("name_cue_contact")
# Words after which any capitalised word is a name, in the list or not: a relative, a
# person's role ("interpreter Linh", "coworker Marisol") or an alias ("called Mimi").
_PERSON_CUES: Final = _RELATIVES | _cue_words("name_cue_roles") | _cue_words("name_cue_alias")
_ANY_CUE: Final = _PERSON_CUES | _CONTACT
# Endings of nouns that are never given names ("Mutter Mammakarzinom", "Sohn Begleitung").
_NOUN_ENDING: Final = re.compile(
    "(?:" + "|".join(sorted(_cue_words("not_name_suffixes"), key=len, reverse=True)) + ")$"
)
# Determiners and possessives that may stand between a cue and the name.
_BETWEEN: Final = _cue_words("name_cue_between")
# After an eponym: what makes it one ("Parkinson's disease", "Chiari malformation").
_EPONYM_HEADS: Final = _cue_words("eponym_heads")
# Before an eponym: "Morbus Crohn"; a head word and one of these: "circle of Willis",
# "maladie de Parkinson", "Syndrom von Willebrand".
_EPONYM_OF: Final = _cue_words("eponym_of")


def _capitalised(word: str) -> bool:
    return word[0].isupper() and (len(word) == 1 or not word[1:].isupper() or len(word) >= 3)


def dictionary_spans(
    text: str, folded: str, vocab: _Vocabulary, lists: NameLists
) -> Iterator[Span]:
    """The names of ``text`` that the dictionary finds (see the module docstring)."""
    tokens = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not tokens:
        return
    caps_text = text.isupper()  # an all-capitals text: capitals say nothing
    i = 0
    while i < len(tokens):
        start, end = tokens[i]
        word, key = text[start:end], folded[start:end]
        name = _decide(text, folded, tokens, i, vocab, lists, caps_text)
        if not name:
            i += 1
            continue
        last = end
        j = i + 1
        while j < len(tokens) and j <= i + 2:  # its surname(s): "Nadia Okafor"
            s, e = tokens[j]
            if (
                folded[s:e] in vocab.particles  # "Maria de Fátima", "Maïwenn Le Goff"
                and j + 1 < len(tokens)
                and text[last:s] == " "
                and text[e : tokens[j + 1][0]] == " "
                and _capitalised(text[tokens[j + 1][0] : tokens[j + 1][1]])
                and not _guarded(folded[tokens[j + 1][0] : tokens[j + 1][1]], vocab)
            ):
                last = tokens[j + 1][1]
                j += 2
                continue
            if text[last:s] not in (" ", "-") or not _could_be_surname(
                text[s:e], folded[s:e], vocab, lists, caps_text
            ):
                break
            last = e
            j += 1
        del word, key
        if j > i + 1 and j < len(tokens) and _head_after(text, folded, tokens, j - 1):
            i = j  # several names before a head word: "Sister Mary Joseph nodule"
            continue
        yield Span(start, last, Category.NAME, Basis.PATTERN)
        i = j


def _guarded(key: str, vocab: _Vocabulary) -> bool:
    return (
        key in vocab.not_names
        or key in vocab.months
        or key in vocab.degrees
        or key in vocab.units
        or key in vocab.street_types
        or key in vocab.institution_generic
        or key in vocab.particles
    )


def _could_be_surname(
    word: str, key: str, vocab: _Vocabulary, lists: NameLists, caps_text: bool
) -> bool:
    if len(word) < 2 or caps_text or not _capitalised(word) or _guarded(key, vocab):
        return False
    return key not in lists.ambiguous or key in lists.surnames


def _decide(
    text: str,
    folded: str,
    tokens: list[tuple[int, int]],
    i: int,
    vocab: _Vocabulary,
    lists: NameLists,
    caps_text: bool,
) -> bool:
    start, end = tokens[i]
    word, key = text[start:end], folded[start:end]
    if (
        len(word) < 3
        or caps_text
        or not _capitalised(word)
        or _guarded(key, vocab)
        or key in lists.never
    ):
        return False
    first, surname = key in lists.first, key in lists.surnames
    if _eponym(text, folded, tokens, i):
        return False
    if word.isupper():  # an acronym in mixed-case text ("SAMU 33", "GRACE score") unless cued
        return (first or surname) and _cued(folded, tokens, i, _ANY_CUE)
    if not (first or surname):
        if len(key) >= 7 and _NOUN_ENDING.search(key):
            return False
        return _cued(folded, tokens, i, _PERSON_CUES)
    if first and key not in lists.ambiguous:
        return True
    if _cued(folded, tokens, i, _ANY_CUE):
        return True
    # An ambiguous first name before a surname of the list: "Kyle Brennan", "Rose Ashworth".
    if first and i + 1 < len(tokens):
        s, e = tokens[i + 1]
        after = folded[s:e]
        return (
            text[end:s] == " "
            and after in lists.surnames
            and after not in lists.ambiguous
            and _capitalised(text[s:e])
            and not _guarded(after, vocab)
        )
    return False


def _cued(folded: str, tokens: list[tuple[int, int]], i: int, cues: frozenset[str]) -> bool:
    """One of ``cues`` (one or two words) right before word ``i``: determiners and
    possessives may stand between, and a colon, an opening bracket or quote ("called 'Mimi'",
    "mom (Deepa)")."""
    j = i - 1
    while j >= 0:
        s, e = tokens[j]
        before = folded[s:e]
        if folded[e : tokens[j + 1][0]].strip(" :(\"'\u201c\u201e\u00ab\u2018") != "":
            return False  # punctuation between: no cue
        if before in _BETWEEN:
            j -= 1
            continue
        if before in cues:
            return True
        if j > 0 and folded[tokens[j - 1][1] : s] == " ":
            return f"{folded[tokens[j - 1][0] : tokens[j - 1][1]]} {before}" in cues
        return False
    return False


# A phone number after a word: "cell 313-555-0175" is a contact's label, no eponym's head.
_NUMBER_AFTER: Final = re.compile(r"\s*[:#]?\s*[+(]?\d[\d\s().\-/]{5,}")
_WORD_AFTER: Final = re.compile(r"['\u2019]?s?\s+([^\W\d_]+)")
_TOKEN_AFTER: Final = re.compile(r"\s+(" + _WORD.pattern + ")")  # the next word of _WORD
_WORDS_BEFORE: Final = re.compile(r"([^\W\d_]+)\s+([^\W\d_]+)\s+$")


def _head_word_after(folded: str, end: int, word_after: re.Pattern[str]) -> bool:
    """A medical head word after ``end`` ("Parkinson disease", "Schwann cell"), not a
    contact's label ("Rania cell 313-555-0175")."""
    after = word_after.match(folded, end)
    return (
        after is not None
        and after[1] in _EPONYM_HEADS
        and not _NUMBER_AFTER.match(folded, after.end())
    )


def in_eponym(text: str, folded: str, start: int, end: int) -> bool:
    """Whether the word ``text[start:end]`` stands in an eponym's setting: a medical head
    word after it ("Douglas pouch", "GRACE score", "Parkinson's disease") or a head word
    and "of"/"de"/"von" before it ("pouch of Douglas"); for the names a file holds that are
    also an eponym's."""
    if _head_word_after(folded, end, _WORD_AFTER):
        return True
    before = _WORDS_BEFORE.search(folded, max(0, start - 40), start)
    return before is not None and before[2] in _EPONYM_OF and before[1] in _EPONYM_HEADS


def _head_after(text: str, folded: str, tokens: list[tuple[int, int]], i: int) -> bool:
    """A medical head word is the word after word ``i`` (:func:`_head_word_after`)."""
    return i + 1 < len(tokens) and _head_word_after(folded, tokens[i][1], _TOKEN_AFTER)


def _eponym(text: str, folded: str, tokens: list[tuple[int, int]], i: int) -> bool:
    """Word ``i`` in an eponym's setting: a possessive, a hyphenated pair, a medical head
    word after it, or "Morbus"/"of"/"de"/"von" before it."""
    start, end = tokens[i]
    after = text[end : end + 2]
    if after in ("'s", "\u2019s") or text[end : end + 1] == "'":
        return True
    word = text[start:end]
    if "-" in word and all(part[:1].isupper() for part in word.split("-")):
        return True
    if _head_after(text, folded, tokens, i):
        return True
    if i > 0:
        s, e = tokens[i - 1]
        before = folded[s:e]
        if before == "morbus":
            return True
        if before in _EPONYM_OF and i > 1:
            s2, e2 = tokens[i - 2]
            return folded[s2:e2] in _EPONYM_HEADS
    return False
