#!/usr/bin/env python
"""Throughput of cluster runs (:mod:`dicomveil.runs.cluster`) next to :func:`dicomveil.run`.

Usage::

    python benchmarks/bench_cluster.py [--dask local|ADDRESS] [--files 200] [--size 256]
                                       [--workers 0] [--batch-size 0] [--rounds 3]
                                       [--scratch DIR] [--json OUT]

A deterministic corpus (CT series of four slices per patient, :mod:`tests.support.synthetic`) is
written once into the scratch folder; then each contender de-identifies it ``--rounds``
times, contenders alternating round by round, each into a fresh output folder:

* ``batch.run``: the single-machine run, ``--workers`` processes;
* ``fsspec, no Dask``: :func:`~dicomveil.runs.cluster.run_on_dask` without a scheduler, reading
  and writing ``file://`` URLs (every file fetched to a temporary file, staged, moved);
* ``dask``: :func:`~dicomveil.runs.cluster.run_on_dask` on the cluster, plain paths. With
  ``--dask local`` the benchmark starts a ``LocalCluster`` of ``--workers`` processes once
  (its start-up is reported apart, not in the rounds); with a scheduler address the
  workers must see the scratch folder at the same path (a shared file system).

The table gives the median wall time, files/s and the ratio to ``batch.run``. Every output
is compared with the first contender's, byte for byte (a sanity check, not a timing).
Numbers, not thresholds: nothing here belongs in the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dicomveil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the data builders

from dicomveil import Key, Outcome, Profile, RunConfig, RunSummary, run
from dicomveil.runs.cluster import run_on_dask
from tests.support import synthetic

KEY = Key(bytes(range(32)))  # a fixed, public key: benchmark only
TODAY = dt.date(2025, 1, 15)
SLICES = 4
SEED_BASE = 70_000
DONE = "corpus-complete"


class BenchError(Exception):
    """A contender failed or disagreed: the numbers would be meaningless."""


def prepare_corpus(root: Path, files: int, size: int) -> Path:
    """The corpus under root/dicom, reused when a complete one of this shape is there."""
    dicom = root / "dicom"
    marker = root / DONE
    shape = f"{files} {size} {SLICES} {SEED_BASE} {dicomveil.__version__}\n"
    if marker.exists() and marker.read_text(encoding="utf-8") == shape:
        return dicom
    shutil.rmtree(dicom, ignore_errors=True)
    marker.unlink(missing_ok=True)
    written = 0
    index = 0
    while written < files:
        index += 1
        n = min(SLICES, files - written)
        patient = synthetic.fake_patient(SEED_BASE + index)
        series = synthetic.ct_series(patient, seed=index, n_slices=n, rows=size, columns=size)
        synthetic.write_series(series, dicom / f"p{index:04d}")
        written += n
    marker.write_text(shape, encoding="utf-8")
    return dicom


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class Contender:
    name: str
    call: Callable[[Path], RunSummary]  # output folder -> summary


@contextmanager
def dask_address(dask: str | None, workers: int) -> Iterator[tuple[str | None, float]]:
    """The scheduler to use and the seconds it took to start (0 for an external one)."""
    if dask is None:
        yield None, 0.0
        return
    if dask != "local":
        yield dask, 0.0
        return
    import distributed

    started = time.perf_counter()
    cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    with cluster:
        client = distributed.Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        with client:
            client.wait_for_workers(workers)
            yield cluster.scheduler_address, time.perf_counter() - started


def build(corpus: Path, workers: int, batch_size: int, address: str | None) -> list[Contender]:
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"), key=KEY, output=Path(), workers=workers, today=TODAY
    )

    def local(out: Path) -> RunSummary:
        return run([corpus], replace(config, output=out))

    def fsspec(out: Path) -> RunSummary:
        return run_on_dask(
            [corpus.as_uri()], out.as_uri(), config, address=None, batch_size=batch_size
        )

    contenders = [Contender("batch.run", local), Contender("fsspec, no Dask", fsspec)]
    if address is not None:

        def on_dask(out: Path) -> RunSummary:
            return run_on_dask(
                [str(corpus)], str(out), config, address=address, batch_size=batch_size
            )

        contenders.append(Contender("dask", on_dask))
    return contenders


def bench(
    contenders: Sequence[Contender], rounds: int, scratch: Path, files: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    reference: dict[str, bytes] | None = None
    for round_ in range(rounds):
        for contender in contenders:
            out = scratch / f"out-{round_}-{contender.name.replace(' ', '_').replace(',', '')}"
            started = time.perf_counter()
            summary = contender.call(out)
            times[contender.name].append(time.perf_counter() - started)
            if summary.count(Outcome.WRITTEN) != files:
                raise BenchError(f"{contender.name} wrote {summary.count(Outcome.WRITTEN)} files")
            if round_ == 0:
                tree = read_tree(out)
                if reference is None:
                    reference = tree
                elif tree != reference:
                    raise BenchError(f"{contender.name} wrote other bytes than the first")
            shutil.rmtree(out)
    return times


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dask", metavar="local|ADDRESS", help="also run on this cluster")
    parser.add_argument("--files", type=_at_least(1), default=200, help="files (default 200)")
    parser.add_argument("--size", type=_at_least(8), default=256, help="rows and columns")
    parser.add_argument("--workers", type=_at_least(0), default=0, help="0: one per core")
    parser.add_argument("--batch-size", type=_at_least(0), default=0, help="0: automatic")
    parser.add_argument("--rounds", type=_at_least(1), default=3, help="rounds (default 3)")
    parser.add_argument("--scratch", type=Path, help="corpus and outputs (default: temp)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the numbers as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workers = args.workers or os.cpu_count() or 1
    scratch: Path = args.scratch or Path(tempfile.gettempdir()) / "dicomveil-bench-cluster"
    scratch.mkdir(parents=True, exist_ok=True)
    corpus = prepare_corpus(scratch / f"corpus-{args.files}x{args.size}", args.files, args.size)
    with dask_address(args.dask, workers) as (address, startup):
        contenders = build(corpus, workers, args.batch_size, address)
        times = bench(contenders, args.rounds, scratch, args.files)
    base = statistics.median(times["batch.run"])
    print(
        f"dicomveil {dicomveil.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, {args.files} files of {args.size}x{args.size}, "
        f"{workers} workers, {args.rounds} round(s)"
    )
    print(f"{'contender':<18}{'median':>9}{'files/s':>9}{'x batch.run':>13}")
    results: dict[str, Any] = {"startup_s": startup, "contenders": {}}
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<18}{median:>8.2f}s{args.files / median:>9.1f}{base / median:>13.2f}")
        results["contenders"][name] = samples
    if args.dask == "local":
        print(f"note: starting the local cluster took {startup:.1f} s (not in the rounds)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
