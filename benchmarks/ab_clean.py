#!/usr/bin/env python
"""The clean options' cost (issue 15) before and after a change, in one run.

Usage::

    git worktree add /tmp/before <commit>
    python benchmarks/ab_clean.py --baseline /tmp/before [--rounds 4] [--files 2000] [--settle 3]

``bench_run.py``'s ``clean options`` note divides two medians taken minutes apart; on a
virtual machine whose speed drifts by 20-40 % within the hour, two such runs of the same
code differ by more than most changes do. Here every round runs ``dicomveil.run`` (both
cores) on ``bench_run.py``'s corpus four times, each in a fresh subprocess: without and with
the three clean options, for the baseline tree and for this one, alternating. The table gives
each tree's medians of wall and CPU time (the process and its workers) and the ratio of the
clean run to the plain one, per round and of the medians. A figure for this machine, never a
threshold in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import bench_run

HERE = Path(__file__).resolve().parents[1]
CLEAN = ["clean-descriptors", "clean-structured-content", "clean-graphics"]

# One run in a fresh interpreter: prints {"wall": s, "cpu": s} (CPU: user + system of the
# process and of its children, the workers).
_ONE_RUN = """
import datetime as dt, gc, json, os, shutil, sys, tempfile, time
from pathlib import Path
from dicomveil import Key, Profile, RunConfig, run
corpus, options = Path(sys.argv[1]), [o for o in sys.argv[2].split(",") if o]
settle = float(sys.argv[3])
out = Path(tempfile.mkdtemp(prefix="dicomveil-ab-"))
config = RunConfig(profile=Profile.named("ps3.15-basic").with_options(options),
                   key=Key(bytes(32)), output=out / "out", workers=0, today=dt.date(2026, 12, 6))
gc.collect(); os.sync(); time.sleep(settle)
started, before = time.perf_counter(), os.times()
run([corpus], config)
wall, after = time.perf_counter() - started, os.times()
shutil.rmtree(out)
print(json.dumps({"wall": wall, "cpu": sum(after[:4]) - sum(before[:4])}))
"""


def one_run(tree: Path, corpus: Path, options: list[str], settle: float) -> dict[str, float]:
    """Wall and CPU seconds of one ``dicomveil.run`` of ``tree``'s source on ``corpus``,
    ``settle`` seconds after the previous run's outputs were removed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree / "src")
    done = subprocess.run(
        [sys.executable, "-c", _ONE_RUN, str(corpus), ",".join(options), str(settle)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Run the rounds and print the table (exit status 0)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="an earlier source tree")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds before each run (default 3; see bench_run.py --settle)",
    )
    args = parser.parse_args()
    corpus = bench_run.prepare_corpus(
        bench_run.default_corpus_dir(args.files, args.size), args.files, args.size
    )
    bench_run.warm_page_cache(corpus)
    trees = {"baseline": args.baseline.resolve(), "this tree": HERE}
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    for index in range(args.rounds):
        order = list(trees.items()) if index % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            for mode, options in (("plain", []), ("clean", CLEAN)):
                sample = one_run(tree, corpus.dicom, options, args.settle)
                samples.setdefault((name, mode), []).append(sample)
                print(
                    f"  round {index + 1}/{args.rounds}  {name:9s} {mode}  {sample['wall']:.3f} s",
                    file=sys.stderr,
                )
    print(f"corpus: {len(corpus.files)} files at {corpus.root}; {args.rounds} rounds, alternating")
    print(
        f"{'tree':10s} {'plain s':>8s} {'clean s':>8s} {'ratio':>6s} {'CPU ratio':>9s}  per round"
    )
    for name in trees:
        plain, clean = samples[(name, "plain")], samples[(name, "clean")]
        wall_plain = statistics.median(s["wall"] for s in plain)
        wall_clean = statistics.median(s["wall"] for s in clean)
        cpu_ratio = statistics.median(s["cpu"] for s in clean) / statistics.median(
            s["cpu"] for s in plain
        )
        rounds = " ".join(f"{c['wall'] / p['wall']:.2f}" for p, c in zip(plain, clean, strict=True))
        print(
            f"{name:10s} {wall_plain:8.3f} {wall_clean:8.3f} {wall_clean / wall_plain:6.2f}"
            f" {cpu_ratio:9.2f}  {rounds}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
