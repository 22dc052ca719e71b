#!/usr/bin/env python
"""The independent free-text corpus scored with any version of dicomveil's cleaner, through
the API every version has (``TextCleaner().find``/``clean``, ``Identifiers.from_dataset``):
the "before" column of the README's free-text table.

Usage (a checkout of the older version in /tmp/base, this one's corpus and loader)::

    git worktree add /tmp/base 7ce8a4d
    PYTHONPATH=/tmp/base/src python benchmarks/text_baseline.py tune heldout
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the corpus loader

import dicomveil
from dicomveil.cleaners.text import Identifiers, TextCleaner
from tests import freetext_corpus as corpus

FOLDER = Path(__file__).resolve().parents[1] / "tests" / "data" / "freetext-independent"


def _union(a: Identifiers, b: Identifiers) -> Identifiers:
    fields = dataclasses.fields(Identifiers)
    return Identifiers(*(getattr(a, f.name) | getattr(b, f.name) for f in fields))


def main(halves: list[str]) -> int:
    warnings.simplefilter("ignore")
    print(f"dicomveil from {dicomveil.__file__}")
    for half in halves:
        cases = corpus.load(FOLDER / f"{half}.txt")
        keep = corpus.must_keep(FOLDER / f"must-keep-{half}.txt")
        cleaner, score = TextCleaner(), corpus.Score()
        gold: Counter[str] = Counter()
        found: Counter[str] = Counter()
        for case in cases:
            known = Identifiers()
            for ds in case.datasets():  # the patient's files pooled, as a run pools them now
                known = _union(known, Identifiers.from_dataset(ds))
            for line in case.lines:
                spans = cleaner.find(line.text, known)
                score.add(line, spans)
                misses = corpus.missed(line, spans)
                for g in line.gold:
                    kind = "known" if g.known else "context-free"
                    gold[kind] += 1
                    found[kind] += g not in misses
                cleaned = cleaner.clean(line.text, known).text
                for text in keep:
                    if text in line.text:
                        gold["must-keep"] += 1
                        found["must-keep"] += text in cleaned
        figures = ", ".join(f"{k} {found[k] / gold[k]:.1%} ({found[k]}/{gold[k]})" for k in gold)
        print(f"{half}: {figures}, span precision {score.precision:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["heldout"]))
