"""Person names that no file holds, found by their cues: after a title ("Dr. X",
"Prof. Dr. med. X", "Herr/Frau X", "M./Mme X") or a label ("Referring: X"), after "by"
("seen by X Y"), before a degree ("X Y, MD"), and DICOM person names ("SMITH^JOHN").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dicomveil.cleaners.text.patterns import _Patterns
from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.vocabulary import _Vocabulary, fold


def _name_spans(text: str, p: _Patterns, vocab: _Vocabulary) -> Iterator[Span]:
    for m in p.titles.finditer(text):
        title = m.group()
        core = fold(title.rstrip("."))
        dotted = title.endswith(".")
        if not dotted and title.isupper() and core in vocab.ambiguous_caps_titles:
            continue  # MR (resonance), MS (sclerosis), PR: titles only as "MR." or "Mr"
        if core in ("m", "fr", "hr") and not dotted:
            continue
        if core == "m" and title[0] != "M":
            continue
        found = _name_after(text, m.end(), vocab, p, need=1, limit=3)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.labels.finditer(text):
        found = _name_after(text, m.end(), vocab, p, need=1, limit=3, comma=True)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.by.finditer(text):
        found = _name_after(text, m.end(), vocab, p, need=2, limit=3, degrees=False)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.suffix.finditer(text):
        found = _name_before(text, m.start(), vocab)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.caret.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".-'\u2019":
            end -= 1
        parts = [fold(c) for c in re.split(r"[\^\s]+", text[m.start() : end]) if c]
        if any(c in vocab.not_names for c in parts):
            continue  # "Kopf^Routine", "NEURO^ROUTINE": a vendor's procedure, not a person
        yield Span(m.start(), end, Category.NAME, Basis.PATTERN)


_INITIAL = re.compile(r"[A-ZÀ-ÖØ-Þ]\.(?:-?[A-ZÀ-ÖØ-Þ]\.)*")
_NAME_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['\u2019\-](?=[^\W\d_]))*")
_POSSESSIVE = re.compile(r"['\u2019]s$")


def _is_name_word(word: str, vocab: _Vocabulary) -> bool:
    if len(word) < 2 or not word[0].isupper() or not _NAME_WORD.fullmatch(word):
        return False
    folded = fold(word)
    return (
        folded not in vocab.not_names
        and folded not in vocab.months
        and folded not in vocab.degrees
        and folded not in vocab.units
    )


def _name_after(
    text: str,
    pos: int,
    vocab: _Vocabulary,
    p: _Patterns,
    *,
    need: int,
    limit: int,
    comma: bool = False,
    degrees: bool = True,
) -> tuple[int, int] | None:
    """The person name starting at ``pos`` (after a title or label), if there is one.

    Skips further titles and degrees ("Prof. Dr. med."), takes initials ("J.", "J.-P."),
    particles ("van der", "de la") and up to ``limit`` capitalised name words; with
    ``comma`` one comma may follow the first word ("Smith, John").
    """
    start: int | None = None
    end = pos
    words = 0
    i = pos
    pending: int | None = None  # start of initials/particles waiting for a name word
    while words < limit:
        j = i
        while j < len(text) and text[j] in " \t":
            j += 1
        if comma and words == 1 and j < len(text) and text[j] == ",":
            j += 1
            while j < len(text) and text[j] in " \t":
                j += 1
            comma = False
        m = p.token.match(text, j)
        if m is None or (j == i and i != pos):
            break
        token = m.group()
        core = _POSSESSIVE.sub("", token).rstrip(".")
        folded = fold(core)
        if (
            start is None
            and pending is None
            and degrees
            and (folded in vocab.degrees or folded in vocab.titles)
        ):
            i = m.end()
            continue
        if _INITIAL.fullmatch(token) or (len(token) == 1 and token.isupper() and token.isalpha()):
            pending = j if pending is None else pending
            i = m.end()
            continue
        if folded in vocab.particles and core.islower():
            pending = j if pending is None else pending
            i = m.end()
            continue
        if _is_name_word(core, vocab):
            if start is None:
                start = pending if pending is not None else j
            pending = None
            end = j + len(core)
            words += 1
            i = j + len(core)
            if len(token) > len(core) and not token[len(core) :].startswith("."):
                break  # "Smith's": the name ends here
            if token.endswith(".") and len(core) > 1 and token[len(core) :] == ".":
                break  # end of a sentence
            continue
        break
    if start is None or words < need:
        return None
    return start, end


def _name_before(text: str, pos: int, vocab: _Vocabulary) -> tuple[int, int] | None:
    """One to three name words (and initials) right before ``pos`` ("John A. Smith, MD")."""
    start: int | None = None
    i = pos
    words = 0
    for _ in range(4):
        m = re.search(r"(\S+)\s*$", text[:i])
        if m is None:
            break
        token = m[1]
        core = token.rstrip(",.")
        if _INITIAL.fullmatch(token) and words:
            start, i = m.start(1), m.start(1)
            continue
        if not _is_name_word(core, vocab):
            break
        start, i = m.start(1), m.start(1)
        words += 1
        if words == 3:
            break
    if start is None or words == 0:
        return None
    end = pos
    while end > start and text[end - 1] in " ,":
        end -= 1
    return start, end
