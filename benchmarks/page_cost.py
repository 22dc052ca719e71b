#!/usr/bin/env python
"""Kernel time per new 4 KiB page of written files, by how long ago memory was freed.

Usage::

    python benchmarks/page_cost.py [--sizes 64,256,512,1024] [--gaps 0,3] [--scratch DIR]

For each size and gap: ``size`` MB of new files are written (1 MB each) ``gap`` seconds after
the previous size's files were removed, and the system CPU time this process spent doing it
is divided by the pages written. On a virtual machine whose host takes back the memory its
guest frees (free page reporting, a balloon), a page the host took back costs several times
as much as one freed a moment ago; on a machine without that, both cost about the same.
Every benchmark that writes its outputs pays this for each page of them (see README.md,
*The cost of a new page*). A measurement of this machine, never a threshold in the tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def cost(folder: Path, megabytes: int, gap: float) -> float:
    """Microseconds of system time per 4 KiB page for ``megabytes`` of new files written
    ``gap`` seconds after ``folder``'s previous files were removed."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.sync()
    time.sleep(gap)
    data = os.urandom(1 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for i in range(megabytes):
        with (folder / f"f{i}").open("wb") as out:
            out.write(data)
    spent = resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
    return spent / (megabytes * 256) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256,512,1024", help="MB to write, comma-separated")
    parser.add_argument(
        "--gaps", default="3,0", help="seconds since the last free, comma-separated"
    )
    parser.add_argument("--scratch", type=Path, help="where to write (default: the temp dir)")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    gaps = [float(v) for v in args.gaps.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="dicomveil-pages-", dir=args.scratch))
    try:
        print("MB     " + "  ".join(f"{g:g} s after a free" for g in gaps))
        for megabytes in sizes:
            cells = [f"{cost(scratch / 'files', megabytes, g):8.1f} us/page" for g in gaps]
            print(f"{megabytes:<6} " + "  ".join(cells), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
