"""Cluster runs (:mod:`dicomveil.runs.cluster`): the same bytes on one machine, on a local Dask
cluster and between S3 buckets (moto in server mode on loopback); a failed task retried
without duplicating output; bounded memory on a file larger than 1 GB."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import distributed
import pydicom
import pytest
import s3fs
from moto.server import ThreadedMotoServer
from pydicom import dcmread, dcmwrite

import dicomveil.runs.cluster
from dicomveil import Outcome, Profile, RunConfig, RunSummary, run, write_key
from dicomveil.errors import DicomveilError, InputError
from dicomveil.runs import forkserver
from dicomveil.runs.batch import FileResult
from dicomveil.runs.cluster import ClusterError, is_url, parse_storage_options, run_on_dask
from tests.support import synthetic
from tests.support.commands import cli
from tests.support.scratch import scratch

from .conftest import KEY

TODAY = dt.date(2026, 11, 30)
GB = 1_000_000_000
Tree = dict[str, bytes]


# --------------------------------------------------------------------------------------------
# A small corpus, and the reference: a single-process local run


@dataclass(frozen=True)
class Reference:
    inputs: Path
    names: tuple[str, ...]  # every input (zip members as archive!member), relative
    tree: Tree  # output, relative path -> bytes
    maps: Tree
    outcomes: dict[str, tuple[Outcome, str]]  # relative input -> (outcome, reason)


def config(tmp: Path, workers: int = 1, *, maps: bool = True) -> RunConfig:
    return RunConfig(
        profile=Profile.named("ps3.15-basic"),
        key=KEY,
        output=tmp / "unused",
        map_dir=tmp / "maps" if maps else None,
        workers=workers,
        today=TODAY,
    )


def read_tree(root: Path) -> Tree:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def outcomes(summary: RunSummary, inputs: str) -> dict[str, tuple[Outcome, str]]:
    found: dict[str, tuple[Outcome, str]] = {}
    for r in summary.results:
        name = r.task.display.removeprefix(inputs).lstrip("/")
        assert name not in found, f"{name} reported twice"
        found[name] = (r.outcome, r.reason)
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    with scratch(tmp_path_factory, "corpus") as root:
        yield _reference(root)


def _reference(root: Path) -> Reference:
    inputs = root / "in"
    for seed in range(1, 4):  # 3 patients: 4 CT + 3 MR slices each
        patient = synthetic.fake_patient(seed)
        ct = synthetic.ct_series(patient, seed=seed, n_slices=4, rows=32, columns=32)
        mr = synthetic.mr_series(patient, seed=seed, n_slices=3, rows=32, columns=32)
        synthetic.write_series(ct, inputs / f"p{seed}" / "ct")
        synthetic.write_series(mr, inputs / f"p{seed}" / "mr")
    fourth = synthetic.fake_patient(4)
    synthetic.write_series([synthetic.us_burned_in(fourth, seed=4)], inputs / "p4" / "us")
    (inputs / "p4" / "notes.txt").write_text("not DICOM\n", encoding="utf-8")
    with zipfile.ZipFile(inputs / "p4" / "archive.zip", "w") as archive:
        for i, ds in enumerate(
            synthetic.ct_series(fourth, seed=4, n_slices=2, rows=16, columns=16)
        ):
            buffer = io.BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            archive.writestr(f"IM{i:04d}", buffer.getvalue())
    out = root / "out"
    summary = run([inputs], replace(config(root), output=out))
    found = outcomes(summary, str(inputs))
    assert len(found) == 21 + 1 + 1 + 2
    assert {o for o, _ in found.values()} == {Outcome.WRITTEN, Outcome.WITHHELD, Outcome.SKIPPED}
    return Reference(inputs, tuple(sorted(found)), read_tree(out), read_tree(root / "maps"), found)


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[distributed.LocalCluster]:
    with distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster


# --------------------------------------------------------------------------------------------
# (1) One machine, several processes, a local Dask cluster: the same bytes


def test_dask_local_cluster_writes_the_bytes_of_a_single_process_run(
    reference: Reference, tmp_path: Path
) -> None:
    pool = tmp_path / "pool"
    summary = run([reference.inputs], replace(config(pool, workers=2), output=pool / "out"))
    assert read_tree(pool / "out") == reference.tree
    assert read_tree(pool / "maps") == reference.maps
    assert outcomes(summary, str(reference.inputs)) == reference.outcomes

    on_dask = tmp_path / "dask"
    seen: list[FileResult] = []
    summary = run_on_dask(
        [str(reference.inputs)],
        str(on_dask / "out"),
        config(on_dask, workers=2),
        address="local",
        batch_size=3,
        progress=seen.append,
    )
    assert read_tree(on_dask / "out") == reference.tree
    assert read_tree(on_dask / "maps") == reference.maps
    assert outcomes(summary, str(reference.inputs)) == reference.outcomes
    assert seen == summary.results  # progress saw every file once
    written = {r.output for r in summary.written}
    assert written == {(on_dask / "out" / rel).resolve() for rel in reference.tree}


@pytest.mark.parametrize("where", [None, "local"])
def test_dask_runs_know_the_whole_patient(tmp_path: Path, where: str | None) -> None:
    """The first pass runs on the cluster too (issue 15): an alias one file of the patient
    holds is cleaned from another file's comment, with the bytes of a local run."""
    patient = synthetic.fake_patient(41)
    alias = "Zqxwvdaskalias"
    first, second = synthetic.ct_series(patient, seed=41, n_slices=2, rows=8, columns=8)
    first.OtherPatientNames = f"{alias.upper()}^BOB"
    second.ImageComments = f"also known as {alias}"
    synthetic.write_series([first, second], tmp_path / "in")
    profile = Profile.named("ps3.15-basic").with_options(["clean-descriptors"])
    local = replace(config(tmp_path / "local"), profile=profile, output=tmp_path / "local" / "out")
    run([tmp_path / "in"], local)
    cluster = replace(config(tmp_path / "dask", workers=2), profile=profile)
    summary = run_on_dask(
        [str(tmp_path / "in")], str(tmp_path / "dask" / "out"), cluster, address=where
    )
    assert summary.count(Outcome.WRITTEN) == 2
    assert read_tree(tmp_path / "dask" / "out") == read_tree(tmp_path / "local" / "out")
    comments = [
        str(dcmread(r.output).get("ImageComments", "")) for r in summary.written if r.output
    ]
    assert "also known as [NAME]" in comments, comments


# --------------------------------------------------------------------------------------------
# (2) S3 to S3 through fsspec, against moto in server mode on loopback


@dataclass(frozen=True)
class S3:
    fs: s3fs.S3FileSystem
    options: dict[str, Any]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto keeps its state per process: start from empty buckets.
        reset = urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=30) as response:
            assert response.status == 200
        # The workers of an already running cluster do not see this environment: the
        # endpoint and the (fake) credentials travel as storage options.
        options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        yield S3(fs, options)
    finally:
        server.stop()


def bucket_tree(fs: s3fs.S3FileSystem, root: str) -> Tree:
    return {key.removeprefix(root + "/"): fs.cat_file(key) for key in fs.find(root)}


@pytest.mark.parametrize("where", ["this machine", "dask"])
def test_s3_to_s3_writes_the_bytes_of_a_local_run(
    reference: Reference,
    s3: S3,
    dask_cluster: distributed.LocalCluster,
    tmp_path: Path,
    where: str,
) -> None:
    s3.fs.mkdir("in-bucket")
    s3.fs.mkdir("out-bucket")
    s3.fs.put(str(reference.inputs) + "/", "in-bucket/study/", recursive=True)
    summary = run_on_dask(
        ["s3://in-bucket/study"],
        "s3://out-bucket/deid",
        config(tmp_path, workers=1 if where == "this machine" else 2),
        address=dask_cluster.scheduler_address if where == "dask" else None,
        batch_size=4,
        storage_options=s3.options,
    )
    assert outcomes(summary, "s3://in-bucket/study") == reference.outcomes
    assert bucket_tree(s3.fs, "out-bucket/deid") == reference.tree  # and nothing else
    assert read_tree(tmp_path / "maps") == reference.maps
    assert {r.output.as_posix() for r in summary.written if r.output} == set(reference.tree)
    assert bucket_tree(s3.fs, "in-bucket/study") == read_tree(reference.inputs)  # untouched


def test_s3_input_that_does_not_exist_is_an_error(s3: S3, tmp_path: Path) -> None:
    s3.fs.mkdir("empty-bucket")
    with pytest.raises(InputError, match="no such file or folder"):
        run_on_dask(
            ["s3://empty-bucket/nothing"],
            str(tmp_path / "out"),
            config(tmp_path),
            address=None,
            storage_options=s3.options,
        )


# --------------------------------------------------------------------------------------------
# (3) A failed task is retried and rewrites the same keys: nothing duplicated, nothing lost


def install_fault(marker: str, victim: str) -> None:
    """On a Dask worker: the first delivery of ``victim`` (after it is written) raises,
    failing its whole batch once; ``marker`` records that it happened."""
    module: Any = dicomveil.runs.cluster
    original = getattr(module, "_original_deliver", module._deliver)
    module._original_deliver = original

    def deliver(site: Any, result: FileResult) -> FileResult:
        delivered: FileResult = original(site, result)
        if result.task.display == victim:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                raise RuntimeError("injected failure")
        return delivered

    module._deliver = deliver


def remove_fault() -> None:
    module: Any = dicomveil.runs.cluster
    module._deliver = getattr(module, "_original_deliver", module._deliver)


def test_failed_task_is_retried_without_duplicating_output(
    reference: Reference, dask_cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    # batch_size 4: inputs 4..7 make batch 1; the fault hits its second file, after the
    # first two are written, so the retry rewrites keys that already exist.
    victim = str(reference.inputs / reference.names[5])
    marker = tmp_path / "fault-fired"
    with distributed.Client(dask_cluster, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        client.run(install_fault, str(marker), victim)
        try:
            summary = run_on_dask(
                [str(reference.inputs)],
                str(tmp_path / "out"),
                config(tmp_path),
                address=dask_cluster.scheduler_address,
                batch_size=4,
                retries=1,
            )
            assert marker.exists()
            assert outcomes(summary, str(reference.inputs)) == reference.outcomes
            assert read_tree(tmp_path / "out") == reference.tree  # no temporaries either
            assert read_tree(tmp_path / "maps") == reference.maps

            # Without retries the batch's files are reported failed, the others written.
            marker.unlink()
            again = tmp_path / "again"
            summary = run_on_dask(
                [str(reference.inputs)],
                str(again / "out"),
                config(again),
                address=dask_cluster.scheduler_address,
                batch_size=4,
                retries=0,
            )
        finally:
            client.run(remove_fault)
    found = outcomes(summary, str(reference.inputs))
    failed = {name for name, (outcome, _) in found.items() if outcome is Outcome.FAILED}
    assert failed == set(reference.names[4:8])
    assert all("task failed 1 time(s) (RuntimeError)" in found[n][1] for n in failed)
    assert not summary.ok
    assert {k: v for k, v in found.items() if k not in failed} == {
        k: v for k, v in reference.outcomes.items() if k not in failed
    }


# --------------------------------------------------------------------------------------------
# The command line


def test_cli_dask_and_urls_write_what_a_plain_run_writes(
    reference: Reference, dask_cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    key = write_key_file(tmp_path / "project.key")
    plain = cli("run", reference.inputs, tmp_path / "plain", "--key", key, "--workers", "1")
    assert plain.exit_code == 0, plain.output
    address = dask_cluster.scheduler_address
    on_dask = cli(
        "run",
        reference.inputs,
        tmp_path / "dask",
        "--key",
        key,
        "--dask",
        address,
        "--batch-size",
        "5",
        "--map-dir",
        tmp_path / "maps",
    )
    assert on_dask.exit_code == plain.exit_code, on_dask.output
    urls = cli("run", reference.inputs.as_uri(), (tmp_path / "urls").as_uri(), "--key", key)
    assert urls.exit_code == plain.exit_code, urls.output
    expected = read_tree(tmp_path / "plain")
    assert len(expected) == len(reference.tree)
    assert read_tree(tmp_path / "dask") == expected
    assert read_tree(tmp_path / "urls") == expected
    line = f"summary: written {len(expected)}, withheld 1, skipped 1, failed 0"
    for result in (plain, on_dask, urls):
        assert line in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["in", "out", "--storage-option", "anon=true"], "--storage-option goes with URL"),
        (["in", "out", "--batch-size", "3"], "--batch-size goes with --dask"),
        (["in", "s3://bucket/out", "--dicomdir"], "need a local output folder"),
        (["in", "s3://b/out", "--storage-option", "oops"], "storage option 1: expected KEY="),
    ],
)
def test_cli_refuses_bad_cluster_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    key = write_key_file(tmp_path / "project.key")
    (tmp_path / "in").mkdir()
    with contextlib.chdir(tmp_path):
        result = cli("run", *args, "--key", key)
    assert result.exit_code == 2, result.output
    assert message in result.output


# --------------------------------------------------------------------------------------------
# Options and locations


def test_storage_options_and_urls() -> None:
    assert parse_storage_options(
        ["endpoint_url=http://127.0.0.1:9000", "anon=false", "client_kwargs.retries=3"]
    ) == {"endpoint_url": "http://127.0.0.1:9000", "anon": False, "client_kwargs": {"retries": 3}}
    with pytest.raises(ClusterError, match="storage option 1: expected KEY=VALUE") as caught:
        parse_storage_options(["secret"])
    assert "secret" not in str(caught.value).split(":", 1)[1]
    assert is_url("s3://bucket/prefix") and is_url("file:///tmp/x")
    assert is_url("simplecache::s3://bucket/x")
    assert not is_url("/data/in") and not is_url("in") and not is_url(Path("s3://x"))


def test_output_inside_input_is_refused(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for output in [(inputs / "out").as_uri(), str(inputs / "out")]:
        with pytest.raises(DicomveilError, match="inside the input"):
            run_on_dask([inputs.as_uri()], output, config(tmp_path), address=None)
    with pytest.raises(ClusterError, match="inside the input"):
        run_on_dask(["s3://bucket/in"], "s3://bucket/in/out", config(tmp_path), address=None)
    assert not (inputs / "out").exists()


# --------------------------------------------------------------------------------------------
# (4) Bounded memory: a file of 1.1 GB through `dicomveil run`, in a subprocess

FRAMES = 2100  # 512 x 512 x 16 bits: 1.1 GB of pixel data
FRAME_BYTES = 512 * 512 * 2
RSS_LIMIT_KB = 150 * 1024
NEEDS_BYTES = 6 * GB  # the input, a fetched copy, a staged output and the output


@dataclass(frozen=True)
class BigInput:
    path: Path
    pixel_sha256: str
    key_file: Path


@pytest.fixture
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigInput]:
    """A DICOM file of 1.1 GB, removed afterwards (pytest keeps old temporary folders)."""
    folder = tmp_path_factory.mktemp("big")
    try:
        free = shutil.disk_usage(folder).free
        if free < NEEDS_BYTES:
            pytest.skip(f"needs {NEEDS_BYTES / GB:.0f} GB free in {folder}, has {free / GB:.1f} GB")
        source = folder / "in" / "big.dcm"
        source.parent.mkdir()
        digest = write_big_multiframe(source)
        assert source.stat().st_size > 1.1 * GB
        yield BigInput(source, digest, write_key_file(folder / "project.key"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_key_file(path: Path) -> Path:
    assert write_key(path, KEY) == KEY
    return path


def write_big_multiframe(path: Path) -> str:
    """A CT with FRAMES frames, written in a stream: the header by pydicom, then the Pixel
    Data element's header and its value in 4 MiB chunks. Returns the value's SHA-256."""
    (ds,) = synthetic.ct_series(synthetic.fake_patient(9), seed=9, n_slices=1, rows=8, columns=8)
    for tag in [t for t in ds.keys() if t >= 0x7FE00010]:
        del ds[tag]
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, FRAMES
    length = FRAMES * FRAME_BYTES
    pattern = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        dcmwrite(fh, ds, enforce_file_format=True)
        fh.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        remaining, index = length, 0
        while remaining:
            block = (struct.pack("<Q", index) + pattern[8:])[:remaining]  # no two alike
            fh.write(block)
            digest.update(block)
            remaining -= len(block)
            index += 1
    return digest.hexdigest()


def pixel_digest(path: Path) -> str:
    """SHA-256 of a file's Pixel Data value (native, explicit VR little endian), streamed."""
    with path.open("rb") as fh:
        dcmread(fh, stop_before_pixels=True)
        group, element, vr, _, length = struct.unpack("<HH2sHI", fh.read(12))
        assert (group, element, vr) == (0x7FE0, 0x0010, b"OW")
        digest = hashlib.sha256()
        while length:
            block = fh.read(min(length, 4 << 20))
            assert block, "the pixel data is cut short"
            digest.update(block)
            length -= len(block)
        assert fh.read(1) == b""
    return digest.hexdigest()


# A child forked from this (large) process starts with its peak RSS: a small launcher
# forks the command and reports the command's own peak.
LAUNCHER = textwrap.dedent(
    """
    import resource, subprocess, sys
    code = subprocess.call(sys.argv[1:])
    print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """
)


def run_measured(command: list[str], log: Path, env: dict[str, str]) -> tuple[int, int]:
    """Run ``command``: its exit code and its peak resident set size in KiB (Linux)."""
    with log.open("wb") as fh:
        launched = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *command],
            stdout=subprocess.PIPE,
            stderr=fh,
            env=env,
            check=True,
        )
    code, rss_kb = launched.stdout.decode().split()
    return int(code), int(rss_kb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_memory_stays_bounded_on_a_file_over_1_gb(big_input: BigInput) -> None:
    """Through file:// URLs, the whole path of a cluster task: the input streamed into a
    temporary file, de-identified (pixel data copied in chunks), the output staged and
    streamed to its location (plain paths skip the first and last steps)."""
    work = big_input.path.parent.parent / "run"
    out = work / "out"
    scratch = work / "scratch"  # the fetched input and the staged output go here
    scratch.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "dicomveil",
        "run",
        big_input.path.as_uri(),
        out.as_uri(),
        "--key",
        str(big_input.key_file),
        "--workers",
        "1",
    ]
    log = work / "run.log"
    try:
        code, rss_kb = run_measured(command, log, {**os.environ, "TMPDIR": str(scratch)})
        text = log.read_text(encoding="utf-8", errors="replace")
        assert code == 0, text
        assert "written 1," in text
        (written,) = [p for p in out.rglob("*") if p.is_file()]
        assert written.stat().st_size > 1.1 * GB
        assert pixel_digest(written) == big_input.pixel_sha256
        assert list(scratch.rglob("*")) == []  # temporaries removed
        assert rss_kb < RSS_LIMIT_KB, f"peak RSS {rss_kb / 1024:.0f} MB"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_program_on_a_local_cluster_writes_what_a_plain_run_writes(
    reference: Reference, tmp_path: Path
) -> None:
    """``dicomveil run --dask local``, the program itself: its workers are forked from the
    fork server it starts as it starts (``dicomveil.runs.forkserver``)."""
    key = write_key_file(tmp_path / "project.key")
    program = [sys.executable, "-m", "dicomveil", "run", str(reference.inputs)]
    common = ["--key", str(key), "--workers", "2"]
    plain = subprocess.run([*program, str(tmp_path / "plain"), *common], capture_output=True)
    assert plain.returncode == 0, plain.stderr
    on_dask = subprocess.run(
        [*program, str(tmp_path / "dask"), *common, "--dask", "local"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert on_dask.returncode == 0, on_dask.stderr
    assert "Traceback" not in on_dask.stderr
    assert read_tree(tmp_path / "dask") == read_tree(tmp_path / "plain")
    assert len(read_tree(tmp_path / "plain")) == len(reference.tree)


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["run", "in", "out", "--dask", "local"], True),
        (["run", "--dask=local", "in", "out"], True),
        (["run", "in", "out", "--dask", "tcp://host:8786"], False),
        (["run", "in", "out", "--dask"], False),
        (["run", "--", "--dask", "local", "out"], False),  # file names after "--"
        (["run", "in", "out"], False),
    ],
)
def test_the_program_starts_the_fork_server_only_for_a_local_cluster(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], starts: bool
) -> None:
    started: list[bool] = []

    def start() -> bool:
        started.append(True)
        return True

    monkeypatch.setattr(forkserver, "start", start)
    forkserver.start_for(argv)
    assert started == ([True] if starts else [])


@pytest.mark.parametrize("where", [None, "local"])
def test_inputs_of_one_uid_on_a_cluster_leave_the_reported_ones_file(
    tmp_path: Path, where: str | None
) -> None:
    """pydicom's MR_small in five encodings (one SOP Instance UID): one is reported written,
    the others fail, and the file on disk is the one reported written, as a run of that
    input alone writes it (on a local Dask cluster the later file stayed)."""
    data = Path(pydicom.__file__).parent / "data" / "test_files"
    names = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in names:
        shutil.copy(data / name, inputs / name)
    summary = run_on_dask(
        [str(inputs)], str(tmp_path / "out"), config(tmp_path / "c", workers=2), address=where
    )
    assert summary.count(Outcome.WRITTEN) == 1
    assert summary.count(Outcome.FAILED) == len(names) - 1
    (kept,) = summary.written
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(kept.task.path, alone / kept.task.path.name)
    run([alone], replace(config(tmp_path / "a"), output=tmp_path / "a" / "out"))
    assert read_tree(tmp_path / "out") == read_tree(tmp_path / "a" / "out")
