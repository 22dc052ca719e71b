#!/usr/bin/env python
"""Memory and throughput of ``dicomveil run`` as the number of files grows (issue 22).

Usage::

    python benchmarks/bench_scale.py [--sizes 10000,100000] [--big] [--workers 0]
                                     [--scratch DIR] [--tree SRC] [--json OUT]

For each size N, N tiny valid CT files (8 x 8 pixels, 100 per patient, a thousand to a
folder; :mod:`tests.support.tiny`, deterministic) are generated once and cached in
``$TMPDIR/dicomveil-bench/tiny-N``; then the ``dicomveil run`` command de-identifies them as
a subprocess (``--workers``, default one per core; ``--progress none``), under GNU ``time -v``.
The table gives, per size: the wall time, files/s, the peak resident memory of the largest
single process (GNU time's maximum, and the largest of every process's VmHWM polled from
/proc every 50 ms), and how long after the start the first output file was in place (polled
every 10 ms). ``--big`` adds N = 1,000,000 (about 1.7 GB of inputs and as much output, and
two million inodes; 20 to 40 minutes on a 2-core machine, most of it generating, running and
removing). The issue-22 bars are printed as notes: peak RSS at 1M <= 150 MB, files/s at the
largest size within 10 % of the smallest's, first output within 2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the builders
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_run's sampler

from bench_run import SUBPROCESS_ENV, TreeSampler, _dicomveil_command, _gnu_time

from dicomveil import Key, write_key
from tests.support import tiny

KEY = Key(bytes(range(32)))  # a fixed, public key: benchmark only
MB = 1_000_000
_MAXRSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def corpus(root: Path, n: int) -> tuple[Path, float]:
    """The cached corpus of ``n`` tiny files (generated when missing or different)."""
    folder = root / f"tiny-{n}"
    manifest = folder / "manifest.json"
    fingerprint = {
        "n": n,
        "template": hashlib.sha256(tiny.template()).hexdigest(),
        "generator": hashlib.sha256(Path(tiny.__file__).read_bytes()).hexdigest(),
    }
    if manifest.exists() and json.loads(manifest.read_text()) == fingerprint:
        return folder / "dicom", 0.0
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    for done in tiny.write_corpus(folder / "dicom", n):
        if done % 100_000 == 0:
            print(f"  generated {done} files", file=sys.stderr, flush=True)
    manifest.write_text(json.dumps(fingerprint))
    return folder / "dicom", time.perf_counter() - started


def _first_file(root: Path) -> bool:
    """Whether any ``.dcm`` file is in place below ``root`` (stops at the first)."""
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith("."):
                            stack.append(Path(entry.path))
                    elif entry.name.endswith(".dcm"):
                        return True
        except OSError:
            continue
    return False


def measure(
    source: Path, n: int, scratch: Path, key_file: Path, workers: int, tree: Path | None = None
) -> dict[str, Any]:
    """One run of the command over ``source`` (from the source tree ``tree``, else the
    installed ``dicomveil``): the row of the table."""
    out, state = scratch / f"out-{n}", scratch / f"state-{n}"
    gnu_time = _gnu_time()
    time_file = scratch / "time.txt"
    command = _dicomveil_command()
    if tree is not None:
        command = ["env", f"PYTHONPATH={tree.resolve() / 'src'}", sys.executable, "-m",
                   "dicomveil"]  # fmt: skip
    argv = [
        *command, "run", "--key", str(key_file), "--workers", str(workers),
        "--progress", "none", "-q", "--state-dir", str(state), str(source), str(out),
    ]  # fmt: skip
    if gnu_time:
        argv = [gnu_time, "-v", "-o", str(time_file), *argv]
    first: list[float] = []
    sampler = TreeSampler()
    sampler.start()
    started = time.perf_counter()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV
    ) as proc:
        if gnu_time:
            sampler.ignored.add(proc.pid)

        def watch() -> None:
            while proc.poll() is None and not first:
                if _first_file(out):
                    first.append(time.perf_counter() - started)
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _stdout, stderr = proc.communicate()
        seconds = time.perf_counter() - started
        watcher.join()
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"dicomveil run exited with {proc.returncode}: {stderr[-2000:]}")
    summary = re.search(r"summary: written (\d+)", stderr)
    written = int(summary.group(1)) if summary else -1
    gnu_kb = None
    if gnu_time and time_file.exists():
        found = _MAXRSS.search(time_file.read_text())
        gnu_kb = int(found.group(1)) if found else None
    polled_kb = max(sampler.peaks_kb.values(), default=0)
    peak_kb = max(gnu_kb or 0, polled_kb)
    started_rm = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    return {
        "files": n,
        "written": written,
        "seconds": seconds,
        "files_per_s": n / seconds,
        "peak_rss_mb": peak_kb * 1024 / MB,
        "processes": len(sampler.peaks_kb),
        "first_output_s": first[0] if first else None,
        "cleanup_s": time.perf_counter() - started_rm,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="file counts, comma-separated")
    parser.add_argument("--big", action="store_true", help="also N = 1,000,000")
    parser.add_argument("--workers", type=int, default=0, help="--workers of the run (0: cores)")
    parser.add_argument("--scratch", type=Path, help="where outputs go (default: temp dir)")
    parser.add_argument("--corpus-root", type=Path, help="where corpora are cached")
    parser.add_argument(
        "--tree",
        type=Path,
        metavar="SRC",
        help="run dicomveil from this source tree (a git worktree), not the installed one",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the rows as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.big and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    root = args.corpus_root or Path(tempfile.gettempdir()) / "dicomveil-bench"
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="dicomveil-scale-", dir=args.scratch))
    rows = []
    try:
        key_file = scratch / "bench.key"
        write_key(key_file, KEY)
        for n in sizes:
            source, generated = corpus(root, n)
            print(f"N={n}: corpus ready (generated in {generated:.0f} s)", file=sys.stderr)
            row = measure(source, n, scratch, key_file, args.workers, args.tree)
            row["generated_s"] = generated
            rows.append(row)
            print(
                f"N={n}: {row['seconds']:.1f} s, {row['files_per_s']:.0f} files/s, peak RSS "
                f"{row['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'files':>9}  {'s':>8}  {'files/s':>8}  {'peak RSS MB':>11}  {'first output s':>14}")
    for row in rows:
        first = row["first_output_s"]
        print(
            f"{row['files']:>9}  {row['seconds']:>8.1f}  {row['files_per_s']:>8.0f}  "
            f"{row['peak_rss_mb']:>11.0f}  {'n/a' if first is None else f'{first:.2f}':>14}"
        )
    small, large = rows[0], rows[-1]
    change = large["files_per_s"] / small["files_per_s"] - 1
    print(
        f"note: files/s at {large['files']} vs {small['files']}: {change:+.1%} "
        "(issue 22: within 10 % at 1M vs 10k)"
    )
    print(
        f"note: largest peak RSS {max(r['peak_rss_mb'] for r in rows):.0f} MB (issue 22: "
        "<= 150 MB at 1M); latest first output "
        f"{max(r['first_output_s'] or 0 for r in rows):.2f} s (issue 22: within 2 s)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["written"] == r["files"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
