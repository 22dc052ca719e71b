"""Needles: the identifying values of the originals, in the forms people write them
(:mod:`~dicomveil.qc.verify.forms`), compiled for a byte search (sets for UIDs, dates and
numbers; names, IDs and the rest keyed by runs of letters or digits they hold, see
:class:`_Needles`)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any, Final, NamedTuple

from dicomveil.qc.verify.report import Category


class _Kind(StrEnum):
    """How a needle may sit in the bytes. Nothing that starts with a digit may follow a digit
    or a dot (it would be part of a number or a UID)."""

    DIGITS = "digits"  # all digits: a whole run of digits
    UID = "uid"  # a whole UID-like token, or its leading components
    DATE = "date"  # YYYYMMDD may run on (a DT goes on with the time)
    WORD = "word"  # names, institutions, addresses: no letter may touch either end
    PLAIN = "plain"  # IDs: anywhere


class _Literal(NamedTuple):
    """A needle found by its anchor: a run of letters or digits in it that shows in the bytes
    searched as a whole run (``exact``), the start of one (``prefix``: its first 4 bytes) or
    the end of one (``suffix``: its last 4 bytes). ``at`` is where the key starts in it."""

    needle: bytes
    group: int  # the old trie's order at one offset: digit first, then words, then plain
    word: bool  # no letter may follow it
    at: int


_Anchors = Mapping[bytes, tuple[_Literal, ...]]


@dataclass(frozen=True)
class _Needles:
    """Compiled needles, for a byte search that finds what one regex of them all would find:
    at the leftmost offset where a needle matches, the first of the digit-led, word and plain
    needles that match there (the longest of them), then on after it, never overlapping.

    The many (UIDs, compact dates, numbers and times: thousands in a large set) are looked up
    in sets for each UID-like token and each run of digits, so their number does not slow the
    search. The rest (names, IDs, addresses, dates as people write them) were one trie regex,
    whose compiling (in Python, before any file could be checked) grew with the set to a good
    part of a run; now each is keyed by an anchor (see :class:`_Literal`). A search cuts the
    bytes into runs of letters and of digits (in C), and only anchors among them lead to
    comparing needles; without a hit (a clean file) it is a few set intersections. Needles
    with no anchor (all letters, or short runs only) keep a small trie regex, in a
    look-ahead so that it reports every offset it matches at."""

    pattern: re.Pattern[bytes] | None
    uids: frozenset[bytes]
    dates: frozenset[bytes]  # YYYYMMDD: a run of digits that starts with one
    numbers: frozenset[bytes]  # all digits: a whole run of digits
    info: Mapping[bytes, tuple[Category, str]]
    exact: _Anchors = field(default_factory=dict)
    prefix: _Anchors = field(default_factory=dict)
    suffix: _Anchors = field(default_factory=dict)
    uid_keys: frozenset[bytes] = frozenset()  # the longest run of digits of each UID
    groups: Mapping[bytes, int] = field(default_factory=dict)  # the pattern's needles
    kinds: Mapping[bytes, _Kind] = field(default_factory=dict)  # all but the sets' needles

    @cached_property
    def keys(self) -> tuple[frozenset[bytes], frozenset[bytes], frozenset[bytes]]:
        return frozenset(self.exact), frozenset(self.prefix), frozenset(self.suffix)

    @property
    def empty(self) -> bool:
        return (
            self.pattern is None
            and not (self.uids or self.dates or self.numbers)
            and not (self.exact or self.prefix or self.suffix)
        )

    def find(self, lowered: bytes) -> list[tuple[int, bytes]]:
        """(offset, needle) of every hit, in order."""
        hits: list[tuple[int, bytes]] = []
        # Runs of letters and runs of digits, each cut out in C (a regex is slower here).
        digits = set(lowered.translate(_ONLY_DIGITS).split())
        tokens = digits.union(lowered.translate(_ONLY_LETTERS).split())
        if self.exact or self.prefix or self.suffix or self.pattern is not None:
            hits.extend(self._literals(lowered, tokens))
        if self.uids and not digits.isdisjoint(self.uid_keys):
            for match in _UID_TOKEN.finditer(lowered):
                token = match.group(0)
                if token in self.uids:
                    hits.append((match.start(), token))
                    continue
                end = token.find(b".")  # the UID with components appended (derived from it)
                while end != -1:
                    if token[:end] in self.uids:
                        hits.append((match.start(), token[:end]))
                        break
                    end = token.find(b".", end + 1)
        if (self.numbers and not digits.isdisjoint(self.numbers)) or (
            self.dates and not self.dates.isdisjoint([t[:8] for t in digits if len(t) >= 8])
        ):
            for match in _DIGIT_RUN.finditer(lowered):
                run = match.group(0)
                if run[:8] in self.dates:
                    hits.append((match.start(), run[:8]))
                elif run in self.numbers:
                    hits.append((match.start(), run))
        return sorted(hits)

    def _literals(self, hay: bytes, tokens: set[bytes]) -> list[tuple[int, bytes]]:
        """The names, IDs, addresses and dates as written: every offset where one matches
        (with the best there), then the leftmost-first, non-overlapping choice."""
        best: dict[int, tuple[int, int, bytes]] = {}  # offset -> (group, -length, needle)

        def offer(offset: int, group: int, needle: bytes) -> None:
            rank = (group, -len(needle), needle)
            known = best.get(offset)
            if known is None or rank < known:
                best[offset] = rank

        keyed: list[tuple[bytes, tuple[_Literal, ...]]] = []
        keys = self.keys  # a set with a set: the smaller is iterated (not so with a dict)
        if self.exact:
            keyed.extend((t, self.exact[t]) for t in tokens & keys[0])
        if self.prefix:
            starts = {t[:4] for t in tokens if len(t) >= 4}
            keyed.extend((k, self.prefix[k]) for k in starts & keys[1])
        if self.suffix:
            ends = {t[-4:] for t in tokens if len(t) >= 4}
            keyed.extend((k, self.suffix[k]) for k in ends & keys[2])
        for key, literals in keyed:
            where = hay.find(key)
            while where != -1:
                for literal in literals:
                    offset = where - literal.at
                    if offset >= 0 and _matches(hay, offset, literal):
                        offer(offset, literal.group, literal.needle)
                where = hay.find(key, where + 1)
        if self.pattern is not None:
            for match in self.pattern.finditer(hay):
                needle = match.group(1)
                offer(match.start(), self.groups[needle], needle)
        found: list[tuple[int, bytes]] = []
        end = 0
        for offset in sorted(best):
            if offset >= end:
                needle = best[offset][2]
                found.append((offset, needle))
                end = offset + len(needle)
        return found


def _matches(hay: bytes, offset: int, literal: _Literal) -> bool:
    """Whether the needle is at ``offset``, with what may not touch it not touching it."""
    needle = literal.needle
    if not hay.startswith(needle, offset):
        return False
    if offset and literal.group < 2 and hay[offset - 1] in _GUARDS[literal.group]:
        return False
    after = offset + len(needle)
    return not (literal.word and after < len(hay) and hay[after] in _LETTERS)


_LETTERS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz")
_DIGITS: Final = frozenset(b"0123456789")
# What may not stand before a needle, by group: not in a number or a UID; not in a word.
_GUARDS: Final = (_DIGITS | {ord(".")}, _LETTERS)
_RUNS: Final = re.compile(rb"[a-z]+|[0-9]+")
_ONLY_LETTERS: Final = bytes(c if c in _LETTERS else 0x20 for c in range(256))
_ONLY_DIGITS: Final = bytes(c if c in _DIGITS else 0x20 for c in range(256))


@lru_cache(maxsize=65536)  # the release gate asks again for every file of a series
def _anchor(needle: bytes, group: int, word: bool) -> tuple[str, bytes, int] | None:
    """How to find a needle: (``exact``, ``prefix`` or ``suffix``, key, where the key starts
    in it), or None (the regex). A run of letters or digits in the needle starts a run in the
    bytes searched when something of another class stands before it (in the needle, or by
    the needle's guard); it ends one when something of another class follows it (in the
    needle, or by a word's tail). The key most unlikely to turn up by chance is taken: the
    longest whole run, unless a run of 4 or more is known at one end only (then 4 bytes of
    it); runs shorter than 4 ("25" of a date, "1" of a phone number) are everywhere."""
    best: tuple[int, str, int, int] | None = None  # (rank, how, start, end)
    for run in _RUNS.finditer(needle):
        start, end = run.span()
        length = end - start
        letters = needle[start] in _LETTERS
        opened = start > 0 or group == 0 or (group == 1 and letters)
        closed = end < len(needle) or (word and letters)
        if opened and closed:
            found = (2 * length + 1, "exact", start, end)  # a whole run beats 4 bytes of one
        elif length < 4:
            continue
        elif opened:
            found = (8, "prefix", start, start + 4)
        elif closed:
            found = (8, "suffix", end - 4, end)
        else:
            continue
        if best is None or found[0] > best[0]:
            best = found
    if best is None:
        return None
    _rank, how, start, end = best
    return how, needle[start:end], start


def _build_needles(raw: Mapping[str, Category], kept: Iterable[str]) -> _Needles:
    """The search for the needles ``raw`` (text -> category), but those ``kept`` (any case).

    The release gate builds one per file: the files of a patient share their names, IDs and
    dates as written, and differ in their instance UIDs, times and numbers (sets, cheap to
    add: :func:`_extend_needles`). The rest is worked out once per set of needles
    (:func:`_stable`); a set too large to repeat (a whole folder's, for ``verify``) is worked
    out without being kept."""
    skip = _folded(kept if isinstance(kept, frozenset) else frozenset(kept))
    literal: list[tuple[str, Category]] = []
    varying: list[tuple[str, Category, _Kind]] = []
    for text, category in raw.items():
        kind = _varying(text, category)
        if kind is None:
            literal.append((text, category))
        else:
            varying.append((text, category, kind))
    items = tuple(literal)
    base = _stable(items, skip) if len(items) <= _REMEMBERED else _stable.__wrapped__(items, skip)
    return _extended(base, varying, skip)


def _extend_needles(
    base: _Needles, raw: Mapping[str, Category], kept: frozenset[str]
) -> _Needles | None:
    """``base`` with the needles ``raw`` added (but those ``kept``), when all of them are
    UIDs, numbers or compact dates; None when one is not (then build the whole search)."""
    varying: list[tuple[str, Category, _Kind]] = []
    for text, category in raw.items():
        kind = _varying(text, category)
        if kind is None:
            return None
        varying.append((text, category, kind))
    return _extended(base, varying, _folded(kept))


def _varying(text: str, category: Category) -> _Kind | None:
    """The kind of a needle looked up in a set (a UID, a number, a compact date), else None."""
    kind = _kind(text, category)
    if (
        kind is _Kind.UID
        or kind is _Kind.DIGITS
        or (kind is _Kind.DATE and len(text) == 8 and text.isdigit())
    ):
        return kind
    return None


def _extended(
    base: _Needles, varying: list[tuple[str, Category, _Kind]], skip: frozenset[str]
) -> _Needles:
    if not varying:
        return base
    info = dict(base.info)
    sets: dict[_Kind, set[bytes]] = {_Kind.UID: set(), _Kind.DATE: set(), _Kind.DIGITS: set()}
    for text, category, kind in varying:
        if text.casefold() in skip:
            continue
        for needle in _encoded(text):
            info.setdefault(needle, (category, text))
            sets[kind].add(needle)
    uids = base.uids | sets[_Kind.UID]
    return replace(
        base,
        uids=uids,
        dates=base.dates | sets[_Kind.DATE],
        numbers=base.numbers | sets[_Kind.DIGITS],
        info=info,
        # A UID that can match is digits and dots: its longest part, a run of digits.
        uid_keys=frozenset(max(u.split(b"."), key=len) for u in uids),
    )


_REMEMBERED: Final = 4096  # needles (UIDs aside) of a set :func:`_stable` remembers


@lru_cache(maxsize=64)
def _folded(kept: frozenset[str]) -> frozenset[str]:
    return frozenset(k.casefold() for k in kept)


@lru_cache(maxsize=64)
def _stable(items: tuple[tuple[str, Category], ...], skip: frozenset[str]) -> _Needles:
    """The search for needles none of which is a UID, a number or a compact date (see
    :func:`_build_needles`)."""
    info: dict[bytes, tuple[Category, str]] = {}
    kinds: dict[bytes, _Kind] = {}
    dates: set[bytes] = set()
    numbers: set[bytes] = set()
    for text, category in items:
        if text.casefold() in skip:
            continue
        kind = _kind(text, category)
        for needle in _encoded(text):
            if needle not in info:
                info[needle] = (category, text)
            if kind is _Kind.DATE and len(needle) == 8 and needle.isdigit():
                dates.add(needle)
            elif kind is _Kind.DIGITS:
                numbers.add(needle)
            else:
                kinds.setdefault(needle, kind)
    pattern, exact, prefix, suffix, groups = _compiled(frozenset(kinds.items()))
    return _Needles(
        pattern,
        frozenset(),
        frozenset(dates),
        frozenset(numbers),
        info,
        exact=exact,
        prefix=prefix,
        suffix=suffix,
        groups=groups,
        kinds=kinds,
    )


def _grown(base: _Needles, items: Iterable[tuple[str, Category]], kept: frozenset[str]) -> _Needles:
    """``base`` with the needles ``items`` added (but those ``kept``): the search
    :func:`_build_needles` would build for both, at the cost of the new ones only (the
    release gate's record of a patient grows a series at a time)."""
    skip = _folded(kept)
    info, kinds = dict(base.info), dict(base.kinds)
    anchors = {"exact": dict(base.exact), "prefix": dict(base.prefix), "suffix": dict(base.suffix)}
    sets: dict[_Kind, set[bytes]] = {_Kind.UID: set(), _Kind.DATE: set(), _Kind.DIGITS: set()}
    unanchored = False
    for text, category in items:
        if text.casefold() in skip:
            continue
        kind = _kind(text, category)
        for needle in _encoded(text):
            if needle not in info:
                info[needle] = (category, text)
            if kind is _Kind.UID or kind is _Kind.DIGITS:
                sets[kind].add(needle)
            elif kind is _Kind.DATE and len(needle) == 8 and needle.isdigit():
                sets[_Kind.DATE].add(needle)
            elif needle not in kinds:
                kinds[needle] = kind
                word = kind is _Kind.WORD
                group = 0 if needle[:1].isdigit() else 1 if word else 2
                anchor = _anchor(needle, group, word)
                if anchor is None:
                    unanchored = True
                    continue
                how, key, at = anchor
                table = anchors[how]
                table[key] = (*table.get(key, ()), _Literal(needle, group, word, at))
    pattern, groups = base.pattern, base.groups
    if unanchored:
        pattern, groups = _unanchored(kinds)
    uids = base.uids | sets[_Kind.UID]
    return replace(
        base,
        pattern=pattern,
        uids=uids,
        dates=base.dates | sets[_Kind.DATE],
        numbers=base.numbers | sets[_Kind.DIGITS],
        info=info,
        exact=anchors["exact"],
        prefix=anchors["prefix"],
        suffix=anchors["suffix"],
        uid_keys=frozenset(max(u.split(b"."), key=len) for u in uids),
        groups=groups,
        kinds=kinds,
    )


_Compiled = tuple[
    "re.Pattern[bytes] | None", "_Anchors", "_Anchors", "_Anchors", Mapping[bytes, int]
]


@lru_cache(maxsize=32)
def _compiled(items: frozenset[tuple[bytes, _Kind]]) -> _Compiled:
    """The anchored and trie parts of a search for these (needle, kind) pairs: the costly
    part of :func:`_build_needles`, the same for the files of one patient (the release gate
    builds a search per file; the UIDs, dates and numbers that differ are sets)."""
    kinds = dict(items)
    anchors: dict[str, dict[bytes, list[_Literal]]] = {"exact": {}, "prefix": {}, "suffix": {}}
    for needle, kind in sorted(kinds.items()):
        word = kind is _Kind.WORD
        group = 0 if needle[:1].isdigit() else 1 if word else 2
        anchor = _anchor(needle, group, word)
        if anchor is not None:
            how, key, at = anchor
            anchors[how].setdefault(key, []).append(_Literal(needle, group, word, at))
    pattern, groups = _unanchored(kinds)
    return (
        pattern,
        {k: tuple(v) for k, v in anchors["exact"].items()},
        {k: tuple(v) for k, v in anchors["prefix"].items()},
        {k: tuple(v) for k, v in anchors["suffix"].items()},
        groups,
    )


def _unanchored(kinds: Mapping[bytes, _Kind]) -> tuple[re.Pattern[bytes] | None, dict[bytes, int]]:
    """The trie regex of the needles no anchor finds (see :func:`_anchor`), and the group
    of each of them."""
    rest: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for needle, kind in sorted(kinds.items()):
        word = kind is _Kind.WORD
        group = 0 if needle[:1].isdigit() else 1 if word else 2
        if _anchor(needle, group, word) is None:
            rest[group].append(needle)
    parts = [
        _trie(rest[group], kinds, guard)
        for group, guard in (
            (0, rb"(?<![0-9.].)"),  # not inside a number or a UID
            (1, rb"(?<![a-z].)"),
            (2, b""),
        )
        if rest[group]
    ]
    # A look-ahead: every offset where one matches, as the anchored needles are found.
    pattern = re.compile(b"(?=(" + b"|".join(parts) + b"))", re.DOTALL) if parts else None
    return pattern, {n: g for g, needles in rest.items() for n in needles}


_UID_TOKEN: Final = re.compile(rb"(?<![0-9.])[0-9]+(?:\.[0-9]+)+")
_DIGIT_RUN: Final = re.compile(rb"(?<![0-9.])[0-9]{6,}")  # _MIN_DIGITS: shorter runs never match
_ESCAPED: Final = tuple(re.escape(bytes([byte])) for byte in range(256))
_TAILS: Final = {_Kind.WORD: rb"(?![a-z])"}  # what may not follow a needle of the trie


def _trie(words: list[bytes], kinds: Mapping[bytes, _Kind], guard: bytes) -> bytes:
    """One regex for many literal needles: a trie, so each position costs a byte compare.

    ``guard`` follows the first byte: a look-behind on the byte before the needle.
    """
    root: dict[int, Any] = {}
    for word in words:
        node = root
        for byte in word:
            node = node.setdefault(byte, {})
        node[-1] = kinds[word]

    def build(node: dict[int, Any], depth: int) -> bytes:
        branches = []
        for byte, child in sorted(node.items(), key=lambda kv: kv[0]):
            if byte < 0:
                continue
            literal = _ESCAPED[byte] + (guard if depth == 0 else b"")
            while len(child) == 1 and -1 not in child:  # a chain: one literal, no recursion
                ((byte, child),) = child.items()
                literal += _ESCAPED[byte]
            branches.append(literal + build(child, depth + 1))
        ending = node.get(-1)
        tail = _TAILS.get(ending, b"") if isinstance(ending, _Kind) else b""
        if not branches:
            return tail
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        if ending is not None:
            return b"(?:" + body + b"|" + tail + b")" if tail else b"(?:" + body + b")?"
        return body

    return build(root, 0)


@lru_cache(maxsize=65536)
def _encoded(text: str) -> tuple[bytes, ...]:
    """A needle's bytes, lower-cased: in UTF-8 and in Latin-1 (once when they agree)."""
    if text.isascii():
        return (text.encode("ascii").lower(),)
    forms: list[bytes] = []
    for encoding in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):
            forms.append(text.encode(encoding).lower())
    return tuple(forms)


def _kind(text: str, category: Category) -> _Kind:
    if category is Category.UID:
        return _Kind.UID
    if category is Category.DATE:
        return _Kind.DATE
    if text.isdigit():
        return _Kind.DIGITS
    if category in (Category.NAME, Category.INSTITUTION, Category.ADDRESS):
        return _Kind.WORD  # words: "HERE" is not in "THERE"
    return _Kind.PLAIN
