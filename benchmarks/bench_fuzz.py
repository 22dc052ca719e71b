"""The large black-box fuzz campaign: ``tests/fuzz.py``'s cases through ``dicomveil run``.

Not a timing: a table per defect class (cases, passed, failed, skipped, failures by problem
kind, the typical problems and outcomes), the failing cases, and with ``--json`` every verdict.
The planted name and ID never appear in what it prints or writes. Exit status 1 when a case
fails. See benchmarks/README.md, *Fuzz campaign*.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fuzz

from tests.fuzz import CLASSES, Judge, failure_table, make_cases, seeds, summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="number of cases (10000)")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (1)")
    parser.add_argument("--batch-size", type=int, default=100, help="cases per run (100)")
    parser.add_argument("--workers", type=int, default=2, help="dicomveil run --workers (2)")
    parser.add_argument("--jobs", type=int, default=2, help="dicomveil runs at a time (2)")
    parser.add_argument(
        "--bisect-limit", type=int, default=None, help="at most N halvings (no limit)"
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per run, plus...")
    parser.add_argument("--per-case-timeout", type=float, default=0.3, help="...per case (0.3)")
    parser.add_argument("--special-timeout", type=float, default=15.0, help="FIFO etc. runs (15)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the inputs and outputs")
    parser.add_argument("--json", type=Path, default=None, help="write every verdict here")
    parser.add_argument("--show", type=int, default=60, help="rows of the failure table (60)")
    args = parser.parse_args(argv)

    if not seeds():
        print("no seed files: pydicom's test files are missing", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="dicomveil-fuzz-"))
    judge = Judge(
        work,
        batch_size=args.batch_size,
        workers=args.workers,
        jobs=args.jobs,
        timeout=args.timeout,
        per_case_timeout=args.per_case_timeout,
        special_timeout=args.special_timeout,
        bisect_limit=args.bisect_limit,
        keep=args.keep,
    )
    cases = make_cases(args.cases, args.seed)
    print(
        f"{len(cases)} cases, seed {args.seed}, seeds: "
        + ", ".join(f"{s.name}={s.source}" for s in seeds()),
        file=sys.stderr,
    )
    last = [0.0]

    def progress(message: str) -> None:
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            print(message, file=sys.stderr)

    start = time.monotonic()
    try:
        verdicts = judge.judge(cases, progress)
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - start
    table = summarize(verdicts)

    print(
        f"\n{len(cases)} cases in {seconds:.0f} s: {judge.runs} runs, {judge.bisections} halvings"
    )
    print("\n| class | cases | passed | failed | skipped | failures by kind |")
    print("|---|---:|---:|---:|---:|---|")
    for cls, row in table.items():
        kinds = ", ".join(f"{k} {n}" for k, n in row["by_kind"].items()) or "-"
        print(
            f"| {cls} | {row['cases']} | {row['passed']} | {row['failed']} | {row['skipped']} "
            f"| {kinds} |"
        )
    print("\nTypical problems per class:")
    for cls, row in table.items():
        for detail in row["typical"]:
            print(f"  {cls}: {detail[:160]}")
    print("\nOutcomes per class (what dicomveil said, all cases):")
    for cls in CLASSES:
        outcomes = Counter(
            o.split(":")[0] for v in verdicts if v.case.cls == cls for o in v.outcomes
        )
        print(f"  {cls}: " + (", ".join(f"{k} {n}" for k, n in outcomes.most_common()) or "-"))
    if judge.findings:
        print("\nFound in runs, no single input to blame:")
        for what, n in judge.findings.most_common():
            print(f"  {what} ({n} runs)")
    skipped = sorted({f"{v.case.cls}/{v.case.kind}: {v.skipped}" for v in verdicts if v.skipped})
    for line in skipped:
        print(f"not run: {line}")
    if any(v.problems for v in verdicts):
        print("\n" + failure_table(verdicts, limit=args.show))

    if args.json:
        report = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "seeds": {s.name: s.source for s in seeds()},
            "seconds": round(seconds, 1),
            "runs": judge.runs,
            "halvings": judge.bisections,
            "classes": table,
            "findings": dict(judge.findings),
            "verdicts": [v.as_json() for v in verdicts],
        }
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 1 if any(v.problems for v in verdicts) or judge.findings else 0


if __name__ == "__main__":
    sys.exit(main())
