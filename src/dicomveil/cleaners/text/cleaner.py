"""The free-text cleaner: :class:`TextCleaner` finds the identifying spans of a text (by
pattern, and by what the file holds), merges them, and replaces each by its category's
token; :class:`Cleaned` reports positions, categories and counts, never the removed values.
Also the text VRs a cleaner can rewrite and their maximum lengths.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache
from typing import Final

from dicomveil.cleaners.text.dictionary import NameLists, dictionary_spans, name_lists
from dicomveil.cleaners.text.identifiers import Identifiers
from dicomveil.cleaners.text.institutions import institution_spans
from dicomveil.cleaners.text.names import _name_spans
from dicomveil.cleaners.text.patterns import _number_spans, _patterns
from dicomveil.cleaners.text.replacements import Replacements
from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.vocabulary import _DIGITS, _vocabulary, dicom_words, fold

__all__ = ["TEXT_VRS", "VR_MAX_LENGTH", "Cleaned", "TextCleaner"]


# Text VRs a cleaner can rewrite, and their maximum lengths in characters (PS3.5 6.2).
TEXT_VRS: Final = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS"})
VR_MAX_LENGTH: Final[Mapping[str, int]] = {"SH": 16, "LO": 64, "CS": 16, "ST": 1024, "LT": 10240}

# When overlapping spans of different categories merge, the longest decides; ties go to
# the first of this order.
_PRIORITY: Final = (
    Category.EMAIL,
    Category.URL,
    Category.PHONE,
    Category.DATE,
    Category.ADDRESS,
    Category.ID,
    Category.INSTITUTION,
    Category.NAME,
    Category.TIME,
    Category.AGE,
)


# A top-level domain the URL pattern knows, after a dot: a text that may hold a bare domain.
_DOMAIN: Final = re.compile(
    r"\w\.(?:com|org|net|edu|gov|info|io|uk|de|fr|eu|ch|at|be|nl|ca|us|ie)(?![^\W_])"
)


def _pattern_spans(text: str, folded: str) -> Iterator[Span]:
    p = _patterns()
    vocab = _vocabulary()
    if _DIGITS.search(text):
        yield from _number_spans(text, folded, p, vocab)
    if "@" in text:
        for m in p.email.finditer(text):
            yield Span(m.start(), m.end(), Category.EMAIL, Basis.PATTERN)
    if "://" in text or "www." in folded or _DOMAIN.search(folded):
        for m in p.url.finditer(text):
            end = m.end()
            while end > m.start() and text[end - 1] in ".,;:!?)]}'\"":
                end -= 1
            yield Span(m.start(), end, Category.URL, Basis.PATTERN)
    yield from _name_spans(text, p, vocab)
    yield from institution_spans(text, vocab)


# --------------------------------------------------------------------------------------------
# Merging and replacing

_NAME_GAP = re.compile(r"[\s,^]{0,3}(?:[A-ZÀ-ÖØ-Þ]\.?[\s\-]{0,2})?$")
_SAME_GAP = re.compile(r"[\s,;]{0,3}$")
_INITIALS_BEFORE = re.compile(r"(?<![^\W_])(?:[A-ZÀ-ÖØ-Þ](?:\.\s?-?\s?|[ \-])){1,3}$")
# Initials after a name: "Holloway J.", "NGUYEN B L", "MOREAU J-C" (a name's initials go
# with it, privacy first: "Smith R knee" loses the R of "right" with them).
_INITIAL_AFTER = re.compile(
    r"(?:\s[A-ZÀ-ÖØ-Þ]\.(?:-?[A-ZÀ-ÖØ-Þ]\.)?|\s[A-ZÀ-ÖØ-Þ](?:-[A-ZÀ-ÖØ-Þ])?){1,2}(?=\s|,|;|$)"
)


def _merge(text: str, spans: Iterable[Span]) -> list[Span]:
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    groups: list[list[Span]] = []
    for s in ordered:
        if s.end <= s.start:
            continue
        if groups and s.start < max(x.end for x in groups[-1]):
            groups[-1].append(s)
        else:
            groups.append([s])
    merged: list[Span] = []
    for group in groups:
        best = max(group, key=lambda s: (s.end - s.start, -_PRIORITY.index(s.category)))
        basis = Basis.DATASET if any(s.basis is Basis.DATASET for s in group) else Basis.PATTERN
        merged.append(
            Span(min(s.start for s in group), max(s.end for s in group), best.category, basis)
        )
    out: list[Span] = []
    for s in merged:
        if s.category is Category.NAME:
            m = _INITIALS_BEFORE.search(text, max(0, s.start - 12), s.start)
            if m is not None and (not out or out[-1].end <= m.start()):
                s = Span(m.start(), s.end, s.category, s.basis)
            after = _INITIAL_AFTER.match(text, s.end)
            if after is not None:
                s = Span(s.start, after.end(), s.category, s.basis)
        if out:
            last = out[-1]
            gap = text[last.end : s.start]
            same = last.category is s.category
            if s.start < last.end or (
                same
                and s.category in (Category.NAME, Category.ADDRESS, Category.INSTITUTION)
                and (_NAME_GAP if s.category is Category.NAME else _SAME_GAP).match(gap)
            ):
                category = (
                    last.category if (last.end - last.start) >= (s.end - s.start) else (s.category)
                )
                basis = Basis.DATASET if Basis.DATASET in (last.basis, s.basis) else Basis.PATTERN
                out[-1] = Span(last.start, max(last.end, s.end), category, basis)
                continue
        out.append(s)
    return out


@dataclass(frozen=True)
class Cleaned:
    """A cleaned text and what was replaced (positions refer to the original text).

    Parameters
    ----------
    text : str
        The cleaned text.
    spans : tuple of Span, optional
        The spans that were replaced, in order, with their positions in the original text.
    truncated : bool, optional
        Whether the cleaned text was cut to fit a maximum length.
    """

    text: str
    spans: tuple[Span, ...] = ()
    truncated: bool = False

    @property
    def changed(self) -> bool:
        """Whether the cleaned text differs from the original (a span replaced, or cut)."""
        return bool(self.spans) or self.truncated

    def counts(self) -> Counter[Category]:
        """How many spans of each category were replaced.

        Returns
        -------
        collections.Counter of Category
            The number of replaced spans by category.
        """
        return Counter(s.category for s in self.spans)

    def summary(self) -> str:
        """``"2 names, 1 date"`` (no values), or ``"nothing identifying found"``.

        Returns
        -------
        str
            The counts of the replaced categories, in the order of :class:`Category`.
        """
        counts = self.counts()
        if not counts:
            return "nothing identifying found"
        return ", ".join(c.counted(counts[c]) for c in Category if counts[c])


@dataclass(frozen=True)
class TextCleaner:
    """Finds and replaces identifying spans; one per run (it holds only the tokens).

    Parameters
    ----------
    replacements : Replacements, optional
        The tokens that replace the spans; by default :data:`DEFAULT_TOKENS`.
    """

    replacements: Replacements = field(default_factory=Replacements)

    @cached_property
    def names(self) -> NameLists | None:
        """The name dictionary with the profile's words, or None when it is off."""
        clean = self.replacements
        if not clean.dictionary:
            return None
        return name_lists().with_words(clean.names, clean.not_names)

    def find(self, text: str, identifiers: Identifiers | None = None) -> list[Span]:
        """The identifying spans of ``text``, merged (none overlap), in order of position.

        ``identifiers``, the values the file holds, are searched for besides the patterns
        (``None``: patterns only).
        """
        if not text.strip():
            return []
        spans = list(_context_free(self, text))
        if identifiers is not None:
            spans.extend(identifiers.find(text, fold(text)))
        return _merge(text, spans)

    def _context_free(self, text: str) -> tuple[Span, ...]:
        folded = fold(text)
        spans = list(_pattern_spans(text, folded))
        names = self.names
        if names is not None:
            spans.extend(dictionary_spans(text, folded, _vocabulary(), names))
        return tuple(spans)

    def prepare(self) -> None:
        """Load and compile now what cleaning the first text would (the patterns, the
        vocabularies, the name dictionary): a run's parent process prepares its cleaner
        while the first pass runs, and the workers it starts next inherit all of it."""
        _cleaned(self, _SAMPLE, _SAMPLE_VALUES, None)

    def clean(
        self, text: str, identifiers: Identifiers | None = None, *, max_length: int | None = None
    ) -> Cleaned:
        """``text`` with every identifying span (:meth:`find`) replaced by its category's
        token, and the spans replaced.

        With ``max_length``, the most characters the result may have (the VR's maximum
        length), the result is cut to fit, never inside a token; ``None``: no limit.
        """
        return _cleaned(self, text, identifiers, max_length)

    def clean_known(
        self, text: str, identifiers: Identifiers, *, max_length: int | None = None
    ) -> Cleaned:
        """``text`` with the spans of the patient's own values (``identifiers``) replaced,
        and nothing else: for coded entries (a code meaning), where the patterns and the
        name dictionary would take clinical terms for names, but a local code's meaning
        may name the patient ("Protocol for Smith").

        Parameters
        ----------
        text : str
            The text (one value of a code meaning).
        identifiers : Identifiers
            The patient's values.
        max_length : int or None, optional
            The most characters the result may have (see :meth:`clean`).

        Returns
        -------
        Cleaned
            The text with the spans of the patient's values replaced (none of the words of
            the standard's attribute names: "Name" of "Observer Name").
        """
        if not text.strip():
            return Cleaned(text, (), False)
        terms = dicom_words()
        spans = [
            s
            for s in identifiers.find(text, fold(text))
            if fold(text[s.start : s.end]).strip() not in terms  # "Name" of "Observer Name"
        ]
        return self._replaced(text, _merge(text, spans), max_length)

    def _clean(self, text: str, identifiers: Identifiers | None, max_length: int | None) -> Cleaned:
        return self._replaced(text, self.find(text, identifiers), max_length)

    def _replaced(self, text: str, spans: list[Span], max_length: int | None) -> Cleaned:
        parts: list[str] = []
        tokens: list[tuple[int, int]] = []
        length = 0
        last = 0
        for s in spans:
            kept = text[last : s.start]
            parts.append(kept)
            length += len(kept)
            token = self.replacements.token(s.category)
            tokens.append((length, length + len(token)))
            parts.append(token)
            length += len(token)
            last = s.end
        parts.append(text[last:])
        out = "".join(parts)
        truncated = False
        if max_length is not None and len(out) > max_length:
            cut = max_length
            for a, b in tokens:
                if a < cut < b:
                    cut = a
                    break
            out = out[:cut].rstrip()
            truncated = True
        return Cleaned(out, tuple(spans), truncated)


# A text that takes every recognizer's path (cleaned by :meth:`TextCleaner.prepare`).
_SAMPLE: Final = (
    "Seen by Dr. Anna Meier (St. Mary's Hospital, Dept. of Radiology) on 12.03.2020 and "
    "2020-03-12, ID 123456789, tel. +49 (0)30 1234567, anna@example.org www.example.org; "
    "Marie, sa fille, habite 3 rue de la Paix, 75002 Paris. Herr Müller, Klinikum Nord."
)
_SAMPLE_VALUES: Final = Identifiers(
    names=frozenset({"MEIER^ANNA"}),
    ids=frozenset({"123456789"}),
    dates=frozenset({date(2020, 3, 12)}),
    phones=frozenset({"+49 30 1234567"}),
    addresses=frozenset({"3 rue de la Paix, 75002 Paris"}),
    institutions=frozenset({"Klinikum Nord"}),
)


@lru_cache(maxsize=4096)
def _context_free(cleaner: TextCleaner, text: str) -> tuple[Span, ...]:
    """The spans of ``text`` that the patterns and the name dictionary find, remembered:
    every patient's files repeat the same descriptions and protocol names."""
    return cleaner._context_free(text)


@lru_cache(maxsize=4096)
def _cleaned(
    cleaner: TextCleaner, text: str, identifiers: Identifiers | None, max_length: int | None
) -> Cleaned:
    """:meth:`TextCleaner.clean`, remembered: the files of a series repeat their texts
    (descriptions, protocol names) and their patient's values."""
    return cleaner._clean(text, identifiers, max_length)
