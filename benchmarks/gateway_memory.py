#!/usr/bin/env python
"""Peak RSS of the gateway's process (and of its workers) while it receives one large
instance over one association (storescu), for a few instance sizes.

Usage::

    python benchmarks/gateway_memory.py [--sizes 5,300,1000] [--scratch DIR]

Each size (MB) is one multi-frame CT written by :func:`bench_memory.write_multiframe` (its
header past 16 KiB), sent by dcmtk's ``storescu`` to a fresh ``dicomveil gateway`` (a
folder route, the release gate on, workers: the cores). The figures are ``VmHWM`` of each
process from ``/proc`` after the instance was acknowledged. Numbers, not thresholds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_gateway as bg
from bench_memory import write_multiframe

from dicomveil import Key, write_key


def peak_mb(pid: int) -> int:
    """The process's peak resident set size, in MB (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


def one(size_mb: int, scratch: Path) -> str:
    """Send one instance of ``size_mb`` MB to a fresh gateway; the line to print."""
    root = Path(tempfile.mkdtemp(prefix="gateway-memory-", dir=scratch))
    try:
        part = root / "in" / "part0"
        part.mkdir(parents=True)
        write_multiframe(part / "large.dcm", size_mb, long_header=True)
        key = root / "bench.key"
        write_key(key, Key.generate())
        state = root / "state"
        state.mkdir()
        port = bg.free_port()
        config = bg.gateway_config(state, port, key, None, None, verify=True)
        command = [str(Path(sys.executable).with_name("dicomveil")), "gateway", "--config"]
        server = bg.Server([*command, str(config)], port, state / "gateway.log")
        try:
            pid = server.proc.pid
            workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            started = time.perf_counter()
            bg.send(port, [part], 1)
            seconds = time.perf_counter() - started
            peaks = [peak_mb(int(w)) for w in workers]
            return (
                f"{size_mb:>6} MB  {seconds:6.2f} s  gateway {peak_mb(pid):>5} MB"
                f"  workers {', '.join(f'{p} MB' for p in peaks)}"
            )
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,300,1000", help="instance sizes in MB")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    print("  size     time    peak RSS (VmHWM)")
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        print(one(size, args.scratch), flush=True)


if __name__ == "__main__":
    main()
