#!/usr/bin/env python
"""Peak memory of ``dicomveil run`` next to plain pydicom and ``cp``, on big files.

Usage::

    python benchmarks/bench_memory.py [--sizes 10,100,1000] [--scratch DIR] [--json OUT]

For each size (in MB) one multi-frame CT (512 x 512 x 16-bit frames, a 40 KB private
element in its header) is written in a stream (the header by pydicom, then the pixel data
in chunks), and each contender de-identifies or
copies it once, as a subprocess started by a small launcher, so that the peak resident set
size (``ru_maxrss``) is the contender's own and not inherited from this process:

* ``cp``: the floor;
* ``pydicom read+write``: ``dcmread`` then ``dcmwrite``, which holds the pixel data in memory;
* ``dicomveil run``: plain paths (streams the pixel data in 1 MiB chunks);
* ``dicomveil run --verify``: with the release gate, which reads the input's and the
  output's headers (longer than the 64 KiB read first, here) but not their pixel data;
* ``dicomveil run, then verify --against``: the run, then ``dicomveil verify`` of its output
  against the input, matched by a digest of the pixel data hashed as it is read;
* ``dicomveil run file://``: the cluster path (:mod:`dicomveil.runs.cluster`): the input streamed
  into a temporary file, de-identified, the output staged and streamed to its location.

``import only`` is the interpreter with ``dicomveil.cli`` imported: the part of every
dicomveil figure that does not depend on the file. A size is skipped, saying why, when the
scratch folder has less than five times its size free. Files are removed afterwards.
Numbers, not thresholds: the test suite checks only that a 1.1 GB file stays under 150 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pydicom import dcmwrite

import dicomveil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the data builders

from dicomveil import Key, write_key
from tests.support import synthetic

KEY = Key(bytes(range(32)))  # a fixed, public key: benchmark only
FRAME_BYTES = 512 * 512 * 2
MB = 1_000_000
CHUNK = 4 << 20

LAUNCHER = textwrap.dedent(
    """
    import resource, subprocess, sys, time
    started = time.perf_counter()
    code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, seconds)
    """
)
CLI = [sys.executable, "-m", "dicomveil"]
PYDICOM = (
    "import sys, pydicom; ds = pydicom.dcmread(sys.argv[1]); "
    "pydicom.dcmwrite(sys.argv[2], ds, enforce_file_format=True)"
)


class BenchError(Exception):
    """A contender failed: the numbers would be meaningless."""


@dataclass(frozen=True)
class Row:
    size_mb: int
    contender: str
    peak_rss_mb: float
    seconds: float


def write_multiframe(path: Path, size_mb: int, *, long_header: bool = False) -> int:
    """A CT of about ``size_mb`` MB: header by pydicom, pixel data streamed. Returns frames.
    With ``long_header``, a 200 KB private element makes the header longer than the 64 KiB
    that readers read first (as a Siemens CSA header or an enhanced object's functional
    groups do)."""
    frames = max(1, math.ceil(size_mb * MB / FRAME_BYTES))
    (ds,) = synthetic.ct_series(synthetic.fake_patient(7), seed=7, n_slices=1, rows=8, columns=8)
    for tag in [t for t in ds.keys() if t >= 0x7FE00010]:
        del ds[tag]
    if long_header:
        csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        csa.add_new(0x10, "OB", bytes(200_000))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, frames
    length = frames * FRAME_BYTES
    pattern = hashlib.sha256(b"dicomveil bench").digest() * (CHUNK // 32)
    with path.open("wb") as fh:
        dcmwrite(fh, ds, enforce_file_format=True)
        fh.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        remaining = length
        while remaining:
            block = pattern[: min(CHUNK, remaining)]
            fh.write(block)
            remaining -= len(block)
    return frames


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of ``command``, run by the launcher."""
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    code, rss_kb, seconds = done.stdout.split()
    if code != "0":
        raise BenchError(f"{' '.join(command[:4])}... exited with {code}")
    return int(rss_kb) / 1024, float(seconds)


def contenders(source: Path, out: Path, key_file: Path) -> dict[str, list[str]]:
    key = ["--key", str(key_file), "--workers", "1"]
    return {
        "import only": [sys.executable, "-c", "import dicomveil.cli"],
        "cp": ["cp", str(source), str(out / "copy.dcm")],
        "pydicom read+write": [sys.executable, "-c", PYDICOM, str(source), str(out / "p.dcm")],
        "dicomveil run": [*CLI, "run", str(source), str(out / "deid"), *key],
        "dicomveil run --verify": [*CLI, "run", str(source), str(out / "gated"), *key, "--verify"],
        "dicomveil run, then verify --against": [
            "sh",
            "-c",
            'out=$1 key=$2; shift 2; "$@" run "$0" "$out/v" --key "$key" --workers 1'
            ' && "$@" verify "$out/v" --against "$0"',
            str(source),
            str(out),
            str(key_file),
            *CLI,
        ],
        "dicomveil run file://": [
            *CLI,
            "run",
            source.as_uri(),
            (out / "deid-url").as_uri(),
            *key,
        ],
    }


def bench_size(size_mb: int, scratch: Path, key_file: Path) -> list[Row]:
    folder = Path(tempfile.mkdtemp(prefix=f"mem-{size_mb}mb-", dir=scratch))
    try:
        source = folder / "in.dcm"
        write_multiframe(source, size_mb, long_header=True)
        env = {**os.environ, "TMPDIR": str(folder)}
        rows = []
        for name, command in contenders(source, folder, key_file).items():
            out = folder / "out"
            out.mkdir()
            rss, seconds = measure(command, env)
            rows.append(Row(size_mb, name, round(rss, 1), round(seconds, 2)))
            shutil.rmtree(out)
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of sizes in MB") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be at least 1 MB")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=_sizes, default=[10, 100, 1000], help="file sizes in MB (10,100,1000)"
    )
    parser.add_argument("--scratch", type=Path, help="folder for the files (default: temp)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the numbers as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scratch: Path = args.scratch or Path(tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-key-") as keys:
        key_file = Path(keys) / "bench.key"
        write_key(key_file, KEY)
        for size in args.sizes:
            free = shutil.disk_usage(scratch).free
            if free < 5 * size * MB:
                skipped.append(f"{size} MB: {free / MB:.0f} MB free in {scratch}, needs 5x")
                continue
            started = time.perf_counter()
            rows.extend(bench_size(size, scratch, key_file))
            print(f"{size} MB done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(
        f"dicomveil {dicomveil.__version__}, Python {platform.python_version()}, {dt.date.today()}"
    )
    print(f"{'size':>8}  {'contender':<36}{'peak RSS':>10}{'wall':>9}")
    for row in rows:
        print(
            f"{row.size_mb:>5} MB  {row.contender:<36}{row.peak_rss_mb:>7.0f} MB"
            f"{row.seconds:>8.2f}s"
        )
    for note in skipped:
        print(f"skipped {note}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
