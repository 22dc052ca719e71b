"""The DICOM gateway against real peers on loopback: dcmtk's storescu, storescp, findscu
and dcmqrscp, pynetdicom clients (TLS, MPPS), raw sockets, and the gateway itself as a
``dicomveil gateway`` subprocess killed with SIGKILL.

What "the same bytes" means here:

* the gateway's folder destination is compared file by file, whole files, with the output
  of :func:`dicomveil.run` on the files storescu sent (same profile, key and layout);
* storescp writes what it receives with a file meta group of its own, so for the forwarded
  copies the bytes from the end of group 0002 to the end of the file are compared with the
  same part of ``run``'s output (the data set as the gateway sent it, byte for byte).

Every port is free when the test picks it; every subprocess and server is stopped in a
fixture finalizer. Waits poll for a result with a generous deadline; nothing is timed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from typer.testing import CliRunner

from dicomveil import Outcome, Profile, Pseudonymizer, RunConfig, run, write_key
from dicomveil.cli import app
from dicomveil.errors import GatewayConfigError
from dicomveil.gateway import (
    Gateway,
    GatewayEvent,
    GatewayEvents,
    StoreStatus,
    load_config,
    read_status,
    sanitize_query,
)
from dicomveil.gateway import cohorting as cohorting_module
from dicomveil.gateway import retrieve as retrieve_module
from dicomveil.gateway.config import WebService
from dicomveil.gateway.queue import ClientAE
from dicomveil.gateway.store import spool_header
from dicomveil.gateway.transport import HeldCheckpoint, hold_reactor, pause_reactor, reachable
from tests.realdata import REQUIRE, sdist_folder
from tests.support import synthetic
from tests.support.certificates import self_signed
from tests.support.commands import PYDICOM_DATA, validate
from tests.support.postgres import PostgresServer
from tests.support.scratch import scratch

from .conftest import KEY

VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MPPS = "1.2.840.10008.3.1.2.3.3"
DICOMVEIL = str(Path(sys.executable).with_name("dicomveil"))  # the installed command
DEADLINE = 60.0  # seconds to wait for something that should happen (never a threshold)


def _dcmtk(name: str) -> str | None:
    """dcmtk's binary (pynetdicom installs Python scripts of the same names: skip those)."""
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = Path(folder) / name
        try:
            with candidate.open("rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    return str(candidate)
        except OSError:
            continue
    return None


TOOLS = {
    n: _dcmtk(n)
    for n in ("storescu", "storescp", "findscu", "getscu", "movescu", "dcmqrscp", "echoscu")
}
needs_dcmtk = pytest.mark.skipif(
    any(v is None for v in TOOLS.values()),
    reason="dcmtk is not installed (sudo apt-get install dcmtk)",
)


# Debian's dcmtk keeps Nagle's algorithm on unless TCP_NODELAY is set (each instance would
# wait for a delayed ACK): set it, for speed only.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def tool(name: str) -> str:
    path = TOOLS[name]
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting: {what}")


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------------------------
# Peers: subprocesses stopped in finalizers


class Processes:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: str, port: int | None = None) -> subprocess.Popen[bytes]:
        with (self.folder / log).open("ab") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=DCMTK_ENV,
            )
        self.running.append(proc)
        if port is not None:
            wait_for(
                lambda: listening(port) or proc.poll() is not None, f"{args[0]} on port {port}"
            )
            assert proc.poll() is None, (self.folder / log).read_text(errors="replace")
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # its own session: dcmqrscp forks per association
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)
        return int(proc.returncode)

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            self.stop(proc)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test, so that an unclosed socket is blamed on the test that
    left it."""
    yield
    gc.collect()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def gateways() -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(config: Path, events: GatewayEvents | None = None) -> Gateway:
        gateway = Gateway(load_config(config), events=events)
        started.append(gateway)
        gateway.start()
        return gateway

    try:
        yield start
    finally:
        for gateway in reversed(started):
            gateway.stop()


def storescp(procs: Processes, folder: Path, port: int) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    args = [tool("storescp"), "--output-directory", str(folder), "-aet", "DEST", str(port)]
    return procs.start(args, "storescp.log", port)


STORESCU_ARGS = ("-aet", "SCANNER", "-aec", "DICOMVEIL", "+sd", "+r")


def storescu(port: int, *paths: Path, calling: str = "SCANNER") -> subprocess.CompletedProcess[str]:
    args = [tool("storescu"), "-aet", calling, "-aec", "DICOMVEIL", "+sd", "+r"]
    args += ["127.0.0.1", str(port), *map(str, paths)]  # +sd +r: folders, recursively
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False, env=DCMTK_ENV
    )


# --------------------------------------------------------------------------------------------
# The corpus, and what `dicomveil run` makes of it


@dataclass
class Corpus:
    folder: Path  # ct1/, mr1/, ct2/ (7 instances) and us/ (1 withheld)
    key: Path
    expected: dict[str, bytes]  # de-identified SOP Instance UID -> run's output file
    relative: dict[str, str]  # ... -> its path in run's output folder
    pseudonyms: dict[str, str]  # original PatientID -> pseudonym
    study_uids: dict[str, str]  # original UIDs (study, series, instance) -> de-identified
    names: set[str]  # original patient names
    maps: Path  # the run's --map-dir: patients.csv, uids.csv
    outsider: Path  # a third patient's CT series: in the clinical archive, not in the cohort

    @property
    def storable(self) -> list[Path]:
        return [self.folder / "ct1", self.folder / "mr1", self.folder / "ct2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    with scratch(tmp_path_factory, "corpus") as root:
        yield _corpus(root)


def _corpus(root: Path) -> Corpus:
    folder = root / "in"
    p1, p2 = synthetic.fake_patient(1), synthetic.fake_patient(2)
    datasets = {
        "ct1": synthetic.ct_series(p1, seed=1, n_slices=3, rows=16, columns=16),
        "mr1": synthetic.mr_series(p1, seed=1, n_slices=2, rows=16, columns=16),
        "ct2": synthetic.ct_series(p2, seed=2, n_slices=2, rows=16, columns=16),
        "us": [synthetic.us_burned_in(p2, seed=2)],
    }
    for name, series in datasets.items():
        synthetic.write_series(series, folder / name)
    key = write_key(root / "project.key", KEY)
    assert key == KEY
    output = root / "run"
    summary = run(
        [folder],
        RunConfig(
            profile=Profile.named("ps3.15-basic"),
            key=KEY,
            output=output,
            map_dir=root / "maps",
            workers=1,
            today=dt.date.today(),
        ),
    )
    assert summary.count(Outcome.WRITTEN) == 7 and summary.count(Outcome.WITHHELD) == 1
    outsider = root / "outsider"
    patient = synthetic.fake_patient(3)
    series = synthetic.ct_series(patient, seed=3, n_slices=2, rows=16, columns=16)
    synthetic.write_series(series, outsider)
    expected: dict[str, bytes] = {}
    relative: dict[str, str] = {}
    pseudonyms: dict[str, str] = {}
    study_uids: dict[str, str] = {}
    for result in summary.written:
        assert result.output is not None
        sop = result.output.stem
        expected[sop] = result.output.read_bytes()
        relative[sop] = result.output.relative_to(output).as_posix()
        pseudonyms[result.patient_id] = result.pseudonym
        study_uids.update(result.uid_map)
    names = {str(ds.PatientName) for series in datasets.values() for ds in series}
    return Corpus(
        folder,
        root / "project.key",
        expected,
        relative,
        pseudonyms,
        study_uids,
        names,
        root / "maps",
        outsider,
    )


def body(path: Path) -> bytes:
    """The bytes after the file meta group (the data set as sent over the network)."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def expected_body(corpus: Corpus, sop: str, folder: Path) -> bytes:
    path = folder / f"expected-{sop}.dcm"
    path.write_bytes(corpus.expected[sop])
    return body(path)


def write_config(folder: Path, text: str, corpus: Corpus) -> Path:
    path = folder / "gateway.toml"
    path.write_text(text.replace("@KEY@", str(corpus.key)), encoding="utf-8")
    return path


def received_files(folder: Path) -> dict[str, Path]:
    """storescp's files by SOP Instance UID (names: <modality>.<SOP Instance UID>)."""
    if not folder.exists():
        return {}
    return {p.name.split(".", 1)[1]: p for p in folder.iterdir() if "." in p.name}


def gateway_config(port: int, state: Path, dest_port: int, *, output: bool = True) -> str:
    return f"""
[gateway]
ae_title = "DICOMVEIL"
port = {port}
state_dir = "{state}"
timeout = 10
retry_initial = 0.1
retry_max = 0.5

[[route]]
name = "research"
calling_ae = ["SCANNER"]
profile = "ps3.15-basic"
key = "@KEY@"
{'output = "out"' if output else ""}

[route.forward]
host = "127.0.0.1"
port = {dest_port}
ae_title = "DEST"
"""


def check_received(corpus: Corpus, dest: Path, scratch: Path) -> None:
    files = received_files(dest)
    assert set(files) == set(corpus.expected)
    for sop, path in files.items():
        assert body(path) == expected_body(corpus, sop, scratch), sop


# --------------------------------------------------------------------------------------------
# Store and forward


@needs_dcmtk
def test_store_and_forward_are_byte_identical_to_run(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    dest_port = free_port()
    storescp(procs, tmp_path / "dest", dest_port)
    config = write_config(tmp_path, gateway_config(0, tmp_path / "state", dest_port), corpus)
    gateway = gateways(config)

    sent = storescu(gateway.port, corpus.folder)  # ct1, mr1, ct2 and the burned-in us
    assert sent.returncode == 0, sent.stderr

    wait_for(lambda: len(received_files(tmp_path / "dest")) == 7, "7 instances at storescp")
    check_received(corpus, tmp_path / "dest", tmp_path)
    written = {p.stem: p for p in (tmp_path / "out").rglob("*.dcm")}
    assert set(written) == set(corpus.expected)
    for sop, path in written.items():
        assert path.read_bytes() == corpus.expected[sop]
        assert path.relative_to(tmp_path / "out").as_posix() == corpus.relative[sop]

    settings = load_config(config)
    wait_for(lambda: read_status(settings)["routes"]["research"]["forwarded"] == 7, "status")
    route = read_status(settings)["routes"]["research"]
    assert route["received"] == 8 and route["written"] == 7 and route["withheld"] == 1
    assert route["failed"] == 0 and route["queue_depth"] == 0
    result = CliRunner().invoke(app, ["gateway", "status", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["routes"]["research"]["withheld"] == 1
    validate(document, "gateway-status")
    status_text = (tmp_path / "state" / "status.json").read_text()
    for name in corpus.names:
        assert name.split("^")[0] not in status_text


def _client(
    port: int,
    calling: str = "SCANNER",
    contexts: list[str] | None = None,
    tls_args: tuple[ssl.SSLContext, str] | None = None,
) -> Association:
    ae = ClientAE(ae_title=calling)  # pynetdicom's AE, closing sockets that fail to connect
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    requested = [build_context(c) for c in (contexts or [VERIFICATION])]
    return ae.associate(
        "127.0.0.1", port, contexts=requested, ae_title="DICOMVEIL", tls_args=tls_args
    )


def test_store_statuses(tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]) -> None:
    """Withheld: 0xB006 (a warning) and never written; a truncated data set: 0xC000; a data
    set that is not the instance the request announced: 0xA900. The gateway goes on."""
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    events = Recorder()
    gateway = gateways(write_config(tmp_path, text, corpus), events)
    us = next((corpus.folder / "us").iterdir())
    ct = sorted((corpus.folder / "ct1").iterdir())[0]
    data = ct.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) - 300])  # ends inside the pixel data
    meta, offset = split_dataset(ct)
    announced = tmp_path / "announced.dcm"  # file meta (the request) names another instance
    head = data[:offset].replace(
        str(meta.MediaStorageSOPInstanceUID).encode(),
        b"2.25.1" + b"0" * (len(str(meta.MediaStorageSOPInstanceUID)) - 6),
    )
    announced.write_bytes(head + data[offset:])
    statuses = _send(gateway.port, [us, truncated, announced, ct], str(dcmread(us).SOPClassUID))
    assert statuses == [
        StoreStatus.WITHHELD_WARNING,
        StoreStatus.MALFORMED,
        StoreStatus.MISMATCH,
        StoreStatus.SUCCESS,
    ]
    written = list((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 1 and written[0].read_bytes() == corpus.expected[written[0].stem]
    settings = load_config(tmp_path / "gateway.toml")
    wait_for(lambda: read_status(settings)["routes"]["research"]["received"] == 4, "status")
    route = read_status(settings)["routes"]["research"]
    assert (route["written"], route["withheld"], route["failed"]) == (1, 1, 2)
    errors = " ".join(e["message"] for e in read_status(settings)["last_errors"])
    assert "truncated" in errors and "differs from the C-STORE request" in errors
    kinds = [event.kind.value for event in events.seen]
    assert kinds.count("received") == 4 and kinds.count("failed") == 2
    assert kinds.count("withheld") == 1 and kinds.count("written") == 1
    (written_event,) = [e for e in events.seen if e.kind.value == "written"]
    assert written_event.result is not None and written_event.result.output == written[0]
    assert written_event.calling_ae == "SCANNER" and written_event.route == "research"


def test_the_release_gate_stops_what_the_verifier_flags(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    """The gate is on by default: a route whose profile keeps a private element holding the
    operator's name (a rule written carelessly; one holding the patient's own the engine
    removes) gets its instances withheld with the gate's reason, never written to the
    folder nor queued, kept for review in the state folder; ``verify = false`` on the route
    lets the same instance through."""
    source = sorted((corpus.folder / "ct1").iterdir())[0]
    ds = dcmread(source)
    ds.OperatorsName = "OPERATORSON^OLIVE"
    block = ds.private_block(0x0009, "ACME GATEWAY GATE", create=True)
    block.add_new(0x10, "LO", "Olive Operatorson")
    planted = tmp_path / "planted.dcm"
    ds.save_as(planted, enforce_file_format=True)
    (tmp_path / "keep.toml").write_text(
        'extends = "ps3.15-basic"\n[[rules]]\n'
        'private = {creator = "ACME GATEWAY GATE", group = "0009", element = "xx10"}\n'
        'action = "K"\n',
        encoding="utf-8",
    )
    text = gateway_config(0, tmp_path / "state", free_port(), output=True)
    text = text.replace('profile = "ps3.15-basic"', 'profile = "keep.toml"')
    events = Recorder()
    gateway = gateways(write_config(tmp_path, text, corpus), events)
    assert _send(gateway.port, [planted]) == [StoreStatus.WITHHELD_WARNING]
    assert not list((tmp_path / "out").rglob("*.dcm"))
    assert not list((tmp_path / "state" / "queue").rglob("*.dcm"))
    (kept,) = (tmp_path / "state" / "gated" / "research").rglob("*.dcm")
    assert kept.stat().st_mode & 0o077 == 0
    (withheld,) = [e for e in events.seen if e.kind.value == "withheld"]
    assert withheld.result is not None
    reason = withheld.result.reason
    assert reason.startswith("release gate: ") and "leak name" in reason, reason
    assert "OPERATORSON" not in reason.upper()
    # No staged file left behind (the stage's empty layout folders stay for the next one),
    # nor the association's spool file once the gateway has seen the connection close.
    wait_for(
        lambda: not [p for p in (tmp_path / "state" / "spool").rglob("*") if p.is_file()],
        "the spool emptied",
    )
    gateway.stop()

    other = tmp_path / "ungated"
    other.mkdir()
    (other / "keep.toml").write_text((tmp_path / "keep.toml").read_text(), encoding="utf-8")
    text = gateway_config(0, other / "state", free_port()).split("[route.forward]")[0]
    text = text.replace('profile = "ps3.15-basic"', 'profile = "keep.toml"\nverify = false')
    gateway = gateways(write_config(other, text, corpus))
    assert _send(gateway.port, [planted]) == [StoreStatus.SUCCESS]
    assert len(list((other / "out").rglob("*.dcm"))) == 1


def test_the_gateway_learns_the_patient_as_it_receives(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    """It cannot read ahead: an alias that the patient's first instance holds is cleaned
    from the comment of an instance received after it (clean-descriptors)."""
    first, second = sorted((corpus.folder / "ct1").iterdir())[:2]
    alias = "Zqxwvgatealias"
    for path, edit_ in ((first, "alias"), (second, "comment")):
        ds = dcmread(path)
        if edit_ == "alias":
            ds.OtherPatientNames = f"{alias.upper()}^BOB"
        else:
            ds.ImageComments = f"also known as {alias}"
        ds.save_as(tmp_path / f"{edit_}.dcm", enforce_file_format=True)
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    text = text.replace(
        'profile = "ps3.15-basic"', 'profile = "ps3.15-basic"\noptions = ["clean-descriptors"]'
    )
    gateway = gateways(write_config(tmp_path, text, corpus))
    statuses = _send(gateway.port, [tmp_path / "alias.dcm", tmp_path / "comment.dcm"])
    assert statuses == [StoreStatus.SUCCESS, StoreStatus.SUCCESS]
    comments = [str(dcmread(p).get("ImageComments", "")) for p in (tmp_path / "out").rglob("*.dcm")]
    assert "also known as [NAME]" in comments, comments


class Recorder:
    """A GatewayEvents implementation that keeps every event (an audit trail's stand-in)."""

    def __init__(self) -> None:
        self.seen: list[GatewayEvent] = []

    def received(self, event: GatewayEvent) -> None:
        self.seen.append(event)

    written = forwarded = withheld = failed = received


def test_limits(tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]) -> None:
    """One association at a time (the second is rejected: local limit exceeded), and at
    most two instances per association (the third: 0xA700, out of resources)."""
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    text = text.replace("timeout = 10", "timeout = 10\nmax_associations = 1")
    text = text.replace("timeout = 10", "timeout = 10\nmax_instances_per_association = 2")
    gateway = gateways(write_config(tmp_path, text, corpus))
    files = sorted((corpus.folder / "ct1").iterdir())
    first = _client(gateway.port, contexts=[CT_STORAGE])
    assert first.is_established
    try:
        # rejected-transient (2), service provider presentation (3), local limit exceeded (2)
        assert _rejection(_client(gateway.port)) == (2, 3, 2)
        statuses = [int(first.send_c_store(f).Status) for f in files]
    finally:
        first.release()
    assert statuses == [0, 0, StoreStatus.OUT_OF_RESOURCES]
    wait_for(lambda: _echo_ok(gateway.port), "serving again after the release")


def test_the_association_limit_admits_exactly_that_many_at_once(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    """max_associations = 2 and six associations asked for at the same moment: two are
    established, four rejected (local limit exceeded). pynetdicom's own limit counts every
    association still being negotiated, so all of them could be rejected (0 of 4 in an
    independent black-box test)."""
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    text = text.replace("timeout = 10", "timeout = 10\nmax_associations = 2")
    gateway = gateways(write_config(tmp_path, text, corpus))
    start = threading.Barrier(6)
    results: list[Association] = []
    lock = threading.Lock()

    def ask() -> None:
        start.wait(10)
        assoc = _client(gateway.port, contexts=[CT_STORAGE])
        with lock:
            results.append(assoc)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        established = [a for a in results if a.is_established]
        rejected = [a for a in results if a.is_rejected]
        assert len(established) == 2, [(a.is_established, a.is_rejected) for a in results]
        assert len(rejected) == 4
        assert {_rejection(a) for a in rejected} == {(2, 3, 2)}
    finally:
        for assoc in results:
            if assoc.is_established:
                assoc.release()
    wait_for(lambda: _echo_ok(gateway.port), "serving again after the releases")


def test_a_second_gateway_on_the_same_state_folder_is_refused(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    """A second gateway on a running one's state folder would empty its spool (what it is
    receiving) and write over its status (found by an independent black-box test): it does
    not start, and the first keeps serving."""
    from dicomveil.errors import DicomveilError

    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    config = write_config(tmp_path, text, corpus)
    first = gateways(config)
    second = Gateway(load_config(config))
    with pytest.raises(DicomveilError, match="another gateway uses the state folder"):
        second.start()
    second.stop()
    assert _echo_ok(first.port)
    assert _send(first.port, sorted((corpus.folder / "ct1").iterdir())[:1]) == [0]


def _send(port: int, files: list[Path], *sop_classes: str) -> list[int]:
    """C-STORE each file's bytes as they are (pynetdicom's chunked mode: no re-encoding)."""
    from pynetdicom import _config

    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = _client(port, contexts=[CT_STORAGE, *sop_classes])
        assert assoc.is_established
        try:
            return [int(assoc.send_c_store(f).Status) for f in files]
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def test_an_association_overwrites_one_spool_file_removed_when_it_ends(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    """Each open association has one spool file, which every instance it sends overwrites
    (shorter after longer: no bytes of the one before left at its end), and which is removed
    when the association is released or aborted; the outputs are the expected bytes."""
    from pynetdicom import _config

    spool = tmp_path / "state" / "spool"
    gateway = gateways(
        write_config(
            tmp_path, gateway_config(0, tmp_path / "state", free_port(), output=True), corpus
        )
    )
    files = sorted((corpus.folder / "ct1").iterdir())[:3]
    sizes = [f.stat().st_size for f in files]
    longest = files[sizes.index(max(sizes))]
    order = [longest, *[f for f in files if f != longest]]  # the longest first

    def spooled() -> list[Path]:
        return [p for p in spool.iterdir() if p.is_file()]

    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        first = _client(gateway.port, contexts=[CT_STORAGE])
        second = _client(gateway.port, contexts=[CT_STORAGE])
        assert first.is_established and second.is_established
        assert int(first.send_c_store(order[0]).Status) == StoreStatus.SUCCESS
        assert int(second.send_c_store(order[0]).Status) == StoreStatus.SUCCESS
        assert len(spooled()) == 2  # one per open association
        for path in order[1:]:
            assert int(first.send_c_store(path).Status) == StoreStatus.SUCCESS
        assert len(spooled()) == 2
        # the first association's file holds its last instance, and nothing after it
        held = {p.read_bytes()[-64:] for p in spooled()}
        assert order[-1].read_bytes()[-64:] in held
        sizes_now = sorted(p.stat().st_size for p in spooled())
        assert sizes_now[0] < sizes_now[1]  # shorter than the longest, the other one's
        first.release()
        wait_for(lambda: len(spooled()) == 1, "the released association's spool removed")
        second.abort()
        wait_for(lambda: not spooled(), "the aborted association's spool removed")
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    written = {p.stem: p.read_bytes() for p in (tmp_path / "out").rglob("*.dcm")}
    assert len(written) == len(order)
    assert all(corpus.expected[stem] == data for stem, data in written.items())


def test_an_association_ending_during_a_store_leaves_its_spool_to_that_store(
    tmp_path: Path, corpus: Corpus
) -> None:
    """The connection closes (pynetdicom's DUL thread) while an instance is in the pipeline:
    the spool file stays until that instance is done with it (its worker may not have read
    it yet), then goes; closed between instances, it goes at once."""
    import io
    from types import SimpleNamespace
    from typing import cast

    from pynetdicom.events import Event

    from dicomveil.gateway.route import Peer, Route
    from dicomveil.gateway.status import StatusBoard
    from dicomveil.gateway.store import Stored, StoreHandler, close_spool
    from dicomveil.runs.batch import FileResult, Task

    seen: list[bool] = []

    class Closing(StoreHandler):
        def pipeline(
            self, route: Route, spool: Path, task: Task, expect: tuple[str, str]
        ) -> Stored:
            close_spool(peer)  # as the DUL thread would, mid-store
            seen.append(spool.exists())
            return Stored(FileResult(task, Outcome.WRITTEN, ""), StoreStatus.SUCCESS)

    settings = load_config(
        write_config(
            tmp_path, gateway_config(0, tmp_path / "state", free_port(), output=True), corpus
        )
    )
    board = StatusBoard(tmp_path / "status.json", ["research"])
    handler = Closing(settings, tmp_path, board, lambda kind, event: None)
    peer = Peer(cast(Route, None), "SCANNER", "DICOMVEIL", "127.0.0.1", 7)
    request = SimpleNamespace(
        AffectedSOPClassUID=CT_STORAGE, AffectedSOPInstanceUID="1.2.3", DataSet=io.BytesIO(b"x")
    )
    event = cast(Event, SimpleNamespace(request=request, context=SimpleNamespace(
        transfer_syntax=ExplicitVRLittleEndian
    )))  # fmt: skip
    stored = handler._store(event, peer, Task(tmp_path / "one"))
    assert stored.status == StoreStatus.SUCCESS
    assert seen == [True]  # there while the store had it
    assert not (tmp_path / "rx-7.dcm").exists() and peer.spool is None
    # between instances: the file goes as the association ends
    later = Peer(cast(Route, None), "SCANNER", "DICOMVEIL", "127.0.0.1", 8)
    later.spool = tmp_path / "rx-8.dcm"
    later.spool.write_bytes(b"x")
    close_spool(later)
    assert not (tmp_path / "rx-8.dcm").exists()


def test_the_spool_header_is_the_file_meta_pydicom_reads(tmp_path: Path) -> None:
    """The received data set is spooled with a File Meta Information header written
    without pydicom (speed): pydicom reads it, with the right group length and values."""
    source = PYDICOM_DATA / "test_files" / "CT_small.dcm"
    meta, offset = split_dataset(source)
    dataset = source.read_bytes()[offset:]
    sop_class, sop = str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID)
    for syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"):  # odd and even lengths
        path = tmp_path / f"{syntax}.dcm"
        path.write_bytes(spool_header(sop_class, sop, syntax) + dataset)
        read = read_file_meta_info(path)
        assert (read.MediaStorageSOPClassUID, read.MediaStorageSOPInstanceUID) == (sop_class, sop)
        assert read.TransferSyntaxUID == syntax
        assert read.FileMetaInformationVersion == b"\x00\x01"
        group = sum(
            (len(e.value) + 1) // 2 * 2 + (12 if e.VR == "OB" else 8)  # UIDs padded to even
            for e in read
            if e.tag != 0x00020000
        )
        assert read.FileMetaInformationGroupLength == group
    ds = dcmread(tmp_path / "1.2.840.10008.1.2.1.dcm")
    assert ds.PatientName == dcmread(source).PatientName


def test_a_worker_that_dies_is_replaced(
    tmp_path: Path,
    corpus: Corpus,
    gateways: Callable[..., Gateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 16: instances are de-identified by worker processes; one killed (out of memory,
    say) fails the instance it held, and a new worker takes its place. The log says so in
    one line, without a traceback (it had one: found by an independent black-box test)."""
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    text = text.replace("timeout = 10\n", "timeout = 10\nworkers = 1\n", 1)
    gateway = gateways(write_config(tmp_path, text, corpus))
    pool = gateway._store.pool
    assert pool is not None and pool.workers == 1
    cts = sorted((corpus.folder / "ct1").iterdir())
    assert _send(gateway.port, cts[:1]) == [StoreStatus.SUCCESS]
    worker = pool._shards[0].process
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10)
    statuses = _send(gateway.port, cts[1:])
    assert statuses[0] == StoreStatus.PROCESSING_FAILURE and statuses[1:] == [
        StoreStatus.SUCCESS
    ] * (len(cts) - 2)
    assert _send(gateway.port, cts[1:2]) == [StoreStatus.SUCCESS]
    failed = [r for r in caplog.records if "storing failed" in r.getMessage()]
    assert failed and all(r.exc_info is None for r in failed)
    assert "GatewayWorkerError" in failed[0].getMessage()
    written = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == len(cts)
    for path in written:
        assert path.read_bytes() == corpus.expected[path.stem]


# --------------------------------------------------------------------------------------------
# Failures of the destination and of the gateway


@dataclass
class _Forwarding:
    """A gateway forwarding to a storescp of its own (:func:`_forwarding_to_storescp`)."""

    gateway: Gateway
    config: Path  # the gateway's configuration file
    dest: Path  # the folder storescp writes to
    dest_port: int
    storescp: subprocess.Popen[bytes]


def _forwarding_to_storescp(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> _Forwarding:
    dest_port = free_port()
    dest = tmp_path / "dest"
    process = storescp(procs, dest, dest_port)
    config = write_config(
        tmp_path, gateway_config(0, tmp_path / "state", dest_port, output=False), corpus
    )
    return _Forwarding(gateways(config), config, dest, dest_port, process)


@needs_dcmtk
def test_destination_down_then_back(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    forwarding = _forwarding_to_storescp(tmp_path, corpus, procs, gateways)
    gateway, config, dest, dest_port = (
        forwarding.gateway, forwarding.config, forwarding.dest, forwarding.dest_port
    )  # fmt: skip
    assert storescu(gateway.port, corpus.folder / "ct1").returncode == 0
    wait_for(lambda: len(received_files(dest)) == 3, "the first series at storescp")

    procs.stop(forwarding.storescp)
    sent = storescu(gateway.port, corpus.folder / "mr1", corpus.folder / "ct2")
    assert sent.returncode == 0, sent.stderr  # acknowledged: safely queued
    settings = load_config(config)

    def retrying() -> bool:
        # The status file is rewritten every second or so: wait for one that shows the
        # retries, then check its counts.
        route = read_status(settings)["routes"]["research"]
        return bool((route.get("forwarding") or {}).get("attempts", 0) >= 2 and route["forwarded"])

    wait_for(retrying, "retries while the destination is down")
    route = read_status(settings)["routes"]["research"]
    assert route["queue_depth"] == 4 and route["forwarded"] == 3

    storescp(procs, dest, dest_port)
    wait_for(lambda: len(received_files(dest)) == 7, "the rest after the destination is back")
    check_received(corpus, dest, tmp_path)
    wait_for(lambda: read_status(settings)["routes"]["research"]["queue_depth"] == 0, "empty")


@needs_dcmtk
def test_an_instance_the_destination_never_accepts_goes_to_failed(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    """pydicom's MR_small_RLE, forwarded to a storescp that accepts no RLE: the destination
    accepts none of the association's contexts (pynetdicom then aborts it), which is an
    answer for good: the entry goes to failed/ with the reason, the queue moves on (it was
    retried forever as "cannot connect", found by an independent black-box test)."""
    forwarding = _forwarding_to_storescp(tmp_path, corpus, procs, gateways)
    gateway, dest = forwarding.gateway, forwarding.dest
    rle = tmp_path / "rle"
    rle.mkdir()
    shutil.copy(PYDICOM_DATA / "test_files" / "MR_small_RLE.dcm", rle / "MR_small_RLE.dcm")
    sent = subprocess.run(
        [tool("storescu"), "-xr", *STORESCU_ARGS, "127.0.0.1", str(gateway.port), str(rle)],
        capture_output=True, text=True, timeout=120, check=False, env=DCMTK_ENV,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    failed = tmp_path / "state" / "queue" / "research" / "failed"
    wait_for(lambda: failed.exists() and any(failed.glob("*.json")), "the entry in failed/")
    reasons = [json.loads(p.read_text())["reason"] for p in failed.glob("*.json")]
    assert any("does not accept" in r for r in reasons), reasons
    assert storescu(gateway.port, corpus.folder / "ct1").returncode == 0
    wait_for(lambda: len(received_files(dest)) == 3, "the next instances at storescp")


@needs_dcmtk
def test_one_instance_sent_in_several_syntaxes_at_once_is_never_refused(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    """pydicom's MR_small in three encodings, sent at once, four times: each copy replaces
    the queued one, and the forwarder sends whichever is queued when it claims it, in its
    own syntax. A copy replaced between reading its syntax and claiming it went to failed/
    as 'cannot be sent' (found by an independent black-box test)."""
    forwarding = _forwarding_to_storescp(tmp_path, corpus, procs, gateways)
    gateway, dest = forwarding.gateway, forwarding.dest
    files = PYDICOM_DATA / "test_files"
    sends = [("", "MR_small.dcm"), ("-xi", "MR_small_implicit.dcm"),
             ("-xb", "MR_small_bigendian.dcm")]  # fmt: skip
    for _ in range(4):
        running = [
            subprocess.Popen(
                [
                    tool("storescu"),
                    *([flag] if flag else []),
                    *STORESCU_ARGS[:4],
                    "127.0.0.1",
                    str(gateway.port),
                    str(files / name),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=DCMTK_ENV,
            )
            for flag, name in sends
        ]
        assert [p.wait(60) for p in running] == [0, 0, 0]
    queue = tmp_path / "state" / "queue" / "research"
    wait_for(lambda: not [p for p in queue.glob("*.dcm*")], "the queue drained")
    failed = queue / "failed"
    assert not (failed.exists() and list(failed.iterdir())), [
        json.loads(p.read_text())["reason"] for p in failed.glob("*.json")
    ]
    assert len(received_files(dest)) == 1


@needs_dcmtk
def test_sigkill_loses_nothing(tmp_path: Path, corpus: Corpus, procs: Processes) -> None:
    """The gateway (``dicomveil gateway --config``) is killed with SIGKILL while instances
    wait in its queue and storescu is sending; after a restart everything arrives, byte
    for byte. The sender resends what was not acknowledged; instances the destination
    receives twice are identical."""
    port, dest_port = free_port(), free_port()
    config = write_config(
        tmp_path, gateway_config(port, tmp_path / "state", dest_port, output=False), corpus
    )
    command = [DICOMVEIL, "gateway", "--config", str(config)]
    gateway = procs.start(command, "gateway.log", port)
    sender = subprocess.Popen(
        [tool("storescu"), *STORESCU_ARGS, "127.0.0.1", str(port), *map(str, corpus.storable)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENV,
    )
    try:
        queue = tmp_path / "state" / "queue" / "research"
        wait_for(lambda: len(list(queue.glob("*.dcm"))) >= 3, "instances queued")
        procs.stop(gateway, signal.SIGKILL)
    finally:
        sender.wait(60)
    assert gateway.returncode == -signal.SIGKILL

    dest = tmp_path / "dest"
    storescp(procs, dest, dest_port)
    restarted = procs.start(command, "gateway.log", port)
    resent = storescu(port, *corpus.storable)  # the sender retries what it could not send
    assert resent.returncode == 0, resent.stderr
    wait_for(lambda: len(received_files(dest)) == 7, "every instance after the restart")
    check_received(corpus, dest, tmp_path)
    wait_for(lambda: not list(queue.iterdir()) or _only_state(queue), "an empty queue")
    assert procs.stop(restarted, signal.SIGTERM) == 0  # a clean stop on SIGTERM


def _only_state(queue: Path) -> bool:
    return {p.name for p in queue.iterdir()} <= {"state.json"}


# --------------------------------------------------------------------------------------------
# Queries through the gateway


def dcmqrscp_config(folder: Path, port: int) -> Path:
    storage = folder / "storage"
    storage.mkdir(parents=True)
    path = folder / "dcmqrscp.cfg"
    path.write_text(
        f"""NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
PACS {storage} RW (100, 100mb) ANY
AETable END
""",
        encoding="utf-8",
    )
    return path


@needs_dcmtk
def test_find_through_the_gateway(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    upstream_port = start_pacs(procs, tmp_path, [*corpus.storable, corpus.outsider], verbose=True)
    gateway = gateways(query_config(tmp_path, corpus, upstream_port))
    surname = sorted(corpus.names)[0].split("^")[0]
    answers = tmp_path / "answers"
    answers.mkdir()
    found = subprocess.run(
        [
            *(tool("findscu"), "-aet", "RESEARCHER", "-aec", "DICOMVEIL", "-S", "-X"),
            *("-od", str(answers), "-k", "QueryRetrieveLevel=STUDY"),
            *("-k", f"PatientName={surname}*", "-k", "PatientID", "-k", "StudyInstanceUID"),
            *("-k", "StudyDate=20240101-", "-k", "AccessionNumber"),
            *("127.0.0.1", str(gateway.port)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=DCMTK_ENV,
    )
    assert found.returncode == 0, found.stdout + found.stderr
    responses = [dcmread(p) for p in sorted(answers.iterdir())]
    # The name and the date range were not passed upstream; the answers are matched against
    # them once de-identified, and no de-identified answer holds the real surname: none.
    assert responses == []
    # Universal matching for the name: both patients' studies answer, de-identified.
    everything = find(
        tmp_path, gateway.port, "QueryRetrieveLevel=STUDY", "PatientName", "PatientID",
        "StudyInstanceUID", "AccessionNumber",
    )  # fmt: skip
    expected = {
        (corpus.pseudonyms[pid], uid_new)
        for pid in corpus.pseudonyms
        for uid_old, uid_new in corpus.study_uids.items()
        if uid_old in _studies_of(corpus, pid)
    }
    got = {(str(r.PatientID), str(r.StudyInstanceUID)) for r in everything}
    assert got == expected and len(got) == 2
    for response in everything:
        assert str(response.PatientName) not in corpus.names
        assert str(response.get("AccessionNumber", "") or "") == ""
        assert "IssuerOfPatientID" not in response  # not asked for
    # What the upstream was asked (dcmqrscp -v dumps the identifier): every key, all empty.
    log = (tmp_path / "dcmqrscp.log").read_text(errors="replace")
    assert surname not in log and "20240101-" not in log
    block = log.split("Find SCP Request Identifiers:", 1)[1].split("Find SCP Response", 1)[0]
    keys = {line.split()[-1]: line for line in block.splitlines() if line.startswith("I: (")}
    for keyword in ("PatientName", "StudyDate", "PatientID", "StudyInstanceUID"):
        assert "(no value available)" in keys[keyword], keys[keyword]
    assert "[STUDY]" in keys["QueryRetrieveLevel"]


def start_pacs(
    procs: Processes, folder: Path, holding: list[Path], *, verbose: bool = False
) -> int:
    """dcmqrscp (the clinical archive, AE title PACS) in ``folder / "qr"``, filled with the
    files of ``holding``; its port."""
    port = free_port()
    config = dcmqrscp_config(folder / "qr", port)
    procs.start([tool("dcmqrscp"), *(["-v"] if verbose else []), "-c", str(config)],
                "dcmqrscp.log", port)  # fmt: skip
    fill_pacs(port, holding)
    return port


def run_on_archive(folder: Path, map_dir: Path | None = None) -> dict[str, Path]:
    """What `dicomveil run` writes for the originals as the archive of :func:`start_pacs`
    holds them, by de-identified SOP Instance UID."""
    archived = run(
        [folder / "qr" / "storage"],
        RunConfig(
            profile=Profile.named("ps3.15-basic"), key=KEY, output=folder / "run",
            map_dir=map_dir, workers=1, today=dt.date.today(),
        ),
    )  # fmt: skip
    assert archived.count(Outcome.FAILED) == 0, [r.reason for r in archived.results]
    return {r.output.stem: r.output for r in archived.written if r.output is not None}


def fill_pacs(port: int, folders: list[Path]) -> None:
    """Store the folders into dcmqrscp (the clinical archive)."""
    filled = subprocess.run(
        [tool("storescu"), "-aec", "PACS", "+sd", "+r", "127.0.0.1", str(port)]
        + [str(p) for p in folders],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=DCMTK_ENV,
    )
    assert filled.returncode == 0, filled.stderr


def query_config(
    folder: Path,
    corpus: Corpus,
    upstream_port: int,
    *,
    maps: bool = True,
    extra: str = "",
    database: str = "",
) -> Path:
    """A gateway with a query route whose cohort is the corpus' run (its map folder)."""
    maps_folder = corpus.maps if maps else None
    return cohort_config(
        folder, corpus.key, upstream_port, maps_folder, extra=extra, database=database
    )


def cohort_config(
    folder: Path,
    key: Path,
    upstream_port: int,
    maps: Path | None,
    *,
    extra: str = "",
    database: str = "",
    workers: int | None = None,
) -> Path:
    """A gateway with a query route (calling AE RESEARCHER) to the archive, its cohort
    imported from ``maps`` (a `dicomveil run --map-dir` folder), in ``database`` (a
    PostgreSQL URL; the default SQLite file in the state folder when empty); ``workers``
    processes (None: the default, one per core)."""
    cohort = f'cohort_maps = ["{maps}"]' if maps is not None else ""
    path = folder / "gateway.toml"
    path.write_text(
        f"""
[gateway]
port = 0
state_dir = "state"
timeout = 10
{f'cohort = "{database}"' if database else ""}
{f"workers = {workers}" if workers is not None else ""}

[[route]]
name = "query"
calling_ae = ["RESEARCHER"]
key = "@KEY@"

[route.query]
host = "127.0.0.1"
port = {upstream_port}
ae_title = "PACS"
{cohort}
{extra}""".replace("@KEY@", str(key)),
        encoding="utf-8",
    )
    return path


def find(
    folder: Path, port: int, *keys: str, model: str = "-S", calling: str = "RESEARCHER"
) -> list[Dataset]:
    """findscu through the gateway: the answers, in order."""
    answers = folder / f"answers-{len(list(folder.glob('answers-*')))}"
    answers.mkdir(parents=True)
    args = [tool("findscu"), "-aet", calling, "-aec", "DICOMVEIL", model, "-X"]
    args += ["-od", str(answers)]
    for key in keys:
        args += ["-k", key]
    done = subprocess.run(
        [*args, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=DCMTK_ENV,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [dcmread(p) for p in sorted(answers.iterdir())]


def _originals(folders: list[Path]) -> list[Dataset]:
    return [dcmread(p, stop_before_pixels=True) for f in folders for p in sorted(f.iterdir())]


@pytest.fixture(params=["sqlite", "postgres"])
def cohort_db(request: pytest.FixtureRequest) -> str:
    """Where the gateway's cohort is: "" (its SQLite file) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@needs_dcmtk
def test_find_answers_match_the_values_that_could_not_pass_upstream(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    """A name or a date in a C-FIND cannot go upstream as written (it is sent empty): the
    de-identified answers are matched against it, as QIDO-RS does. Every cohort study came
    back for PatientName=Nobody and for any StudyDate (found by an independent black-box
    test)."""
    upstream_port = start_pacs(procs, tmp_path, list(corpus.storable))
    port = gateways(query_config(tmp_path, corpus, upstream_port)).port
    level = "QueryRetrieveLevel=STUDY"
    every = find(tmp_path, port, level, "StudyInstanceUID", "PatientName", "StudyDate")
    assert len(every) >= 2
    names = {str(a.PatientName) for a in every}
    name = sorted(names)[0]
    by_name = find(tmp_path, port, level, "StudyInstanceUID", f"PatientName={name}")
    assert by_name and {str(a.PatientName) for a in by_name} == {name}
    assert len(by_name) == sum(str(a.PatientName) == name for a in every)
    assert find(tmp_path, port, level, "StudyInstanceUID", "PatientName=Nobody") == []
    assert find(tmp_path, port, level, "StudyInstanceUID", "StudyDate=19000101") == []


@needs_dcmtk
def test_queries_are_confined_to_the_cohort_and_translated(
    tmp_path: Path,
    corpus: Corpus,
    procs: Processes,
    gateways: Callable[..., Gateway],
    cohort_db: str,
) -> None:
    """Issue 16: pseudonymous keys are translated to the originals upstream; answers come
    only from the cohort (the run's maps); a patient outside it is invisible. On the
    default SQLite cohort and on PostgreSQL."""
    upstream_port = start_pacs(procs, tmp_path, [*corpus.storable, corpus.outsider], verbose=True)
    port = gateways(query_config(tmp_path, corpus, upstream_port, database=cohort_db)).port
    inside = _originals(corpus.storable)
    outside = _originals([corpus.outsider])
    new = corpus.study_uids
    p1 = str(inside[0].PatientID)
    pseudonym = corpus.pseudonyms[p1]

    # PATIENT level, every patient: the cohort's two pseudonyms, not the outsider.
    everyone = find(tmp_path, port, "QueryRetrieveLevel=PATIENT", "PatientID", model="-P")
    assert sorted(str(a.PatientID) for a in everyone) == sorted(corpus.pseudonyms.values())
    # PATIENT level by a pseudonym, and by a wildcard on it.
    one = find(tmp_path, port, "QueryRetrieveLevel=PATIENT", f"PatientID={pseudonym}", model="-P")
    assert [str(a.PatientID) for a in one] == [pseudonym]
    wild = find(
        tmp_path, port, "QueryRetrieveLevel=PATIENT", f"PatientID={pseudonym[:-2]}*", model="-P"
    )
    assert [str(a.PatientID) for a in wild] == [pseudonym]
    # STUDY level by the pseudonym: that patient's studies, with their new UIDs.
    studies = find(
        tmp_path, port, "QueryRetrieveLevel=STUDY", f"PatientID={pseudonym}", "StudyInstanceUID"
    )
    assert {str(a.StudyInstanceUID) for a in studies} == {
        new[str(ds.StudyInstanceUID)] for ds in inside if str(ds.PatientID) == p1
    }
    # SERIES level by a new Study Instance UID; IMAGE level by new study and series UIDs.
    study = str(inside[0].StudyInstanceUID)
    series = find(
        tmp_path, port, "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={new[study]}",
        "SeriesInstanceUID",
    )  # fmt: skip
    assert {str(a.SeriesInstanceUID) for a in series} == {
        new[str(ds.SeriesInstanceUID)] for ds in inside if str(ds.StudyInstanceUID) == study
    }
    one_series = str(inside[0].SeriesInstanceUID)
    images = find(
        tmp_path, port, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={new[study]}",
        f"SeriesInstanceUID={new[one_series]}", "SOPInstanceUID",
    )  # fmt: skip
    assert sorted(str(a.SOPInstanceUID) for a in images) == sorted(
        new[str(ds.SOPInstanceUID)] for ds in inside if str(ds.SeriesInstanceUID) == one_series
    )
    # The outsider: by their real ID, their real study UID, or a made-up pseudonym: nothing.
    stranger = outside[0]
    for keys in (
        ("QueryRetrieveLevel=PATIENT", f"PatientID={stranger.PatientID}"),
        ("QueryRetrieveLevel=PATIENT", "PatientID=DVNOSUCHPATIENT"),
    ):
        assert find(tmp_path, port, *keys, model="-P") == []
    by_uid = ("QueryRetrieveLevel=SERIES", f"StudyInstanceUID={stranger.StudyInstanceUID}")
    assert find(tmp_path, port, *by_uid, "SeriesInstanceUID") == []
    everything = find(tmp_path, port, "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert {str(a.StudyInstanceUID) for a in everything} == {
        new[str(ds.StudyInstanceUID)] for ds in inside
    }
    # The upstream was asked for the original ID (translated), never for the pseudonym.
    log = (tmp_path / "dcmqrscp.log").read_text(errors="replace")
    assert p1 in log and pseudonym not in log


@needs_dcmtk
def test_another_patient_under_a_cohort_study_uid_is_invisible(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    """An archive holding another patient's instance under a cohort study's UID (a reused
    UID, a study reconciled onto someone else) answers two study records: only the
    cohort patient's is answered (found by a black-box test: both were)."""
    inside = _originals(corpus.storable)
    intruder = dcmread(next(p for p in sorted(corpus.outsider.rglob("*")) if p.is_file()))
    intruder.StudyInstanceUID = inside[0].StudyInstanceUID
    intruder.SeriesInstanceUID = generate_uid()
    intruder.SOPInstanceUID = intruder.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    (tmp_path / "intruder").mkdir()
    intruder.save_as(tmp_path / "intruder" / "IM1.dcm")
    upstream = start_pacs(procs, tmp_path, [*corpus.storable, tmp_path / "intruder"])
    port = gateways(query_config(tmp_path, corpus, upstream)).port

    studies = find(tmp_path, port, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID")

    assert studies and {str(a.PatientID) for a in studies} <= set(corpus.pseudonyms.values())
    assert len(studies) == len({str(a.StudyInstanceUID) for a in studies})


@needs_dcmtk
def test_stored_instances_join_the_cohort(
    tmp_path: Path,
    corpus: Corpus,
    procs: Processes,
    gateways: Callable[..., Gateway],
    cohort_db: str,
) -> None:
    """A storing route adds what it writes to its project's cohort: a query route with
    the same key answers for it, one with another key does not; the cohort outlives the
    gateway (a second one on the same database answers for it)."""
    upstream_port = start_pacs(procs, tmp_path, [*corpus.storable, corpus.outsider])
    other_key = tmp_path / "other.key"
    write_key(other_key)
    extra = f"""
[[route]]
name = "store"
calling_ae = ["SCANNER"]
key = "@KEY@"
output = "{tmp_path / "stored"}"

[[route]]
name = "other"
calling_ae = ["OTHER"]
key = "{other_key}"

[route.query]
host = "127.0.0.1"
port = {upstream_port}
ae_title = "PACS"
"""
    config = query_config(
        tmp_path, corpus, upstream_port, maps=False, extra=extra, database=cohort_db
    )
    gateway = gateways(config)
    level = "QueryRetrieveLevel=PATIENT"
    assert find(tmp_path, gateway.port, level, "PatientID", model="-P") == []
    stored = storescu(gateway.port, corpus.outsider)
    assert stored.returncode == 0, stored.stderr
    answers = find(tmp_path, gateway.port, level, "PatientID", model="-P")
    written = [dcmread(p) for p in (tmp_path / "stored").rglob("*.dcm")]
    assert len(written) == 2
    assert [str(a.PatientID) for a in answers] == [str(written[0].PatientID)]
    assert find(tmp_path, gateway.port, level, "PatientID", model="-P", calling="OTHER") == []
    gateway.stop()
    again = gateways(config)
    answers = find(tmp_path, again.port, level, "PatientID", model="-P")
    assert [str(a.PatientID) for a in answers] == [str(written[0].PatientID)]


def by_sop(folder: Path) -> dict[str, Path]:
    """The files of a folder by their SOP Instance UID."""
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in folder.iterdir()}


def dcmtk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=120, check=False, env=DCMTK_ENV
    )


@needs_dcmtk
def test_get_and_move_deliver_what_run_writes_for_the_cohort_only(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    """Issue 16: C-GET and C-MOVE by pseudonymous keys retrieve the originals from the
    clinical archive and deliver, byte for byte, what `dicomveil run` writes; an outsider
    is never delivered; an unknown Move Destination is refused."""
    dest_port = free_port()
    # A series added to a cohort study later, never de-identified: not in the cohort.
    late = dcmread(sorted((corpus.folder / "ct1").iterdir())[0])
    late.SeriesInstanceUID, late.SOPInstanceUID = generate_uid(), generate_uid()
    late.file_meta.MediaStorageSOPInstanceUID = late.SOPInstanceUID
    (tmp_path / "late").mkdir()
    late.save_as(tmp_path / "late" / "late.dcm", enforce_file_format=True)
    holding = [*corpus.storable, corpus.outsider, tmp_path / "late"]
    upstream_port = start_pacs(procs, tmp_path, holding)
    moved = tmp_path / "moved"
    storescp(procs, moved, dest_port)
    destinations = (
        f'move_destinations = [{{ ae_title = "DEST", host = "127.0.0.1", port = {dest_port} }}]'
    )
    gateway = gateways(query_config(tmp_path, corpus, upstream_port, extra=destinations))
    at = ("127.0.0.1", str(gateway.port))
    scu = ("-aet", "RESEARCHER", "-aec", "DICOMVEIL")
    inside = _originals(corpus.storable)
    new = corpus.study_uids
    first = inside[0]
    study = [ds for ds in inside if ds.StudyInstanceUID == first.StudyInstanceUID]

    runs = run_on_archive(tmp_path)

    def check(received: dict[str, Path], expected: list[Dataset]) -> None:
        assert sorted(received) == sorted(new[str(ds.SOPInstanceUID)] for ds in expected)
        for sop, path in received.items():
            assert body(path) == body(runs[sop]), sop

    # C-GET of a study by its new Study Instance UID, on the requester's association.
    got = tmp_path / "got"
    got.mkdir()
    done = dcmtk(
        tool("getscu"), *scu, "+B", "-S", "-od", str(got), "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={new[str(first.StudyInstanceUID)]}", *at,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    check(by_sop(got), study)
    # C-MOVE of one series to the configured destination.
    series = [ds for ds in study if ds.SeriesInstanceUID == first.SeriesInstanceUID]
    done = dcmtk(
        tool("movescu"), *scu, "-aem", "DEST", "-S", "-k", "QueryRetrieveLevel=SERIES",
        "-k", f"StudyInstanceUID={new[str(first.StudyInstanceUID)]}",
        "-k", f"SeriesInstanceUID={new[str(first.SeriesInstanceUID)]}", *at,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: len(received_files(moved)) >= len(series), "the moved series")
    check(received_files(moved), series)
    # A patient by pseudonym (Patient Root C-GET): every instance of theirs in the cohort.
    pid = str(first.PatientID)
    everything = tmp_path / "patient"
    everything.mkdir()
    done = dcmtk(
        tool("getscu"), *scu, "+B", "-P", "-od", str(everything),
        "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={corpus.pseudonyms[pid]}", *at,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    check(by_sop(everything), [ds for ds in inside if str(ds.PatientID) == pid])
    # The outsider, by their real keys: nothing, by C-GET or C-MOVE.
    stranger = _originals([corpus.outsider])[0]
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    for keys in (
        ("-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={stranger.PatientID}"),
        ("-S", "-k", "QueryRetrieveLevel=STUDY", "-k",
         f"StudyInstanceUID={stranger.StudyInstanceUID}"),
    ):  # fmt: skip
        done = dcmtk(tool("getscu"), *scu, "-od", str(nothing), *keys, *at)
        assert done.returncode == 0, done.stdout + done.stderr
        done = dcmtk(tool("movescu"), *scu, "-aem", "DEST", *keys, *at)
        assert done.returncode == 0, done.stdout + done.stderr
    assert list(nothing.iterdir()) == []
    assert len(received_files(moved)) == len(series)
    # A destination the route does not name.
    done = dcmtk(
        tool("movescu"), *scu, "-aem", "ELSEWHERE", "-S", "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={new[str(first.StudyInstanceUID)]}", "-v", *at,
    )  # fmt: skip
    assert "MoveDestinationUnknown" in done.stdout + done.stderr, done.stdout + done.stderr
    assert len(received_files(moved)) == len(series)
    # Nothing of the retrievals is left in the state folder's spool.
    assert [p for p in (tmp_path / "state" / "spool").iterdir()] == []


@needs_dcmtk
def test_what_the_archive_fails_is_reported_failed_not_success(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    """An archive that fails one instance of a study (its file gone) or cannot be reached:
    C-GET and C-MOVE through the gateway end with a warning or a failure and count the
    failed sub-operations (they answered Success with 0 failed before; found by an
    independent black-box test with dcmqrscp)."""
    upstream_port = start_pacs(procs, tmp_path, list(corpus.storable))
    dest_port = free_port()
    storescp(procs, tmp_path / "moved", dest_port)
    destinations = (
        f'move_destinations = [{{ ae_title = "DEST", host = "127.0.0.1", port = {dest_port} }}]'
    )
    gateway = gateways(query_config(tmp_path, corpus, upstream_port, extra=destinations))
    at = ("127.0.0.1", str(gateway.port))
    scu = ("-aet", "RESEARCHER", "-aec", "DICOMVEIL", "-d")
    first = _originals(corpus.storable)[0]
    uid = corpus.study_uids[str(first.StudyInstanceUID)]
    study = ("-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}")
    stored = sorted((tmp_path / "qr" / "storage").rglob("*"))
    files = [p for p in stored if p.is_file() and not p.name.startswith("index")]
    sops = {
        p: str(dcmread(p, stop_before_pixels=True, force=True).get("SOPInstanceUID", ""))
        for p in files
    }
    hidden = next(p for p, sop in sops.items() if sop == str(first.SOPInstanceUID))
    hidden.rename(tmp_path / "hidden.dcm")

    def final(done: subprocess.CompletedProcess[str]) -> str:
        text = done.stdout + done.stderr
        statuses = re.findall(r"DIMSE Status\s*:\s*(0x[0-9A-Fa-f]{4})", text)
        assert statuses, text
        return str(statuses[-1]).upper().replace("0X", "0x")

    got = tmp_path / "got"
    got.mkdir()
    some = dcmtk(tool("getscu"), *scu, "-od", str(got), *study, *at)
    moved = dcmtk(tool("movescu"), *scu, "-aem", "DEST", *study, *at)
    for done in (some, moved):
        assert final(done) == "0xB000", done.stdout + done.stderr
        assert re.search(r"Failed Suboperations\s*:\s*[1-9]", done.stdout + done.stderr)
    assert list(got.iterdir())  # the rest was delivered
    archive = next(p for p in procs.running if "dcmqrscp" in str(p.args))
    procs.stop(archive)
    for done in (
        dcmtk(tool("getscu"), *scu, "-od", str(got), *study, *at),
        dcmtk(tool("movescu"), *scu, "-aem", "DEST", *study, *at),
    ):
        assert final(done) == "0xC000", done.stdout + done.stderr


_REAL_MR = (  # under tools/fetch_test_data.py's folder
    "nibabel/nibabel/nicom/tests/data/0.dcm",  # Siemens mosaic, implicit VR
    "heudiconv/heudiconv/tests/data/MRI_102TD_PHA_S.MR.Chen_Matthews_1.3.1.2022.11.16.15.50"
    ".20.357.31204541.dcm",  # Siemens XA Enhanced MR
    "nibabel/nibabel/nicom/tests/data/philips_mprage.dcm",  # Philips Enhanced MR, 23 MB
)


@needs_dcmtk
@pytest.mark.parametrize("workers", [0, 2])
def test_real_files_are_retrieved_as_run_writes_them(
    tmp_path: Path,
    procs: Processes,
    gateways: Callable[..., Gateway],
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    """Issue 16 on real files (pydicom's GE CT and MR; a Siemens mosaic in implicit VR, a
    Siemens XA and a 23 MB Philips Enhanced MR from the sdists' test data): queried and
    retrieved by their new UIDs, delivered as `dicomveil run` writes the archive's
    originals, each received from the archive into a file past 8 MiB and sent from its
    file (never decoded and encoded again); de-identified by
    the gateway's worker processes when it has some (none in its own process), else by the
    gateway's process."""
    here: list[Path] = []
    in_process = cohorting_module.deidentify_retrieved

    def counted(route: Any, original: Path, out: Path) -> Path | None:
        here.append(original)
        return in_process(route, original, out)

    monkeypatch.setattr(cohorting_module, "deidentify_retrieved", counted)
    decoded: list[Path] = []  # delivered by reading a data set, not from its file

    def read(path: Path) -> Dataset:
        decoded.append(path)
        return dcmread(path)

    monkeypatch.setattr(retrieve_module, "dcmread", read)
    spilled: list[str] = []  # where a data set received from the archive went past 8 MiB
    unnamed = tempfile.TemporaryFile

    def counting(*args: Any, **kwargs: Any) -> Any:
        spilled.append(str(kwargs.get("dir")))
        return unnamed(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", counting)  # the module dimse uses
    sources = [PYDICOM_DATA / "test_files" / name for name in ("CT_small.dcm", "MR_small.dcm")]
    sdists = sdist_folder()
    neuro = [sdists / name for name in _REAL_MR]
    if all(path.is_file() for path in neuro):
        sources += neuro
    elif REQUIRE:
        pytest.fail(f"real test data missing under {sdists}: tools/fetch_test_data.py")
    names = [path.name for path in sources]
    originals = tmp_path / "real"
    originals.mkdir()
    for path in sources:
        shutil.copy2(path, originals / path.name)
    upstream_port = start_pacs(procs, tmp_path, [originals])
    runs = run_on_archive(tmp_path, tmp_path / "maps")
    assert len(runs) == len(names)
    key = tmp_path / "project.key"
    write_key(key, KEY)
    config = cohort_config(tmp_path, key, upstream_port, tmp_path / "maps", workers=workers)
    port = gateways(config).port
    studies = find(tmp_path, port, "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    new_studies = {str(dcmread(p).StudyInstanceUID) for p in runs.values()}
    assert {str(a.StudyInstanceUID) for a in studies} == new_studies
    got = tmp_path / "got"
    got.mkdir()
    for study in sorted(new_studies):
        done = dcmtk(
            tool("getscu"), "-aet", "RESEARCHER", "-aec", "DICOMVEIL", "+B", "-S",
            "-od", str(got), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    received = by_sop(got)
    assert sorted(received) == sorted(runs)
    for sop, path in received.items():
        assert body(path) == body(runs[sop]), sop
    assert len(here) == (0 if workers else len(names))
    assert decoded == []  # each sent from its file (retrieve.send_files)
    if len(sources) > 2:  # the 23 MB Philips file came into an unnamed file, not memory
        assert len(spilled) == 1 and "retrieve-" in spilled[0], spilled


class _LateEvent(threading.Event):
    """A reactor checkpoint that dawdles after it lets the reactor through (as a thread
    waiting for the GIL does): the window in which pynetdicom's own pause believes a
    running reactor is paused, made wide."""

    def wait(self, timeout: float | None = None) -> bool:
        passed = super().wait(timeout)
        time.sleep(0.01)
        return passed


class _LateQueue(queue.Queue[Any]):
    """A DIMSE message queue whose blocking reader (the sender waiting for its response)
    comes late, as a thread waiting for the GIL does; the reactor's polls are not delayed."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block:
            time.sleep(0.03)
        return super().get(block, timeout)


def _to_storescp(
    tmp_path: Path, corpus: Corpus, procs: Processes, *, dimse_timeout: float
) -> tuple[Association, subprocess.Popen[bytes], list[Path]]:
    """An association of a forwarder's kind to a new storescp, the storescp, and CT files
    to store on it."""
    port = free_port()
    dest = storescp(procs, tmp_path / "dest", port)
    files = sorted((corpus.folder / "ct1").iterdir())
    ae = ClientAE(ae_title="FORWARDER")
    ae.dimse_timeout = dimse_timeout
    assoc = ae.associate("127.0.0.1", port, contexts=[build_context(CT_STORAGE)],
                         ae_title="DEST")  # fmt: skip
    assert assoc.is_established
    return assoc, dest, files


@needs_dcmtk
def test_the_reactor_is_paused_before_a_store_is_sent(
    tmp_path: Path, corpus: Corpus, procs: Processes
) -> None:
    """Issue 16, the forwarding stall: a response taken off the queue by the association's
    reactor thread left the forwarder waiting out its timeout. With pause_reactor before
    each send, every response reaches the sender, however late the reactor is."""
    assoc, _, files = _to_storescp(tmp_path, corpus, procs, dimse_timeout=3)
    try:
        assoc._reactor_checkpoint = _LateEvent()
        assoc._reactor_checkpoint.set()
        assoc.dimse.msg_queue = _LateQueue()
        statuses = []
        for n in range(12):
            assert pause_reactor(assoc)
            status = assoc.send_c_store(files[n % len(files)])
            statuses.append(int(status.get("Status", -1)) if status else -1)
        assert statuses == [0] * 12, statuses
    finally:
        if assoc.is_established:
            assoc.release()


@needs_dcmtk
def test_a_held_reactor_stays_paused_between_stores_and_sees_the_end_after(
    tmp_path: Path, corpus: Corpus, procs: Processes
) -> None:
    """The forwarder holds its association's reactor paused from one C-STORE to the next
    (no wait for the reactor's round between them), lets it run between batches, and
    checks before each send that the association is still there (the held reactor does
    not notice a peer that went away)."""
    assoc, dest, files = _to_storescp(tmp_path, corpus, procs, dimse_timeout=5)
    checkpoint = hold_reactor(assoc)
    assert isinstance(checkpoint, HeldCheckpoint)
    try:
        statuses = []
        for n in range(6):
            checkpoint.held = True
            if n:  # still paused since the last response: no wait at all
                assert not checkpoint.is_set() and checkpoint._cond._waiters  # type: ignore[attr-defined]
            assert pause_reactor(assoc, timeout=2.0)
            status = assoc.send_c_store(files[n % len(files)])
            statuses.append(int(status.get("Status", -1)) if status else -1)
        assert statuses == [0] * 6, statuses
        checkpoint.let_go()
        assert checkpoint.is_set()  # the reactor runs between batches
        checkpoint.held = True
        assert pause_reactor(assoc, timeout=2.0)
        procs.stop(dest, signal.SIGKILL)  # the destination goes away while held
        wait_for(lambda: not reachable(assoc), "the held association's end", 10)
        checkpoint.let_go()
        wait_for(lambda: not assoc.is_alive(), "the reactor's end once let go", 10)
    finally:
        checkpoint.let_go()
        if assoc.is_established:
            assoc.release()


def _worklist_item(folder: Path) -> tuple[synthetic.FakePatient, str]:
    """One scheduled procedure step for patient 1, as a dcmtk worklist file."""
    patient = synthetic.fake_patient(1)
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 100"
    item.PatientName = patient.name
    item.PatientID = patient.patient_id
    item.IssuerOfPatientID = patient.issuer
    item.PatientBirthDate = patient.birth_date
    item.PatientSex = patient.sex
    item.AccessionNumber = "ACC7731"
    item.StudyInstanceUID = "1.2.826.0.1.3680043.2.1.77"
    item.RequestedProcedureID = "RP1"
    item.RequestedProcedureDescription = "CT CHEST"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "SCANNER"
    step.ScheduledProcedureStepStartDate = "20240108"
    step.ScheduledProcedureStepStartTime = "0900"
    step.ScheduledPerformingPhysicianName = "PLOVDIV^ANTON"
    step.ScheduledProcedureStepID = "SPS1"
    step.ScheduledProcedureStepDescription = "CT CHEST"
    item.ScheduledProcedureStepSequence = [step]
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()
    item.file_meta = FileMetaDataset()
    item.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    item.save_as(folder / "item1.wl", enforce_file_format=False)
    return patient, str(item.StudyInstanceUID)


@needs_dcmtk
@pytest.mark.skipif(_dcmtk("wlmscpfs") is None, reason="dcmtk's wlmscpfs is not installed")
def test_worklist_through_the_gateway(
    tmp_path: Path, corpus: Corpus, procs: Processes, gateways: Callable[..., Gateway]
) -> None:
    patient, study_uid = _worklist_item(tmp_path / "worklists" / "RIS")
    upstream_port = free_port()
    wlmscpfs = _dcmtk("wlmscpfs")
    assert wlmscpfs is not None
    procs.start(
        [wlmscpfs, "-v", "-dfp", str(tmp_path / "worklists"), str(upstream_port)],
        "wlmscpfs.log",
        upstream_port,
    )
    config = write_config(
        tmp_path,
        f"""
[gateway]
port = 0
state_dir = "state"
timeout = 10

[[route]]
name = "modality"
calling_ae = ["SCANNER"]
key = "@KEY@"

[route.query]
host = "127.0.0.1"
port = {upstream_port}
ae_title = "RIS"
worklist = true
""",
        corpus,
    )
    gateway = gateways(config)
    answers = tmp_path / "answers"
    answers.mkdir()
    found = subprocess.run(
        [
            *(tool("findscu"), "-aet", "SCANNER", "-aec", "DICOMVEIL", "-W", "-X"),
            *("-od", str(answers), "-k", f"PatientName={patient.name.split('^')[0]}*"),
            *("-k", "PatientID", "-k", "StudyInstanceUID", "-k", "AccessionNumber"),
            *("-k", "ScheduledProcedureStepSequence[0].Modality=CT"),
            *("-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate"),
            *("127.0.0.1", str(gateway.port)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=DCMTK_ENV,
    )
    assert found.returncode == 0, found.stdout + found.stderr
    (answer,) = [dcmread(p) for p in answers.iterdir()]
    assert str(answer.PatientID) == corpus.pseudonyms[patient.patient_id]
    assert str(answer.PatientName) != patient.name
    assert str(answer.StudyInstanceUID) == Pseudonymizer(KEY).uid(study_uid)
    assert not answer.get("AccessionNumber")
    step = answer.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT"  # kept, and it matched upstream
    assert step.get("ScheduledProcedureStepStartDate") != "20240108"
    log = (tmp_path / "wlmscpfs.log").read_text(errors="replace")
    asked = log.split("Find SCP Request Identifiers:", 1)[1].split("Expanded", 1)[0]
    assert "PatientName" in asked and patient.name.split("^")[0] not in asked


def _studies_of(corpus: Corpus, patient_id: str) -> set[str]:
    studies = set()
    for folder in corpus.storable:
        for path in folder.iterdir():
            ds = dcmread(path, stop_before_pixels=True)
            if ds.PatientID == patient_id:
                studies.add(str(ds.StudyInstanceUID))
    return studies


def test_sanitize_query_passes_only_what_cannot_identify() -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "DOE^JOHN"
    query.PatientID = "*"
    query.StudyDate = "20240101"
    query.Modality = "CT"
    query.StudyInstanceUID = "2.25.1"
    query.AccessionNumber = "A1"
    compiled = Profile.named("ps3.15-basic").compile()
    clean = sanitize_query(query, compiled)
    assert clean.QueryRetrieveLevel == "STUDY" and clean.Modality == "CT"
    # "*" goes as a return key (archives differ on "*": Orthanc's QIDO-RS matched nothing)
    for keyword in ("PatientName", "PatientID", "StudyDate", "StudyInstanceUID", "AccessionNumber"):
        assert keyword in clean and not clean[keyword].value, keyword
    assert sanitize_query(query, compiled, frozenset({"StudyDate"})).StudyDate == "20240101"
    retained = Profile.named("ps3.15-basic").with_options(["retain-uids"]).compile()
    assert sanitize_query(query, retained).StudyInstanceUID == "2.25.1"


def _ris(handlers: list[Any]) -> tuple[Any, int]:
    """A pynetdicom MPPS SCP (the RIS) on loopback with ``handlers``: its server and port."""
    upstream = AE(ae_title="RIS")
    upstream.add_supported_context(MPPS)
    port = free_port()
    server = upstream.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    assert server is not None
    return server, port


def _mpps_config(tmp_path: Path, corpus: Corpus, port: int, route: str = "") -> Path:
    """A gateway whose route "modality" (calling AE SCANNER, ``route`` added to it) forwards
    MPPS to the RIS on ``port``."""
    return write_config(
        tmp_path,
        f"""
[gateway]
port = 0
state_dir = "state"
timeout = 10

[[route]]
name = "modality"
calling_ae = ["SCANNER"]
key = "@KEY@"
{route}

[route.mpps]
host = "127.0.0.1"
port = {port}
ae_title = "RIS"
""",
        corpus,
    )


def test_mpps_is_forwarded_de_identified(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    received: list[tuple[str, Dataset]] = []

    def on_create(event: object) -> tuple[int, Dataset]:
        from pynetdicom.events import Event

        assert isinstance(event, Event)
        received.append((str(event.request.AffectedSOPInstanceUID), event.attribute_list))  # type: ignore[union-attr]
        return 0x0000, event.attribute_list

    from pynetdicom import evt

    server, upstream_port = _ris([(evt.EVT_N_CREATE, on_create)])
    try:
        config = _mpps_config(tmp_path, corpus, upstream_port)
        gateway = gateways(config)
        patient = synthetic.fake_patient(1)
        step = Dataset()
        step.PatientName = patient.name
        step.PatientID = patient.patient_id
        step.IssuerOfPatientID = patient.issuer
        step.PatientBirthDate = patient.birth_date
        step.PerformedProcedureStepStatus = "IN PROGRESS"
        step.PerformedProcedureStepStartDate = "20240108"
        step.Modality = "CT"
        assoc = _client(gateway.port, contexts=[MPPS])
        assert assoc.is_established
        try:
            status, _ = assoc.send_n_create(step, MPPS, "1.2.826.0.1.3680043.2.1.1")
        finally:
            assoc.release()
        assert status is not None and int(status.Status) == 0
    finally:
        server.shutdown()
    assert len(received) == 1
    uid, forwarded = received[0]
    assert uid != "1.2.826.0.1.3680043.2.1.1" and uid.startswith("2.25.")
    assert str(forwarded.PatientID) == corpus.pseudonyms[patient.patient_id]
    assert str(forwarded.PatientName) != patient.name
    assert forwarded.get("PatientBirthDate", "") in ("", None)
    assert forwarded.Modality == "CT"


def test_an_mpps_step_keeps_one_date_offset_from_create_to_set(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    """Dates shifted (retain-long-modified-dates): the N-SET that completes a step moves its
    end date by the offset of the step's patient, as its N-CREATE moved the start date (the
    N-SET names no patient: it moved by another offset, 6.5 years apart in an independent
    test). An N-SET with a date for a step the gateway did not create is not forwarded."""
    from pynetdicom import evt
    from pynetdicom.events import Event

    received: list[tuple[str, str, Dataset]] = []

    def on_create(event: Event) -> tuple[int, Dataset]:
        uid = getattr(event.request, "AffectedSOPInstanceUID", "")
        received.append(("create", str(uid), event.attribute_list))
        return 0x0000, event.attribute_list

    def on_set(event: Event) -> tuple[int, Dataset]:
        uid = getattr(event.request, "RequestedSOPInstanceUID", "")
        received.append(("set", str(uid), event.modification_list))
        return 0x0000, event.modification_list

    server, upstream_port = _ris([(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)])
    try:
        dates = 'options = ["retain-long-modified-dates"]'
        config = _mpps_config(tmp_path, corpus, upstream_port, dates)
        gateway = gateways(config)
        patient = synthetic.fake_patient(2)
        step = Dataset()
        step.PatientName = patient.name
        step.PatientID = patient.patient_id
        step.PatientBirthDate = patient.birth_date
        step.PerformedProcedureStepStatus = "IN PROGRESS"
        step.PerformedProcedureStepStartDate = "20261207"
        done = Dataset()
        done.PerformedProcedureStepStatus = "COMPLETED"
        done.PerformedProcedureStepEndDate = "20261207"
        assoc = _client(gateway.port, contexts=[MPPS])
        assert assoc.is_established
        try:
            created, _ = assoc.send_n_create(step, MPPS, "1.2.826.0.1.3680043.2.1.7")
            finished, _ = assoc.send_n_set(done, MPPS, "1.2.826.0.1.3680043.2.1.7")
            stranger, _ = assoc.send_n_set(done, MPPS, "1.2.826.0.1.3680043.2.1.8")
        finally:
            assoc.release()
    finally:
        server.shutdown()
    assert [int(s.Status) for s in (created, finished, stranger)] == [0, 0, 0x0110]
    assert [kind for kind, _, _ in received] == ["create", "set"]
    (_, created_uid, create), (_, set_uid, update) = received
    assert created_uid == set_uid
    start, end = (
        str(create.PerformedProcedureStepStartDate),
        str(update.PerformedProcedureStepEndDate),
    )
    assert start == end != "20261207", (start, end)
    assert "PatientID" not in update and "PatientName" not in update  # only what was sent


# --------------------------------------------------------------------------------------------
# Who may talk to it, and peers that misbehave


def _rejection(assoc: Association) -> tuple[int, int, int]:
    assert assoc.is_rejected
    primitive = assoc.acceptor.primitive
    assert primitive is not None
    return int(primitive.result), int(primitive.result_source), int(primitive.diagnostic)  # type: ignore[arg-type]


def _raw(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    """Send raw bytes; return what the gateway answers before it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(ConnectionResetError):
            return sock.recv(4096)  # the first answer, or b"" when it closed
        return b""


def _echo_ok(port: int, tls_args: tuple[ssl.SSLContext, str] | None = None) -> bool:
    assoc = _client(port, tls_args=tls_args)
    if not assoc.is_established:
        return False
    try:
        return int(assoc.send_c_echo().Status) == 0
    finally:
        assoc.release()


@needs_dcmtk
def test_unknown_calling_ae_is_rejected(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    text = text.replace(
        'calling_ae = ["SCANNER"]', 'calling_ae = ["SCANNER"]\ncalled_ae = ["DICOMVEIL"]'
    )
    gateway = gateways(write_config(tmp_path, text, corpus))
    # calling AE title not recognised: rejected-permanent (1), service user (1), reason 3
    assert _rejection(_client(gateway.port, calling="INTRUDER")) == (1, 1, 3)
    ae = ClientAE(ae_title="SCANNER")
    wrong_called = ae.associate(
        "127.0.0.1", gateway.port, contexts=[build_context(VERIFICATION)], ae_title="OTHER"
    )
    assert _rejection(wrong_called) == (1, 1, 7)  # called AE title not recognised
    echo = subprocess.run(
        [tool("echoscu"), "-aet", "INTRUDER", "-aec", "DICOMVEIL", "127.0.0.1", str(gateway.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=DCMTK_ENV,
    )
    assert echo.returncode != 0
    assert "Calling AE Title Not Recognized" in echo.stdout + echo.stderr
    assert _echo_ok(gateway.port)
    settings = load_config(tmp_path / "gateway.toml")
    wait_for(lambda: read_status(settings).get("rejected_associations") == 3, "status")


def test_hostile_peers_get_an_abort_and_the_gateway_keeps_serving(
    tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]
) -> None:
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    gateway = gateways(write_config(tmp_path, text, corpus))
    port = gateway.port
    # Garbage (an HTTP request): an unknown PDU type -> A-ABORT.
    assert _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[:1] == b"\x07"
    # A PDU far longer than max_pdu_size: A-ABORT before it is read.
    assert _raw(port, struct.pack(">BBL", 0x04, 0, 0x7FFFFFF0) + b"\x00" * 64)[:1] == b"\x07"
    # A truncated A-ASSOCIATE-RQ, then the peer closes: the connection is closed.
    assert _raw(port, struct.pack(">BBL", 0x01, 0, 200) + b"\x00\x01", close_write=True)[:1] in (
        b"",
        b"\x07",
    )
    # An association request that does not parse.
    assert _raw(port, struct.pack(">BBL", 0x01, 0, 8) + b"\xff" * 8)[:1] in (b"\x07", b"")
    assert _echo_ok(port)


# --------------------------------------------------------------------------------------------
# TLS


def test_tls(tmp_path: Path, corpus: Corpus, gateways: Callable[..., Gateway]) -> None:
    cert, key = self_signed(tmp_path)
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    text = text.replace(
        "[[route]]",
        f'[gateway.tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n\n[[route]]',
    )
    gateway = gateways(write_config(tmp_path, text, corpus))
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    tls = (context, "localhost")
    assert _echo_ok(gateway.port, tls_args=tls)
    ct = sorted((corpus.folder / "ct1").iterdir())[0]
    assoc = _client(gateway.port, contexts=[CT_STORAGE], tls_args=tls)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(ct).Status) == 0
    finally:
        assoc.release()
    written = list((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 1 and written[0].read_bytes() == corpus.expected[written[0].stem]
    assert not _echo_ok(gateway.port)  # plain TCP to the TLS port
    assert _echo_ok(gateway.port, tls_args=tls)  # and it still serves TLS


# --------------------------------------------------------------------------------------------
# Configuration


def test_config_errors_name_the_file_and_the_entry(tmp_path: Path, corpus: Corpus) -> None:
    good = gateway_config(0, tmp_path / "state", 104)
    path = write_config(tmp_path, good, corpus)
    assert load_config(path).routes[0].forward is not None
    cases = {
        good.replace("retry_max = 0.5", "retry_max = 0.5\nspeed = 3"): "speed",
        good.replace('ae_title = "DEST"', 'ae_title = "DEST"\nprot = 1'): "route 'research'",
        good.replace('calling_ae = ["SCANNER"]', "calling_ae = []"): "calling_ae",
        good.replace('profile = "ps3.15-basic"', 'profile = "nope"'): "profile",
        good.replace('key = "@KEY@"', 'key = "missing.key"'): "key",
    }
    for text, needle in cases.items():
        write_config(tmp_path, text, corpus)
        with pytest.raises(GatewayConfigError) as caught:
            load_config(path)
        assert str(path) in str(caught.value) and needle in str(caught.value)
    runner = CliRunner()
    result = runner.invoke(app, ["gateway", "--config", str(path)])
    assert result.exit_code == 2


def _readme_dicomweb_loads(tmp_path: Path, corpus: Corpus, block: str) -> None:
    """The README's DICOMweb example (its own gateway table added, paths made local)."""
    text = f'[gateway]\nstate_dir = "{tmp_path / "web-state"}"\n' + block
    text = "\n".join(line for line in text.splitlines() if not line.startswith("tls ="))
    text = text.replace('key = "project.key"', f'key = "{corpus.key}"')
    text = text.replace('cohort_maps = ["maps"]', f'cohort_maps = ["{corpus.maps}"]')
    text = text.replace("/data/research", str(tmp_path / "web-out"))
    path = tmp_path / "web.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.web is not None and config.web.port == 8080
    research, ingest = config.routes
    assert research.web_tokens and ingest.web_tokens
    assert research.query is not None and isinstance(research.query.node, WebService)
    assert isinstance(ingest.forward, WebService) and not research.calling_ae


def test_readme_configuration_loads(tmp_path: Path, corpus: Corpus) -> None:
    """The README's gateway examples are a valid configuration (paths made local)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Gateway", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```toml\n")[1:]]
    assert len(blocks) == 3
    _readme_dicomweb_loads(tmp_path, corpus, blocks.pop())
    text = "\n".join(blocks)
    tls = text.index("[gateway.tls]")
    text = text[:tls] + text[text.index("[[route]]", tls) :]  # no certificates here
    text = text.replace("/etc/dicomveil/project.key", str(corpus.key))
    text = text.replace("/var/lib/dicomveil-gateway", str(tmp_path / "state"))
    text = text.replace("/data/research", str(tmp_path / "out"))
    config = load_config(write_config(tmp_path, text, corpus))
    assert [r.name for r in config.routes] == ["research", "query"]
    assert config.route_for("CT_SCANNER1", "DICOMVEIL", "10.20.1.2") is config.routes[0]
    assert config.route_for("CT_SCANNER1", "DICOMVEIL", "192.0.2.1") is None
    assert config.route_for("RESEARCH_VIEWER", "ANY", "192.0.2.1") is config.routes[1]


def test_associations_carry_no_logging_handlers_unless_pynetdicom_logs_info() -> None:
    """pynetdicom's standard handlers format every PDU and DIMSE message (and copy each data
    set): unbound per association when its logger would drop the text, kept when it logs
    INFO (nothing process-wide changes)."""
    import logging

    from pynetdicom import AE, evt
    from pynetdicom.association import Association

    from dicomveil.gateway.transport import quiet

    logger = logging.getLogger("pynetdicom")
    before = logger.level
    try:
        for level, kept in ((logging.WARNING, False), (logging.INFO, True)):
            logger.setLevel(level)
            assoc = Association(AE(), "requestor")
            assert assoc.get_handlers(evt.EVT_DIMSE_RECV)  # bound by pynetdicom
            quiet(assoc)
            for event in (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_PDU_RECV):
                assert bool(assoc.get_handlers(event)) is kept
    finally:
        logger.setLevel(before)


def test_a_large_instance_is_received_into_a_file_not_held_in_memory(
    tmp_path: Path,
    corpus: Corpus,
    gateways: Callable[..., Gateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A data set longer than what the gateway holds in memory (``dimse.IN_MEMORY``) is
    received into an unnamed file of the spool folder as its fragments arrive (a 1 GB
    instance took 1 GB of the gateway's RAM before); the output is the bytes ``dicomveil
    run`` writes for the same file, and nothing received is left in the spool."""
    made: list[object] = []
    real = tempfile.TemporaryFile

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", counting)  # the module dimse uses
    ds = dcmread(sorted((corpus.folder / "ct1").iterdir())[0])
    side = 2400  # 11.5 MB of pixel data, past the 8 MiB held in memory
    ds.Rows = ds.Columns = side
    ds.PixelData = bytes(range(256)) * (side * side * 2 // 256)
    large = tmp_path / "large" / "ct.dcm"
    large.parent.mkdir()
    ds.save_as(large, enforce_file_format=True)
    expected = run(
        [large.parent],
        RunConfig(
            profile=Profile.named("ps3.15-basic"),
            key=KEY,
            output=tmp_path / "run",
            workers=1,
            today=dt.date.today(),
        ),
    )
    (result,) = expected.written
    assert result.output is not None

    spool = tmp_path / "state" / "spool"
    text = gateway_config(0, tmp_path / "state", free_port()).split("[route.forward]")[0]
    gateway = gateways(write_config(tmp_path, text, corpus))
    assert _send(gateway.port, [large]) == [StoreStatus.SUCCESS]
    assert made == [spool]  # spilled once, into the spool folder
    (written,) = (tmp_path / "out").rglob("*.dcm")
    assert written.read_bytes() == result.output.read_bytes()
    wait_for(lambda: not [p for p in spool.iterdir() if p.is_file()], "the spool emptied")
