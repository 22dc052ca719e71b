#!/usr/bin/env python
"""How long ``dicomveil risk`` takes on a release of many files (issue 19: 100,000 files'
headers in under a minute).

Usage::

    python benchmarks/bench_risk.py [--files 100000] [--workers 0] [--rounds 3]

The release is the cached tiny corpus of ``bench_scale.py`` (:mod:`tests.support.tiny`: CT
files of 8 x 8 pixels, 100 per patient; the headers are what is read). Each round times
:func:`dicomveil.qc.risk.read_release` and :func:`~dicomveil.qc.risk.assess` in this process
(its pool of ``--workers``), and the ``dicomveil risk`` command as a subprocess (start-up
included). The medians are printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import SUBPROCESS_ENV, _dicomveil_command
from bench_scale import corpus

from dicomveil.qc.risk import assess, read_release


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    root = Path(tempfile.gettempdir()) / "dicomveil-bench"
    root.mkdir(parents=True, exist_ok=True)
    source, generated = corpus(root, args.files)
    print(f"release: {args.files} files (generated in {generated:.0f} s)", file=sys.stderr)
    library, command = [], []
    for r in range(args.rounds):
        started = time.perf_counter()
        report = assess(read_release(source, workers=args.workers))
        library.append(time.perf_counter() - started)
        started = time.perf_counter()
        done = subprocess.run(
            [*_dicomveil_command(), "risk", str(source), "--workers", str(args.workers)],
            capture_output=True, text=True, env=SUBPROCESS_ENV, check=False,
        )  # fmt: skip
        command.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise SystemExit(f"dicomveil risk failed: {done.stderr[-2000:]}")
        print(f"  round {r + 1}: library {library[-1]:.1f} s, command {command[-1]:.1f} s",
              file=sys.stderr)  # fmt: skip
    print(
        f"{report.files} files, {report.subjects} subjects, k = {report.k}: "
        f"library median {statistics.median(library):.1f} s, command median "
        f"{statistics.median(command):.1f} s (issue 19: under 60 s for 100,000 files)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
