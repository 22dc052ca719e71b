"""The labelled free-text corpus (``tests/data/freetext/``): parsing and scoring.

Used by ``tests/test_cleaning.py`` (recall on what the file knows must be 100 %) and by
``benchmarks/bench_text.py`` (overall recall and precision, printed). The format is
described at the top of ``corpus.txt``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.cleaners.text import Category, Span

FOLDER = Path(__file__).resolve().parent / "data" / "freetext"
CORPUS = FOLDER / "corpus.txt"
MUST_KEEP = FOLDER / "must-keep.txt"

_LABEL = re.compile(r"\[\[([A-Za-z]+):(.*?)\]\]")


@dataclass(frozen=True)
class Gold:
    """One labelled identifying span of a corpus line."""

    start: int
    end: int
    category: Category
    known: bool  # the patient's file holds the value (upper-case label)


@dataclass(frozen=True)
class Line:
    case: str
    kind: str
    text: str
    gold: tuple[Gold, ...]
    number: int  # line number in corpus.txt


@dataclass
class Case:
    name: str
    attributes: list[tuple[str, str]] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    # The patient's other files (``@file`` blocks of the independent corpus): their
    # attributes, as ``attributes`` has the first file's.
    others: list[list[tuple[str, str]]] = field(default_factory=list)

    def dataset(self) -> Dataset:
        """The patient's (first) file: the case's attributes in a real pydicom dataset."""
        return _dataset(self.attributes)

    def datasets(self) -> list[Dataset]:
        """Every file of the patient, the first first."""
        return [self.dataset(), *(_dataset(a) for a in self.others)]


def _dataset(attributes: list[tuple[str, str]]) -> Dataset:
    """Attributes ("Keyword = value", "Sequence>Keyword = value") in a real pydicom dataset."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    with warnings.catch_warnings():  # values longer than their VR allows, as in real files
        warnings.simplefilter("ignore")
        _set(ds, attributes)
    return ds


def _set(ds: Dataset, attributes: list[tuple[str, str]]) -> None:
    for keyword, value in attributes:
        if ">" in keyword:
            sequence, inner = keyword.split(">", 1)
            item = Dataset()
            setattr(item, inner, value)
            existing = ds.get(sequence)
            items = list(existing) if existing is not None else []
            setattr(ds, sequence, Sequence([*items, item]))
        else:
            setattr(ds, keyword, value.split("\\") if "\\" in value else value)


def parse_line(raw: str) -> tuple[str, tuple[Gold, ...]]:
    """Text without markup, and the labelled spans in it."""
    text = ""
    gold: list[Gold] = []
    last = 0
    for m in _LABEL.finditer(raw):
        text += raw[last : m.start()]
        label, value = m[1], m[2]
        start = len(text)
        text += value
        gold.append(Gold(start, len(text), Category(label.lower()), label.isupper()))
        last = m.end()
    text += raw[last:]
    if "[[" in text or "]]" in text:
        raise ValueError(f"unbalanced label in {raw!r}")
    return text, tuple(gold)


def load(path: Path = CORPUS) -> list[Case]:
    cases: list[Case] = []
    in_text = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.startswith("@case "):
            cases.append(Case(raw.split(None, 1)[1].strip()))
            in_text = False
            continue
        if raw.strip() == "@text":
            in_text = True
            continue
        case = cases[-1]
        if raw.strip() == "@file":
            case.others.append([])
            continue
        if not in_text:
            keyword, _, value = raw.partition("=")
            target = case.others[-1] if case.others else case.attributes
            target.append((keyword.strip(), value.strip()))
            continue
        kind, _, body = raw.partition("\t")
        text, gold = parse_line(body)
        case.lines.append(Line(case.name, kind, text, gold, number))
    return cases


def must_keep(path: Path = MUST_KEEP) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


# --------------------------------------------------------------------------------------------
# Scoring


def _covered(text: str, start: int, end: int, spans: Iterable[Span]) -> bool:
    """Every non-blank character of text[start:end] lies in a predicted span."""
    inside: set[int] = set()
    for s in spans:
        inside.update(range(s.start, s.end))
    return all(i in inside for i in range(start, end) if not text[i].isspace())


def missed(line: Line, spans: list[Span], *, known_only: bool = False) -> list[Gold]:
    """The gold spans the prediction does not cover."""
    return [
        g
        for g in line.gold
        if (g.known or not known_only) and not _covered(line.text, g.start, g.end, spans)
    ]


def false_positives(line: Line, spans: list[Span]) -> list[Span]:
    """Predicted spans that overlap no gold span."""
    return [s for s in spans if not any(s.start < g.end and g.start < s.end for g in line.gold)]


@dataclass
class Score:
    gold: int = 0
    found: int = 0
    known_gold: int = 0
    known_found: int = 0
    predicted: int = 0
    true_predicted: int = 0
    gold_chars: int = 0
    found_chars: int = 0
    predicted_chars: int = 0
    true_chars: int = 0

    def add(self, line: Line, spans: list[Span]) -> None:
        gold_chars = {
            i for g in line.gold for i in range(g.start, g.end) if not line.text[i].isspace()
        }
        predicted_chars = {
            i for s in spans for i in range(s.start, s.end) if not line.text[i].isspace()
        }
        self.gold_chars += len(gold_chars)
        self.predicted_chars += len(predicted_chars)
        self.true_chars += len(gold_chars & predicted_chars)
        self.found_chars += len(gold_chars & predicted_chars)
        misses = missed(line, spans)
        self.gold += len(line.gold)
        self.found += len(line.gold) - len(misses)
        known = [g for g in line.gold if g.known]
        self.known_gold += len(known)
        self.known_found += len(known) - len([g for g in misses if g.known])
        fps = false_positives(line, spans)
        self.predicted += len(spans)
        self.true_predicted += len(spans) - len(fps)

    @staticmethod
    def ratio(a: int, b: int) -> float:
        return a / b if b else 1.0

    @property
    def recall(self) -> float:
        return self.ratio(self.found, self.gold)

    @property
    def known_recall(self) -> float:
        return self.ratio(self.known_found, self.known_gold)

    @property
    def precision(self) -> float:
        return self.ratio(self.true_predicted, self.predicted)

    @property
    def char_recall(self) -> float:
        return self.ratio(self.found_chars, self.gold_chars)

    @property
    def char_precision(self) -> float:
        return self.ratio(self.true_chars, self.predicted_chars)


def lines(cases: Iterable[Case]) -> Iterator[tuple[Case, Line]]:
    for case in cases:
        for line in case.lines:
            yield case, line
