#!/usr/bin/env python
"""Instances per second retrieved through the gateway with C-GET, with its worker processes
and without them (``workers = 0``: the gateway's own process de-identifies each one).

Usage::

    python benchmarks/bench_retrieve.py [--files 400] [--size 256] [--rounds 3]
                                        [--workers N] [--settle 3] [--scratch DIR]

A synthetic corpus (CT series of 50 slices from :mod:`tests.support.synthetic`, one
patient and study each) is stored into dcmtk's ``dcmqrscp`` (the clinical archive) and
de-identified once with ``dicomveil run --map-dir``: its maps are the gateway's cohort. Each
contender starts ``dicomveil gateway`` (a subprocess, as in production) with a query route
to the archive, then times dcmtk ``getscu`` retrieving every study by its new Study
Instance UID, one study after another (one association each), until every de-identified
instance has arrived: the gateway translates the keys, retrieves the originals with C-GET,
de-identifies them (release gate included) and delivers them on the same association.

The contenders alternate round by round (``--settle`` seconds apart); the table gives the
median and the ratio of the workers' line to the in-process one. Timings are for this
machine only and are never thresholds in the tests.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import DCMTK_ENV, Server, count_files, dcmtk, free_port, make_corpus
from pydicom import dcmread

from dicomveil import Key, write_key


def start_archive(root: Path, parts: list[Path]) -> tuple[Server, int]:
    """dcmqrscp (AE title PACS) holding the corpus, and its port."""
    port = free_port()
    storage = root / "qr" / "storage"
    storage.mkdir(parents=True)
    config = root / "qr" / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nPACS {storage} RW (100, 4096mb) ANY\nAETable END\n",
        encoding="utf-8",
    )
    server = Server([dcmtk("dcmqrscp"), "-c", str(config)], port, root / "dcmqrscp.log")
    filled = subprocess.run(
        [dcmtk("storescu"), "-aec", "PACS", "+sd", "+r", "127.0.0.1", str(port)]
        + [str(p) for p in parts],
        capture_output=True,
        text=True,
        check=False,
        env=DCMTK_ENV,
    )
    if filled.returncode != 0:
        server.stop()
        raise SystemExit(f"could not fill dcmqrscp: {filled.stderr[-500:]}")
    return server, port


def cohort(root: Path, key: Path) -> list[str]:
    """``dicomveil run --map-dir`` on the archive's files (the cohort's maps); the new Study
    Instance UIDs."""
    command = str(Path(sys.executable).with_name("dicomveil"))
    done = subprocess.run(
        [
            *(command, "run", str(root / "qr" / "storage"), str(root / "run")),
            *("--key", str(key), "--map-dir", str(root / "maps"), "--quiet"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"dicomveil run failed: {done.stderr[-500:]}")
    return sorted(
        {
            str(dcmread(p, stop_before_pixels=True).StudyInstanceUID)
            for p in (root / "run").rglob("*.dcm")
        }
    )


def gateway_config(root: Path, port: int, key: Path, archive: int, workers: int | None) -> Path:
    path = root / f"gateway-{workers}.toml"
    path.write_text(
        f"""[gateway]
ae_title = "DICOMVEIL"
port = {port}
state_dir = "{root / f"state-{workers}"}"
timeout = 60
{"" if workers is None else f"workers = {workers}"}

[[route]]
name = "query"
calling_ae = ["RESEARCHER"]
key = "{key}"

[route.query]
host = "127.0.0.1"
port = {archive}
ae_title = "PACS"
cohort_maps = ["{root / "maps"}"]
""",
        encoding="utf-8",
    )
    return path


def retrieve(
    root: Path, out: Path, key: Path, archive: int, studies: list[str], workers: int | None
) -> tuple[float, int]:
    """Seconds to retrieve every study through a fresh gateway, and the files received."""
    port = free_port()
    config = gateway_config(root, port, key, archive, workers)
    command = [str(Path(sys.executable).with_name("dicomveil")), "gateway", "--config"]
    server = Server([*command, str(config)], port, root / f"gateway-{workers}.log")
    out.mkdir(parents=True)
    try:
        start = time.perf_counter()
        for study in studies:
            done = subprocess.run(
                [
                    *(dcmtk("getscu"), "-aet", "RESEARCHER", "-aec", "DICOMVEIL", "+B", "-S"),
                    *("-od", str(out), "-k", "QueryRetrieveLevel=STUDY"),
                    *("-k", f"StudyInstanceUID={study}", "127.0.0.1", str(port)),
                ],
                capture_output=True,
                text=True,
                check=False,
                env=DCMTK_ENV,
            )
            if done.returncode != 0:
                raise SystemExit(f"getscu failed: {done.stderr[-500:]}")
        return time.perf_counter() - start, count_files(out)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--size", type=int, default=256, help="rows and columns of each image")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, help="the workers' line (default: the cores)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between contenders")
    parser.add_argument("--scratch", type=Path, help="where everything goes (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomveil-bench-retrieve-", dir=args.scratch) as t:
        root = Path(t)
        parts = make_corpus(root / "corpus", args.files, args.size, 1)
        key = root / "bench.key"
        write_key(key, Key.generate())
        archive, archive_port = start_archive(root, parts)
        try:
            studies = cohort(root, key)
            pooled = "workers (cores)" if args.workers is None else f"workers = {args.workers}"
            contenders = {"gateway, workers = 0": 0, f"gateway, {pooled}": args.workers}
            times: dict[str, list[float]] = {name: [] for name in contenders}
            names = list(contenders)
            for r in range(args.rounds):
                for name in names[r % 2 :] + names[: r % 2]:
                    time.sleep(args.settle)
                    out = root / f"got-{r}-{contenders[name]}"
                    workers = contenders[name]
                    seconds, received = retrieve(root, out, key, archive_port, studies, workers)
                    if received != args.files:
                        raise SystemExit(f"{name}: {received} of {args.files} files received")
                    times[name].append(seconds)
                    print(f"round {r + 1}: {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
        finally:
            archive.stop()
    print(f"{args.files} CT {args.size}x{args.size} in {len(studies)} studies, C-GET by study")
    print(f"{'contender':32s} {'median s':>9s} {'min-max s':>12s} {'files/s':>8s}")
    medians: dict[str, float] = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        rate = args.files / medians[name]
        print(f"{name:32s} {medians[name]:9.2f} {min(values):5.2f}-{max(values):<6.2f} {rate:8.0f}")
    first, second = names
    print(f"note: {second} / {first}: {medians[first] / medians[second]:.2f}x the files/s")


if __name__ == "__main__":
    main()
