#!/usr/bin/env python
"""How long the review application takes to render a subject with many files (issue 17:
a page with 2,000 files of one subject in under 2 s).

Usage::

    python benchmarks/bench_review.py [--files 2000] [--series 4] [--rounds 5] [--json OUT]

A synthetic subject (one patient, ``--series`` CT series of small 64 x 64 slices, from
:mod:`tests.support.synthetic`) is de-identified by ``dicomveil run --audit`` into a scratch
folder; an account is added; ``dicomveil review`` is started as its own process, as in
production. Timed over HTTP on loopback (httpx, logged in), wall time until the whole
page is received:

* how long the application's background index of the outputs takes after it starts (each
  output's header read once; the queue shows the study counts when it is done);
* the subject page, first view (it checks the first file of each series: ``diff`` and the
  engine's decisions);
* the subject page again (``--rounds`` times, median): what a reviewer sees afterwards;
* the queue, and one file's page;
* "check every file" (each file compared with its original and explained, in the
  background), until the page says it is done;
* the subject page opened at once after a start with the index emptied (the page reads
  the subject's outputs itself, while the background index starts).

Timings are for this machine only and are never thresholds in the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the data builders

import httpx

from dicomveil import write_key
from dicomveil.review import ReviewStore
from tests.support import synthetic

DICOMVEIL = str(Path(sys.executable).with_name("dicomveil"))


def make_subject(folder: Path, files: int, series: int) -> None:
    patient = synthetic.fake_patient(7)
    per_series = -(-files // series)
    written = 0
    for index in range(series):
        count = min(per_series, files - written)
        datasets = synthetic.ct_series(patient, seed=index, n_slices=count, rows=64, columns=64)
        synthetic.write_series(
            datasets, folder / f"series{index}", names=f"IM{index}_{{index:05d}}"
        )
        written += count


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(client: httpx.Client, path: str) -> tuple[float, str]:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}")
    return elapsed, response.text


@contextlib.contextmanager
def serving(db: Path) -> Iterator[httpx.Client]:
    """``dicomveil review`` on a free port, and a client logged in as bob."""
    port = free_port()
    server = subprocess.Popen(
        [DICOMVEIL, "review", "--audit", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for _ in range(300):
                try:
                    page = client.get("/login")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            form = {"name": "bob", "password": "bench-password", "csrf": token.group(1)}
            client.post("/login", data=form)
            yield client
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomveil-bench-review-") as scratch:
        root = Path(scratch)
        make_subject(root / "in", args.files, args.series)
        key = root / "project.key"
        write_key(key)
        db = root / "audit.sqlite"
        subprocess.run(
            [DICOMVEIL, "run", str(root / "in"), str(root / "out"), "--key", str(key),
             "--audit", str(db), "--operator", "ada"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [DICOMVEIL, "review", "adduser", "bob", "--audit", str(db), "--password-stdin"],
            input=b"bench-password\n", check=True, capture_output=True,
        )  # fmt: skip
        with serving(db) as client:  # the index built in the background, then the pages
            start = time.perf_counter()
            store = ReviewStore(str(db))
            try:
                while store.unindexed(1):
                    time.sleep(0.05)
            finally:
                store.close()
            indexed = time.perf_counter() - start
            queue_time, queue = timed(client, "/")
            subject = re.search(r'href="/subjects/([^"]+)"', queue)
            assert subject is not None
            path = f"/subjects/{subject.group(1)}"
            first, text = timed(client, path)
            shown = len(re.findall(r'href="/files/\d+"', text))
            again = [timed(client, path)[0] for _ in range(args.rounds)]
            file_id = re.search(r'href="/files/(\d+)"', text)
            assert file_id is not None
            file_time, _ = timed(client, f"/files/{file_id.group(1)}")
            token = re.search(r'name="csrf" value="([^"]+)"', text)
            assert token is not None
            start = time.perf_counter()
            client.post(f"{path}/check-all", data={"csrf": token.group(1)})
            while "Checking every file" in client.get(path).text:
                time.sleep(0.2)
            swept = time.perf_counter() - start
        with sqlite3.connect(db) as conn:  # the index forgotten: a cold start
            conn.execute("DELETE FROM review_index")
        with serving(db) as client:
            cold, _ = timed(client, path)
    result = {
        "files": args.files,
        "files_listed": shown,
        "index_s": round(indexed, 3),
        "subject_first_view_s": round(first, 3),
        "subject_cold_start_s": round(cold, 3),
        "subject_again_median_s": round(statistics.median(again), 3),
        "queue_s": round(queue_time, 3),
        "file_page_s": round(file_time, 3),
        "check_every_file_s": round(swept, 3),
        "cores": os.cpu_count(),
    }
    print(f"{args.files} files of one subject ({args.series} series), {os.cpu_count()} cores:")
    print(f"  the outputs indexed in the background after the start: {indexed:.2f} s")
    print(f"  subject page, first view (checks the first file of each series): {first:.2f} s")
    print(f"  subject page again, median of {args.rounds}: {statistics.median(again):.2f} s")
    print(f"  subject page at once after a start with no index (reads them itself): {cold:.2f} s")
    print(f"  queue: {queue_time:.2f} s; a file's page (diff, rules, dciodvfy): {file_time:.2f} s")
    print(f"  files listed on the page: {shown}")
    print(f"  'check every file' (in the background): {swept:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
