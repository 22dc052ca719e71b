#!/usr/bin/env python
"""How long the ``dicomveil`` program takes to start: ``dicomveil --help``, ``dicomveil
version`` and ``dicomveil run`` on one small file, each a fresh process.

Usage::

    python benchmarks/bench_startup.py [--rounds 15] [--baseline SRC] [--json OUT]

Each command runs ``--rounds`` times, the commands (and, with ``--baseline``, the two trees)
alternating; the table gives the median and the fastest wall time of each, and the ratio of
the medians to the baseline's. The program is started as users start it: the ``dicomveil``
script beside this interpreter (else ``python -m dicomveil``); with a baseline tree (a
source tree, e.g. ``git worktree add /tmp/before HEAD~1``), both trees the same way,
``python -m dicomveil`` with ``PYTHONPATH=TREE/src``. The file is one generated CT slice of 64 x 64
(:mod:`tests.support.synthetic`), so the run's time is nearly all start-up. Timings are for
this machine only and are never thresholds in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the data builders

from dicomveil import Key, write_key
from tests.support import synthetic


def _program(baseline: Path | None) -> tuple[list[str], dict[str, str]]:
    """The command that starts the program, and its environment."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline.resolve() / "src")
        return [sys.executable, "-m", "dicomveil"], env
    beside = Path(sys.executable).parent / "dicomveil"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], env
    return [sys.executable, "-m", "dicomveil"], env


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, env=env, timeout=120)
    return time.perf_counter() - started


COMMANDS = {"--help": ["--help"], "version": ["version"], "run, one file": ["run", "-q"]}


def _measure(
    trees: dict[str, Path | None], rounds: int, scratch: Path
) -> dict[tuple[str, str], list[float]]:
    """Wall times per (tree, command), the trees and commands alternating."""
    patient = synthetic.fake_patient(1)
    series = synthetic.ct_series(patient, seed=1, n_slices=1, rows=64, columns=64)
    synthetic.write_series(series, scratch / "in")
    key = scratch / "key"
    write_key(key, Key.generate())
    out = scratch / "out"
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for tree, source in trees.items():
            program, env = _program(source)
            for name, words in COMMANDS.items():
                shutil.rmtree(out, ignore_errors=True)
                if words[0] == "run":
                    words = [*words, "--key", str(key), str(scratch / "in"), str(out)]
                times.setdefault((tree, name), []).append(_time([*program, *words], env))
    return times


def _report(times: dict[tuple[str, str], list[float]], rounds: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    print(f"{'program':10}  {'command':14}  median s  fastest s  vs baseline")
    for (tree, name), values in times.items():
        median = statistics.median(values)
        base = times.get(("baseline", name))
        ratio = ""
        if base and tree != "baseline":
            ratio = f"{median / statistics.median(base):.2f}x"
        print(f"{tree:10}  {name:14}  {median:8.3f}  {min(values):9.3f}  {ratio}")
        rows.append({"tree": tree, "command": name, "median_s": median, "min_s": min(values)})
    print(f"note: {rounds} round(s), commands and trees alternating; wall time per process")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Time the program's start (see the module's docstring).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", type=Path, help="also time the program of this tree")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    trees: dict[str, Path | None] = {"this tree": None}
    if args.baseline is not None:
        trees = {"this tree": Path(__file__).resolve().parents[1], "baseline": args.baseline}
    scratch = Path(tempfile.mkdtemp(prefix="dicomveil-startup-"))
    try:
        rows = _report(_measure(trees, args.rounds, scratch), args.rounds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
