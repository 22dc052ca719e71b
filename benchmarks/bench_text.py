#!/usr/bin/env python
"""Recall and precision of dicomveil's free-text cleaner on the labelled corpora.

Usage::

    python benchmarks/bench_text.py [--misses] [--heldout-misses] [--tune] [--no-dictionary]
                                    [--rounds 20]

Two corpora, each in the format described at the top of ``tests/data/freetext/corpus.txt``
(descriptions, comments, histories, reasons, SR texts, overlay and presentation-state labels
in English, German and French, every identifying span labelled):

- **own**: ``tests/data/freetext/``, written beside the cleaner;
- **independent**: ``tests/data/freetext-independent/``, written by a session that never saw
  the cleaner's code, split in two: ``tune.txt`` (what the cleaner may be tuned on, shown
  with ``--tune``, as are ``tune2.txt`` and ``tune3.txt``, tune sets later sessions of the same
  kind wrote) and ``heldout.txt`` (the figures the README reports). Its patients may
  have several files (``@file``): what any of them holds is "known".

Each is cleaned with what the patient's files know (as a run does, the patient's values
pooled) and with the context-free recognizers alone. Printed: span recall; recall on the
spans whose value a file holds ("known", required to be 100 %); recall on the spans nothing
in the files mentions ("context-free"); span precision; recall per category; the must-keep
phrases kept (each occurrence in a line that holds it); the throughput.
``--no-dictionary`` turns the name dictionary off (the figures before it). Numbers are
printed, never asserted: targets belong here, not in the test suite. ``--misses`` also
prints each missed and each false-positive span with its line (all data is invented), of
every set but the held-out half: those only with ``--heldout-misses`` (what the README
lists; whoever tunes the cleaner must not look at them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dicomveil.cleaners.text import Category, Identifiers, Replacements, TextCleaner
from dicomveil.cleaners.text.cleaner import _cleaned, _context_free
from tests import freetext_corpus as corpus

INDEPENDENT = corpus.FOLDER.parent / "freetext-independent"


def _known(case: corpus.Case, places: frozenset[str] = frozenset()) -> Identifiers:
    """What the patient's files hold, pooled, and the institution names of every patient
    (``places``): what a run's first pass knows (``dicomveil.runs.knowledge``)."""
    known = Identifiers(institutions=places)
    for ds in case.datasets():
        known = known.union(Identifiers.from_dataset(ds))
    return known


def _places(cases: list[corpus.Case]) -> frozenset[str]:
    """The institution, department and station names of every patient of a corpus."""
    return frozenset(
        name
        for c in cases
        for ds in c.datasets()
        for name in Identifiers.from_dataset(ds).institutions
    )


def _evaluate(
    cleaner: TextCleaner,
    cases: list[corpus.Case],
    keep: list[str],
    use_dataset: bool,
    show: bool,
) -> tuple[corpus.Score, Counter[str], Counter[str]]:
    score = corpus.Score()
    per_gold: Counter[str] = Counter()
    per_found: Counter[str] = Counter()
    places = _places(cases)
    for case in cases:
        known = _known(case, places) if use_dataset else None
        for line in case.lines:
            spans = cleaner.find(line.text, known)
            score.add(line, spans)
            misses = corpus.missed(line, spans)
            for gold in line.gold:
                kind = "known" if gold.known else "context-free"
                per_gold[gold.category.value] += 1
                per_gold[kind] += 1
                if gold not in misses:
                    per_found[gold.category.value] += 1
                    per_found[kind] += 1
            cleaned = cleaner.clean(line.text, known).text
            for text in keep:
                if text in line.text:
                    per_gold["must-keep"] += 1
                    if text in cleaned:
                        per_found["must-keep"] += 1
                    elif show:
                        print(f"  lost must-keep {text!r} in line {line.number}")
            if show:
                for gold in misses:
                    flag = "known" if gold.known else "free"
                    value = line.text[gold.start : gold.end]
                    print(f"  miss  {flag:7} {gold.category:11} {value!r} (line {line.number})")
                for span in corpus.false_positives(line, spans):
                    value = line.text[span.start : span.end]
                    print(f"  extra {span.category:11} {value!r} (line {line.number})")
    return score, per_gold, per_found


def _throughput(cleaner: TextCleaner, cases: list[corpus.Case], rounds: int) -> tuple[float, float]:
    work = [(_known(case), [line.text for line in case.lines]) for case in cases]
    size = sum(len(t.encode()) for _, texts in work for t in texts)
    count = sum(len(texts) for _, texts in work)
    timings = []
    for _ in range(rounds):
        _cleaned.cache_clear()  # each round cleans every text anew
        _context_free.cache_clear()
        start = time.perf_counter()
        for known, texts in work:
            for text in texts:
                cleaner.clean(text, known)
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    return count / median, size / median / 1e6


def _ratio(found: int, total: int) -> str:
    return f"{found / total:6.1%}  ({found}/{total})" if total else "     -  (0/0)"


def _report(
    title: str, cleaner: TextCleaner, cases: list[corpus.Case], keep: list[str], show: bool
) -> None:
    n_lines = sum(len(c.lines) for c in cases)
    n_gold = sum(len(line.gold) for c in cases for line in c.lines)
    files = sum(len(c.datasets()) for c in cases)
    print(f"\n== {title}: {n_lines} lines, {n_gold} labelled spans, {len(cases)} patients "
          f"({files} files), {len(keep)} must-keep phrases")  # fmt: skip
    for use_dataset, label in ((True, "patterns + what the files know"), (False, "patterns only")):
        print(f"\n{label}")
        score, gold, found = _evaluate(cleaner, cases, keep, use_dataset, show)
        print(f"  span recall          {_ratio(score.found, score.gold)}")
        print(f"  known recall         {_ratio(found['known'], gold['known'])}")
        print(f"  context-free recall  {_ratio(found['context-free'], gold['context-free'])}")
        print(f"  span precision       {_ratio(score.true_predicted, score.predicted)}")
        print(f"  char recall          {score.char_recall:6.1%}")
        print(f"  char precision       {score.char_precision:6.1%}")
        print(
            "  recall by category: "
            + ", ".join(
                f"{c.value} {found[c.value]}/{gold[c.value]}" for c in Category if gold[c.value]
            )
        )
        print(f"  must-keep kept       {_ratio(found['must-keep'], gold['must-keep'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--misses", action="store_true", help="print misses and extras (not of the held-out half)"
    )
    parser.add_argument(
        "--heldout-misses",
        action="store_true",
        help="print the held-out half's misses too (for the README; never to tune on)",
    )
    parser.add_argument("--tune", action="store_true", help="also the independent tune half")
    parser.add_argument(
        "--no-dictionary", action="store_true", help="the name dictionary off (the baseline)"
    )
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (median shown)")
    args = parser.parse_args()
    cleaner = TextCleaner(Replacements(name_dictionary=not args.no_dictionary))
    sets = [("own corpus", corpus.CORPUS, corpus.MUST_KEEP)]
    if args.tune:
        sets.append(("independent, tune half", INDEPENDENT / "tune.txt",
                     INDEPENDENT / "must-keep-tune.txt"))  # fmt: skip
        sets.append(("independent, second tune set", INDEPENDENT / "tune2.txt",
                     INDEPENDENT / "must-keep-tune2.txt"))  # fmt: skip
        sets.append(("independent, third tune set", INDEPENDENT / "tune3.txt",
                     INDEPENDENT / "must-keep-tune3.txt"))  # fmt: skip
    sets.append(("independent, held-out half", INDEPENDENT / "heldout.txt",
                 INDEPENDENT / "must-keep-heldout.txt"))  # fmt: skip
    for title, path, keep in sets:
        if not path.is_file():
            print(f"\n== {title}: {path} is missing")
            continue
        show = args.heldout_misses if path.name == "heldout.txt" else args.misses
        _report(title, cleaner, corpus.load(path), corpus.must_keep(keep), show)
    lines_per_s, mb_per_s = _throughput(cleaner, corpus.load(), args.rounds)
    print(
        f"\nthroughput (own corpus): {lines_per_s:,.0f} lines/s, {mb_per_s:.2f} MB/s "
        f"(median of {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
