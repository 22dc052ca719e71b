"""The real-data matrix as a table: every real file under every profile and option set.

Runs the cases of ``tests/matrix.py`` (the same ones ``tests/test_real_matrix.py`` checks:
each file de-identified alone with the real ``dicomveil.run``, judged against facts about
the file, verified by ``dicomveil verify`` and ``dciodvfy``) and prints, per profile, how
many files were written, withheld (by reason), failed and skipped, how many cases had a
problem, and for the presets that reproduce another tool's list, how many written files
still hold an identifying value of the original in an element the list keeps ("kept
leaks": verify's leak findings, which those lists allow by their definition).
``--markdown FILE`` also writes the table as Markdown (the README's summary).

Needs the ``test`` extra and ``python tools/fetch_test_data.py``::

    python benchmarks/bench_matrix.py [--workers 2] [--config NAME ...] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.matrix import CONFIGS, LIST_PRESETS, CaseResult, run_case, sampled  # noqa: E402
from tests.realdata import missing_sources, real_files  # noqa: E402

_KINDS = (
    ("BurnedInAnnotation (0028,0301) is YES", "burned-in YES"),
    ("burned-in text not ruled out", "burned-in possible"),
    ("ContentSequence (0040,A730)", "SR tree"),
    ("RecognizableVisualFeatures", "face"),
    ("encapsulated document", "document"),
    ("clean-pixel-data:", "pixels not redactable"),
)


def kind(reason: str) -> str:
    """A withhold reason's kind, for the table."""
    for words, label in _KINDS:
        if words in reason:
            return label
    return re.sub(r"[^a-z ]", "", reason.lower())[:30] or "other"


def _one(args: tuple[int, int]) -> tuple[int, int, CaseResult]:
    c, f = args
    return c, f, run_case(CONFIGS[c], real_files()[f])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", action="append", help="only these configurations")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    args = parser.parse_args(argv)
    missing = missing_sources()
    if missing:
        print("missing test data: " + "; ".join(missing), file=sys.stderr)
    files = real_files()
    todo = [
        (c, f)
        for c, config in enumerate(CONFIGS)
        if not args.config or config.name in args.config
        for f, file in enumerate(files)
        if sampled(config, file)
    ]
    started = time.perf_counter()
    results: dict[int, list[tuple[int, CaseResult]]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for c, f, result in pool.map(_one, todo, chunksize=4):
            results.setdefault(c, []).append((f, result))
    elapsed = time.perf_counter() - started
    header = (
        "profile", "files", "written", "withheld", "failed", "skipped", "problems",
        "kept leaks",
    )  # fmt: skip
    rows = []
    problems: list[str] = []
    for c, config in enumerate(CONFIGS):
        if c not in results:
            continue
        outcomes = Counter(r.outcome for _, r in results[c])
        kinds = Counter(kind(r.reason) for _, r in results[c] if r.outcome == "withheld")
        withheld = f"{outcomes['withheld']}" + (
            " (" + ", ".join(f"{n} {k}" for k, n in kinds.most_common()) + ")" if kinds else ""
        )
        bad = [(f, r) for f, r in results[c] if r.problems]
        for f, r in bad:
            problems.extend(f"{config.name} {files[f].name}: {p}" for p in r.problems)
        leaky = sum(1 for _, r in results[c] if r.kept_leaks)
        rows.append(
            (config.name, str(len(results[c])), str(outcomes["written"]), withheld,
             str(outcomes["failed"]), str(outcomes["skipped"]), str(len(bad)),
             f"{leaky} files" if config.profile in LIST_PRESETS else "-")
        )  # fmt: skip
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"\n{len(todo)} cases on {len(files)} real files in {elapsed:.0f} s "
          f"with {args.workers} processes")  # fmt: skip
    for line in problems:
        print("problem:", line)
    if args.markdown is not None:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        args.markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
