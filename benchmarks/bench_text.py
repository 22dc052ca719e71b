#!/usr/bin/env python
"""Recall and precision of dicomveil's free-text cleaner on the labelled corpus.

Usage::

    python benchmarks/bench_text.py [--misses] [--rounds 20]

The corpus (``tests/data/freetext/corpus.txt``: descriptions, comments, histories, reasons,
SR texts, overlay and presentation-state labels in English, German and French, every
identifying span labelled) is cleaned twice: with what the patient's file knows (as the
engine runs) and with the context-free patterns alone. Printed per run: span recall (a
labelled span counts as found when every non-blank character of it is replaced), recall on
the spans whose value the file holds (the test suite requires 100 %), span precision
(predicted spans that overlap a labelled one), the same at character level, recall per
category, the must-keep strings lost, and the throughput. Numbers are printed, never
asserted: targets belong here, not in the test suite. ``--misses`` also prints each missed
and each false-positive span with its line (the corpus is invented: no real PHI).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dicomveil.cleaners.text import Category, Identifiers, TextCleaner
from tests import freetext_corpus as corpus


def _evaluate(use_dataset: bool, show: bool) -> tuple[corpus.Score, Counter[str], Counter[str]]:
    cleaner = TextCleaner()
    score = corpus.Score()
    per_gold: Counter[str] = Counter()
    per_found: Counter[str] = Counter()
    keep = corpus.must_keep()
    lost = 0
    for case in corpus.load():
        known = Identifiers.from_dataset(case.dataset()) if use_dataset else None
        for line in case.lines:
            spans = cleaner.find(line.text, known)
            score.add(line, spans)
            misses = corpus.missed(line, spans)
            for gold in line.gold:
                per_gold[gold.category.value] += 1
                if gold not in misses:
                    per_found[gold.category.value] += 1
            cleaned = cleaner.clean(line.text, known).text
            for text in keep:
                if text in line.text and text not in cleaned:
                    lost += 1
                    if show:
                        print(f"  lost must-keep {text!r} in line {line.number}")
            if show:
                for gold in misses:
                    flag = "known" if gold.known else "pattern"
                    value = line.text[gold.start : gold.end]
                    print(f"  miss  {flag:7} {gold.category:11} {value!r} (line {line.number})")
                for span in corpus.false_positives(line, spans):
                    value = line.text[span.start : span.end]
                    print(f"  extra {span.category:11} {value!r} (line {line.number})")
    per_found["lost must-keep"] = lost
    return score, per_gold, per_found


def _throughput(rounds: int) -> tuple[float, float]:
    cleaner = TextCleaner()
    work = [
        (Identifiers.from_dataset(case.dataset()), [line.text for line in case.lines])
        for case in corpus.load()
    ]
    size = sum(len(t.encode()) for _, texts in work for t in texts)
    count = sum(len(texts) for _, texts in work)
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        for known, texts in work:
            for text in texts:
                cleaner.clean(text, known)
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    return count / median, size / median / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--misses", action="store_true", help="print misses and extras")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (median shown)")
    args = parser.parse_args()
    cases = corpus.load()
    n_lines = sum(len(c.lines) for c in cases)
    n_gold = sum(len(line.gold) for c in cases for line in c.lines)
    print(f"corpus: {n_lines} lines, {n_gold} labelled spans, {len(cases)} patients")
    for use_dataset, title in ((True, "patterns + what the file knows"), (False, "patterns only")):
        print(f"\n{title}")
        score, gold, found = _evaluate(use_dataset, args.misses)
        print(f"  span recall      {score.recall:6.1%}  ({score.found}/{score.gold})")
        print(
            f"  known recall     {score.known_recall:6.1%}  "
            f"({score.known_found}/{score.known_gold}: values the file holds)"
        )
        print(
            f"  span precision   {score.precision:6.1%}  ({score.true_predicted}/{score.predicted})"
        )
        print(f"  char recall      {score.char_recall:6.1%}")
        print(f"  char precision   {score.char_precision:6.1%}")
        print(
            "  recall by category: "
            + ", ".join(
                f"{c.value} {found[c.value]}/{gold[c.value]}" for c in Category if gold[c.value]
            )
        )
        print(f"  must-keep strings lost: {found['lost must-keep']}")
    lines_per_s, mb_per_s = _throughput(args.rounds)
    print(
        f"\nthroughput: {lines_per_s:,.0f} lines/s, {mb_per_s:.2f} MB/s (median of {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
