"""``dicomveil verify`` next to de-identification of the same files, in one process.

The issue asks that verify runs at least as fast as de-identification on the same files; this
is where that is measured (never in a test). For each round, alternating: de-identify the
corpus (``batch.run``), then verify the output against the originals with the maps
(``verify(..., against=..., map_dir=...)``), both with the same number of workers. Prints the
median seconds, files/s and the ratio verify/de-identify (below 1.0: verify is faster).

    python benchmarks/bench_verify.py [--files 200] [--size 256] [--rounds 3] [--workers 0]
        [--iod off|structure|all]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_run import prepare_corpus, warm_page_cache

from dicomveil import Key, Profile, RunConfig, run
from dicomveil.qc.verify import IodCheck
from dicomveil.qc.verify import verify as verify_output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--iod", choices=[i.value for i in IodCheck], default="off")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="dicomveil-bench-verify-"))
    try:
        (scratch / "corpus").mkdir()
        corpus = prepare_corpus(scratch / "corpus", args.files, args.size)
        warm_page_cache(corpus)
        profile = Profile.named("ps3.15-basic")
        key = Key(b"bench-verify-key-32-bytes-long!!")
        deid_times: list[float] = []
        verify_times: list[float] = []
        for number in range(args.rounds):
            out, maps = scratch / f"out{number}", scratch / f"maps{number}"
            config = RunConfig(profile=profile, key=key, output=out, map_dir=maps,
                               workers=args.workers, today=dt.date(2026, 11, 30))  # fmt: skip
            start = time.perf_counter()
            summary = run([corpus.dicom], config)
            deid_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            report = verify_output(out, against=corpus.dicom, profile=profile, map_dir=maps,
                                   workers=args.workers, iod=IodCheck(args.iod))  # fmt: skip
            verify_times.append(time.perf_counter() - start)
            if report.exit_code != 0:
                print(f"note: round {number}: verify says {report.result.value}", file=sys.stderr)
            files = len(summary.written)
            shutil.rmtree(out)
            shutil.rmtree(maps)
        deid, check = statistics.median(deid_times), statistics.median(verify_times)
        print(f"files: {files} written of {args.files} ({args.size}x{args.size}), "
              f"{args.rounds} rounds, workers={args.workers}, dciodvfy: {args.iod}")  # fmt: skip
        print(f"{'step':<16}{'median s':>10}{'files/s':>10}")
        print(f"{'de-identify':<16}{deid:>10.3f}{files / deid:>10.0f}")
        print(f"{'verify':<16}{check:>10.3f}{files / check:>10.0f}")
        print(f"verify / de-identify: {check / deid:.2f} (target: at most 1.00)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
