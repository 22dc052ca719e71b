#!/usr/bin/env python
"""Peak memory of the gateway while a researcher retrieves one large instance through it
with C-GET (issue 16: memory stays bounded).

Usage::

    python benchmarks/retrieve_memory.py [--sizes 300,1000] [--workers N] [--scratch DIR]

For each size (in MB) one multi-frame CT (``bench_memory.write_multiframe``, header past
64 KiB) is stored into dcmtk's ``dcmqrscp`` (the clinical archive) and de-identified once
with ``dicomveil run --map-dir`` (the gateway's cohort); a fresh ``dicomveil gateway``
subprocess with a query route to the archive then serves one dcmtk ``getscu`` of the
study: it retrieves the original upstream with C-GET, de-identifies it in a worker and
delivers it on the requester's association. Printed: the seconds of the retrieval, the
peak resident set (``VmHWM``) of the gateway's process and of its workers, and the bytes
received. Figures are for this machine only and never thresholds in the tests.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway as bg
import bench_retrieve as br
from bench_memory import write_multiframe
from gateway_memory import peak_mb

from dicomveil import Key, write_key


def one(size_mb: int, scratch: Path, workers: int | None) -> str:
    """Retrieve one instance of ``size_mb`` MB through a fresh gateway; the line to print."""
    root = Path(tempfile.mkdtemp(prefix="retrieve-memory-", dir=scratch))
    try:
        part = root / "in" / "part0"
        part.mkdir(parents=True)
        write_multiframe(part / "large.dcm", size_mb, long_header=True)
        key = root / "bench.key"
        write_key(key, Key.generate())
        archive, archive_port = br.start_archive(root, [part])
        try:
            (study,) = br.cohort(root, key)
            port = bg.free_port()
            config = br.gateway_config(root, port, key, archive_port, workers)
            command = [str(Path(sys.executable).with_name("dicomveil")), "gateway", "--config"]
            server = bg.Server([*command, str(config)], port, root / "gateway.log")
            try:
                pid = server.proc.pid
                got = root / "got"
                got.mkdir()
                started = time.perf_counter()
                subprocess.run(
                    [
                        *(bg.dcmtk("getscu"), "-aet", "RESEARCHER", "-aec", "DICOMVEIL", "+B"),
                        *("-S", "-od", str(got), "-k", "QueryRetrieveLevel=STUDY"),
                        *("-k", f"StudyInstanceUID={study}", "127.0.0.1", str(port)),
                    ],
                    check=True,
                    capture_output=True,
                    env=bg.DCMTK_ENV,
                )
                seconds = time.perf_counter() - started
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                peaks = ", ".join(f"{peak_mb(int(c))} MB" for c in children)
                received = sum(p.stat().st_size for p in got.iterdir()) // 1_000_000
                return (
                    f"{size_mb:>6} MB  {seconds:6.2f} s  gateway {peak_mb(pid):>5} MB"
                    f"  workers {peaks}  received {received} MB"
                )
            finally:
                server.stop()
        finally:
            archive.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="300,1000", help="instance sizes in MB")
    parser.add_argument("--workers", type=int, help="the gateway's workers (default: cores)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    print("  size     time    peak RSS (VmHWM)")
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        print(one(size, args.scratch, args.workers), flush=True)


if __name__ == "__main__":
    main()
