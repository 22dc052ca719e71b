#!/usr/bin/env python
"""CPU the gateway's process spends while associations are open and nothing is sent.

Usage::

    python benchmarks/gateway_idle.py [--associations 4] [--seconds 3] [--rounds 3]

A ``dicomveil gateway --config`` subprocess is started (one storing route, as in
``bench_gateway.py``); its CPU time (user and system, from ``/proc/PID/stat``) is read over
``--seconds`` with no association, then with ``--associations`` pynetdicom associations
open and idle. pynetdicom's reactor threads poll: each open association used to cost the
process a thousand wakeups a second (issue 16's measurement: four idle associations, 15 % of
a core). Linux only (``/proc``). A figure for this machine, never a threshold in the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway as bench
from pydicom.uid import CTImageStorage
from pynetdicom import AE

from dicomveil import Key, write_key


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def share(pid: int, seconds: float) -> float:
    """The share of one core the process used over ``seconds``."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomveil-gateway-idle-") as temp:
        root = Path(temp)
        key = root / "bench.key"
        write_key(key, Key.generate())
        scratch = root / "gateway"
        scratch.mkdir()
        port = bench.free_port()
        config = bench.gateway_config(scratch, port, key, None, None)
        command = [str(Path(sys.executable).with_name("dicomveil")), "gateway", "--config"]
        server = bench.Server([*command, str(config)], port, scratch / "gateway.log")
        try:
            time.sleep(1.0)  # the workers started
            pid = server.proc.pid
            alone = [share(pid, args.seconds) for _ in range(args.rounds)]
            ae = AE(ae_title="BENCH")
            ae.add_requested_context(CTImageStorage)
            open_ = [
                ae.associate("127.0.0.1", port, ae_title="DICOMVEIL")
                for _ in range(args.associations)
            ]
            if not all(assoc.is_established for assoc in open_):
                raise SystemExit("the gateway refused an association; see its log")
            time.sleep(0.5)
            idle = [share(pid, args.seconds) for _ in range(args.rounds)]
            for assoc in open_:
                assoc.release()
        finally:
            server.stop()
    print(f"gateway process, no association: {100 * statistics.median(alone):.1f} % of a core")
    print(
        f"gateway process, {args.associations} idle associations: "
        f"{100 * statistics.median(idle):.1f} % of a core (median of {args.rounds} x "
        f"{args.seconds:g} s)"
    )


if __name__ == "__main__":
    main()
