"""How a value the file holds may be written in free text: the written forms of a date,
the variants of an ID, the words, spelling variants and initials of a person name, the
pattern of a phone number however it is grouped, the distinctive phrases of an address or
institution; and the trie and the scanner that search many such literals at once. Used by
the search of :mod:`dicomveil.cleaners.text.identifiers`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date
from functools import lru_cache
from typing import Any, Final

from dicomveil.cleaners.text.vocabulary import _DIGITS, _Vocabulary, fold

_ID_STOPWORDS: Final = frozenset(
    {"anonymous", "anonymized", "anonymised", "unknown", "none", "null", "test", "n/a", "na"}
)
_SPLIT_PHRASE = re.compile(r"[\s,;^]+")


# Written forms of a known date (strftime with "-" flags is not portable: built by hand).
def _date_forms(d: date) -> set[str]:
    y, m, dd = d.year, d.month, d.day
    yy = f"{y % 100:02d}"
    forms = {
        f"{y}{m:02d}{dd:02d}",
        f"{y}-{m:02d}-{dd:02d}",
        f"{y}/{m:02d}/{dd:02d}",
        f"{y}.{m:02d}.{dd:02d}",
        f"{y}-{m}-{dd}",
        f"{dd:02d}{m:02d}{y}",
        f"{dd:02d}.{m:02d}.",
        f"{dd}.{m}.",
        f"{dd:02d}/{m:02d}",
        f"{m:02d}/{dd:02d}",
    }
    for sep in "./-":
        for day, month in ((f"{dd:02d}", f"{m:02d}"), (str(dd), str(m))):
            for year in (str(y), yy):
                forms.add(f"{day}{sep}{month}{sep}{year}")
                forms.add(f"{month}{sep}{day}{sep}{year}")
    return forms


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression for many literal strings, as a trie: the engine follows one
    branch per character instead of trying every string at every position. Longer
    strings win (greedy), backtracking to shorter ones where the boundary fails."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            return body + "?" if len(branches) == 1 and len(body) == 1 else f"(?:{body})?"
        return body

    return "(?:" + build(root) + ")"


# Where a literal may start: a character that is no space, not after a letter or digit
# (underscores separate).
_STARTS: Final = re.compile(r"(?<![^\W_])\S")


@lru_cache(maxsize=256)
def _word_starts(text: str) -> tuple[tuple[int, str], ...]:
    """Where a literal may start in ``text`` (:data:`_STARTS`), with the two characters
    there: remembered, as the matchers of a patient and of the run's institutions search
    the same texts."""
    return tuple((m.start(), text[m.start() : m.start() + 2]) for m in _STARTS.finditer(text))


# Scripts written without spaces between words (kana, CJK ideographs, Hangul, half-width
# kana): a known name is found inside a run of them ("山田太郎", "김희중씨").
_UNSPACED: Final = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
# Where else a known value may start in a text as written: after an unspaced script's
# character, a letter after a digit ("1Nakamura"), and a capital that starts a word joined
# to the one before ("NakamuraLab", "HNakamura").
_MORE_STARTS: Final = re.compile(
    rf"(?<=[{_UNSPACED}])\S|(?<=\d)(?=[^\W\d_])"
    r"|(?<=[a-zß-öø-ÿ])(?=[A-ZÀ-ÖØ-Þ])|(?<=[A-ZÀ-ÖØ-Þ])(?=[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ])"
)
_UNSPACED_CHAR: Final = re.compile(rf"[{_UNSPACED}]")


@lru_cache(maxsize=256)
def _joined_starts(folded: str, text: str) -> tuple[tuple[int, str], ...]:
    """:func:`_word_starts` and where a value joined to other characters may start
    (:data:`_MORE_STARTS`, found in ``text`` as written: its capitals), in order."""
    starts = dict(_word_starts(folded))
    for m in _MORE_STARTS.finditer(text):
        starts.setdefault(m.start(), folded[m.start() : m.start() + 2])
    return tuple(sorted(starts.items()))


def _joined_end(folded: str, text: str, end: int) -> bool:
    """Whether a value found up to ``end`` may end there though a letter or digit follows:
    a digit after a letter ("NAKAMURA1_1_1"), a capital after a small letter
    ("NakamuraLab"), or an unspaced script on either side."""
    last, after = text[end - 1], text[end]
    return (
        (after.isdigit() and not last.isdigit())
        or (last.islower() and after.isupper())
        or bool(_UNSPACED_CHAR.match(last) or _UNSPACED_CHAR.match(after))
    )


class _Phrases:
    """Many literal strings, or phrases of several words, found in a text without compiling
    anything (a patient's values are searched in a handful of texts: compiling a regular
    expression for them costs more than the search): each word as written, any run of
    spaces, commas, dots, semicolons or hyphens between two words, starting and ending at a
    word boundary, as ``(?<![^\\W_])`` and ``(?![^\\W_])`` around an alternation of the
    phrases, each one's words joined by ``[\\s,.;\\-]+``, would find them; the longest
    phrase first. A literal is a phrase of one word."""

    def __init__(self, phrases: Iterable[tuple[str, ...]]) -> None:
        heads: dict[str, list[tuple[str, ...]]] = {}
        for words in set(phrases):
            if words and words[0]:
                heads.setdefault(words[0][:2], []).append(words)
        for group in heads.values():
            group.sort(key=lambda words: (-sum(map(len, words)), words))
        self._heads: dict[str, list[tuple[str, ...]]] = heads
        self._singles = frozenset(head for head in heads if len(head) == 1)

    def __bool__(self) -> bool:
        return bool(self._heads)

    def finditer(
        self, text: str, joined: str | None = None
    ) -> Iterator[tuple[int, int, tuple[str, ...]]]:
        """(start, end, words) of each phrase found, left to right, not overlapping. With
        ``joined``, the text as written (``text`` its fold), a phrase is also found joined
        to other characters (:func:`_joined_starts`, :func:`_joined_end`)."""
        heads = self._heads
        singles = self._singles
        after = 0
        starts = _word_starts(text) if joined is None else _joined_starts(text, joined)
        for start, pair in starts:
            if start < after:
                continue
            found = heads.get(pair, ())
            if singles and pair[0] in singles:
                found = (*found, *heads[pair[0]])
            for words in found:
                end = _phrase_end(text, start, words, joined)
                if end is not None:
                    yield start, end, words
                    after = end
                    break


_PHRASE_SEPARATORS: Final = frozenset(" \t\n\r\f\v,.;-")


def _phrase_end(
    text: str, start: int, words: tuple[str, ...], joined: str | None = None
) -> int | None:
    """Where ``words`` found at ``start`` end, or None (``joined``: see
    :meth:`_Phrases.finditer`)."""
    if not text.startswith(words[0], start):
        return None
    i = start + len(words[0])
    for word in words[1:]:
        j = i
        while j < len(text) and (text[j] in _PHRASE_SEPARATORS or text[j].isspace()):
            j += 1
        for k in range(j, i, -1):  # the longest run of separators first, as a regex would
            if text.startswith(word, k):
                i = k + len(word)
                break
        else:
            return None
    if i < len(text) and text[i].isalnum():
        return i if joined is not None and _joined_end(text, joined, i) else None
    return i


def _phone_cores(digits: str) -> frozenset[str]:
    """The digits a known phone number is recognised by: all of them, and without what may
    be its country code (the first one to three digits, keeping seven or more)."""
    cores = {digits}
    for drop in (1, 2, 3):
        if len(digits) - drop >= 7:
            cores.add(digits[drop:])
    return frozenset(cores)


# A run of digits, however separated; numbers and phone numbers are looked for in its digits.
_NUMBER_RUN: Final = re.compile(r"\d(?:[\s.\-/]?\d)*")
_PHONE_RUN: Final = re.compile(r"(?<![\w+])\+?[\s.\-/()]*\d(?:[\s.\-/()]*\d)*")


def _digit_run(text: str, m: re.Match[str]) -> tuple[str, list[int]]:
    """The digits of a run and the offset in ``text`` of each."""
    offset = m.start()
    positions = [offset + i for i, char in enumerate(m.group()) if char.isdecimal()]
    return "".join(text[i] for i in positions), positions


def _numbers_in(text: str, numbers: Iterable[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of each of ``numbers`` (digits) in ``text``, grouped by at most one
    space, dot, hyphen or slash between any two digits ("485 773 6201", "485-773-6201"),
    starting and ending at a word boundary."""
    size = len(text)
    for m in _NUMBER_RUN.finditer(text):
        digits, positions = _digit_run(text, m)
        for number in numbers:
            at = digits.find(number)
            while at >= 0:
                start, end = positions[at], positions[at + len(number) - 1] + 1
                if (start == 0 or not text[start - 1].isalnum()) and (
                    end == size or not text[end].isalnum()
                ):
                    yield start, end
                at = digits.find(number, at + 1)


def _phones_in(text: str, cores: Iterable[frozenset[str]]) -> Iterator[tuple[int, int]]:
    """(start, end) of each known phone number (:func:`_phone_cores`) in ``text``, however it
    is written: any separators, with or without its country code, trunk zero or "(0)"
    ("+1 555 204 8861", "(555) 204-8861", "+49 (0)361 5550172", "0361/5550172"); it starts
    where no letter, digit or "+" is before it, and no digit follows it."""
    size = len(text)
    for m in _PHONE_RUN.finditer(text):
        digits, positions = _digit_run(text, m)
        for first in range(len(digits)):
            if first and text[positions[first] - 1].isdecimal():
                continue  # inside a group of digits
            end = _phone_at(text, digits, positions, first, cores, size)
            if end is not None:
                yield (m.start() if first == 0 else positions[first]), end


def _phone_at(
    text: str,
    digits: str,
    positions: list[int],
    first: int,
    cores: Iterable[frozenset[str]],
    size: int,
) -> int | None:
    """Where a known phone number that starts at digit ``first`` ends, or None."""
    for known in cores:
        for code in (0, 1, 2, 3):  # a country code of up to three digits
            for trunk in (0, 1):  # a trunk zero, or "(0)"
                at = first + code + trunk
                if trunk and digits[at - 1 : at] != "0":
                    continue
                for core in known:
                    last = at + len(core) - 1
                    if digits.startswith(core, at) and (
                        positions[last] + 1 == size or not text[positions[last] + 1].isdecimal()
                    ):
                        return positions[last] + 1
    return None


def _name_words(value: str, vocab: _Vocabulary) -> set[str]:
    """Folded name parts of two or more letters, honorifics left out."""
    out: set[str] = set()
    for group in value.split("="):
        for component in group.split("^"):
            for word in re.split(r"[\s,]+", component):
                word = word.strip(".'\u2019-")
                if not word:
                    continue
                parts = (
                    [word, *re.split(r"[-'\u2019]", word)]
                    if re.search(r"[-'\u2019]", word)
                    else [word]
                )
                for part in parts:
                    folded = fold(part.strip("."))
                    if (
                        len(folded) >= 2
                        and not folded.isdigit()
                        and folded not in vocab.honorifics
                        and re.search(r"[^\W\d_]", folded)
                    ):
                        out.add(folded)
    return out


def _spelling_variants(folded: str) -> set[str]:
    """Umlaut transliterations both ways: Müller, Mueller, Muller; Strasse, Straße."""
    out = {folded}
    out.add(re.sub(r"(?<=[^\W\d_])(ae|oe|ue)", lambda m: m.group()[0], folded))
    if "ss" in folded:
        out.add(folded.replace("ss", "ß"))
    if "ß" in folded:
        out.add(folded.replace("ß", "ss"))
    return out


def _name_letters(value: str) -> list[str]:
    """Initial letters in reading order (given names, then family name) of a person name."""
    group = value.split("=")[0]
    components = [c for c in group.split("^")]
    family = components[0] if components else ""
    given = components[1:3]
    words: list[str] = []
    for component in (*given, family):
        words.extend(w for w in re.split(r"[\s,.\-]+", component) if w)
    if "^" not in group:  # "Jonathan Holloway": already in reading order
        words = [w for w in re.split(r"[\s,.\-]+", group) if w]
    return [w[0].upper() for w in words if w[0].isalpha()]


def _initial_forms(value: str, vocab: _Vocabulary) -> set[str]:
    """J.H., J. H., J.Q.H., H.J.; undotted only with three or more letters (JQH)."""
    letters = _name_letters(value)
    if len(letters) < 2:
        return set()
    forms: set[str] = set()
    orders = [letters, [letters[-1], *letters[:-1]]]
    if len(letters) > 2:
        orders += [[letters[0], letters[-1]], [letters[-1], letters[0]]]
    for order in orders:
        forms.add(".".join(order) + ".")
        forms.add(". ".join(order) + ".")
        if len(order) >= 3:
            forms.add("".join(order))
    return forms


def _id_variants(value: str) -> set[str]:
    """An ID as written, without separators, and its number without prefix or zeros."""
    value = value.strip()
    folded = fold(value)
    has_digit = bool(_DIGITS.search(value))
    if folded in _ID_STOPWORDS or len(value) < 3 or (not has_digit and len(value) < 5):
        return set()
    out = {value}
    compact = re.sub(r"[\s\-_/.]", "", value)
    if compact != value and len(compact) >= 3:
        out.add(compact)
    core = re.sub(r"^[^\d]*", "", compact).lstrip("0")
    if len(core) >= 5 and core.isdigit() and core != compact:
        out.add(core)
    return out


def _phrase_pattern(phrase: str) -> str:
    words = [w for w in _SPLIT_PHRASE.split(fold(phrase)) if w]
    return r"[\s,.;\-]+".join(re.escape(w) for w in words)


def _address_phrases(value: str, vocab: _Vocabulary) -> set[str]:
    """The whole address, its comma/caret parts, postal codes and distinctive words."""
    out = {value}
    for part in re.split(r"[,;^\n\r]+", value):
        part = part.strip()
        if len(part) >= 4 and (" " in part or _DIGITS.search(part)):
            out.add(part)
        tokens = part.split()
        trailing: list[str] = []
        while tokens and _DIGITS.search(tokens[-1]):
            trailing.insert(0, tokens.pop())
        if trailing and len("".join(trailing)) >= 4:
            out.add(" ".join(trailing))  # postal codes: "02135", "AS4 7TT"
        words = [w for w in re.split(r"[\s.]+", part) if w]
        distinctive = []
        for word in words:
            folded = fold(word)
            postal = re.fullmatch(r"\d{4,6}|[a-z]{1,2}-\d{4,5}", folded)
            distinctive.append(
                len(folded) >= 4
                and folded.isalpha()
                and folded not in vocab.street_types
                and folded not in vocab.institution_generic
            )
            if postal or distinctive[-1]:
                out.add(word)
        for i in range(len(words)):  # "Larkspur House" of "Larkspur House Care Home"
            for j in range(i + 2, min(len(words), i + 4) + 1):
                if any(distinctive[i:j]):
                    out.add(" ".join(words[i:j]))
    return {p for p in out if p.strip()}


def _initialism(value: str, vocab: _Vocabulary) -> str | None:
    """The initials of an institution's name, as its people write it ("BCMC" of "Birch Creek
    Medical Center"), of four letters or more (three-letter initials are the clinical
    acronyms' space: MCA, ICA, MRI) and no word of the cleaner's vocabulary."""
    words = [w for w in re.split(r"[\s,.;()/&\-]+", value) if w[:1].isalpha()]
    letters = "".join(w[0] for w in words if fold(w) not in _LINKING_WORDS).upper()
    key = fold(letters)
    if len(letters) < 4 or key in vocab.not_names or key in vocab.units:
        return None
    return letters


_LINKING_WORDS: Final = frozenset(
    {"of", "the", "and", "for", "de", "du", "des", "la", "le", "les", "et", "und", "fur", "der"}
)


def _institution_phrases(value: str, vocab: _Vocabulary) -> set[str]:
    """The whole name, and every run of its words holding a distinctive one ("Elsewhere",
    "Saint Elsewhere"; not "General Hospital")."""
    words = [w for w in re.split(r"[\s,.;()/&\-]+", value) if w]
    if len(words) == 1 and fold(words[0]).strip("'\u2019") in vocab.institution_generic:
        return set()  # a department's one generic word ("Radiology", "Urgences") names no one
    out = {value}
    distinctive = [
        len(f) >= 4 and f.isalpha() and f not in vocab.institution_generic
        for f in (fold(w).strip("'\u2019") for w in words)
    ]
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            if any(distinctive[i:j]):
                out.add(" ".join(words[i:j]))
    return {p for p in out if len(fold(p).strip()) >= 3}
