#!/usr/bin/env python
"""The forwarding stall of issue 16, counted: runs of storescu -> gateway -> storescp.

Usage::

    python benchmarks/forward_stall.py [--runs 8] [--files 300]

Each run starts a ``dicomveil gateway`` with a forward route to dcmtk's storescp, sends
``--files`` CT instances over 4 associations and waits until every one arrived. A run
stalls when the forwarder waits out its timeout (30 s) for a C-STORE response that had
already arrived, then sends the instance again: the gateway logs "no response". Printed:
each run's seconds and its stall warnings (counted, never asserted). Before the fix
(``transport.pause_reactor``) 3 of 8 runs stalled on this machine; after it, none.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_gateway: the harness

from bench_gateway import make_corpus, run_gateway

from dicomveil import Key, write_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--files", type=int, default=300)
    args = parser.parse_args()
    stalled = 0
    with tempfile.TemporaryDirectory(prefix="dicomveil-stall-") as temp:
        root = Path(temp)
        parts = make_corpus(root / "corpus", args.files, 128, 4)
        key = root / "bench.key"
        write_key(key, Key.generate())
        for n in range(args.runs):
            scratch = root / f"run{n}"
            scratch.mkdir()
            seconds = run_gateway(
                scratch, parts, args.files, key, forward=True, associations=4, workers=None
            )
            log = (scratch / "gateway.log").read_text(errors="replace")
            stalls = sum("no response" in line for line in log.splitlines())
            stalled += stalls > 0
            print(f"run {n}: {seconds:.1f} s, {stalls} stall(s)", flush=True)
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{stalled} of {args.runs} runs stalled")


if __name__ == "__main__":
    main()
