"""The gateway's pipeline of requests to a worker process (issue 16): requests are sent
while earlier ones are unanswered, and each caller gets the answer to its own request."""

from __future__ import annotations

import socket
import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomveil.errors import GatewayWorkerError
from dicomveil.gateway import cohorting as cohorting_module
from dicomveil.gateway import pool as pool_module
from dicomveil.gateway.cohorting import Cohorting
from dicomveil.gateway.config import WebService
from dicomveil.gateway.pool import WorkerPool, _Pipeline
from dicomveil.gateway.query import Confinement, UpstreamError
from dicomveil.gateway.retrieve import StagedInstance, send_files
from dicomveil.gateway.web.upstream import WebUpstream


def _answer_after(conn: Connection, count: int) -> None:
    """A worker that reads ``count`` requests before answering any (in order)."""
    requests = [conn.recv() for _ in range(count)]
    for request in requests:
        conn.send(("answer", request))
    assert conn.recv() is None  # finish(): nothing more
    conn.close()


def test_requests_are_pipelined_and_answered_to_their_callers() -> None:
    ours, theirs = Pipe()
    worker = threading.Thread(target=_answer_after, args=(theirs, 4))
    worker.start()
    pipeline = _Pipeline(ours)
    pipeline.start()
    answers: dict[int, Any] = {}

    def caller(n: int) -> None:
        answers[n] = pipeline.call(n)

    # In lock-step, the worker would wait forever for a second request before answering.
    callers = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(10)
    assert answers == {n: ("answer", n) for n in range(4)}
    pipeline.finish()
    worker.join(10)
    pipeline.join(10)
    assert not worker.is_alive()


def test_requests_waiting_when_the_worker_ends_fail() -> None:
    ours, theirs = Pipe()
    pipeline = _Pipeline(ours)
    pipeline.start()
    failed: list[str] = []

    def caller(n: int) -> None:
        try:
            pipeline.call(n)
        except GatewayWorkerError as exc:
            failed.append(str(exc))

    callers = [threading.Thread(target=caller, args=(n,)) for n in range(3)]
    for thread in callers:
        thread.start()
    for _ in range(3):
        theirs.recv()  # all three sent, none answered
    theirs.close()  # the worker died
    for thread in callers:
        thread.join(10)
    assert len(failed) == 3 and all("ended" in reason for reason in failed)
    with pytest.raises(GatewayWorkerError):
        pipeline.call(4)  # and the next fails at once, not after a wait
    pipeline.join(10)


class _FakeWorker:
    made = 0

    def __init__(self, config: object) -> None:
        _FakeWorker.made += 1
        self.stopped = False

    def ready(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


def test_a_broken_worker_is_replaced_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every request waiting on a dead worker fails; each asks for a replacement, one is made.
    monkeypatch.setattr(pool_module, "_Worker", _FakeWorker)
    monkeypatch.setattr(_FakeWorker, "made", 0)
    pool = WorkerPool(config=None, workers=2)  # type: ignore[arg-type]
    pool.start()
    broken = pool._shards[1]
    assert _FakeWorker.made == 2
    pool._replace(1, broken)
    pool._replace(1, broken)
    assert _FakeWorker.made == 3
    assert pool._shards[1] is not broken and broken.stopped  # type: ignore[attr-defined]
    assert pool._shards[0] is not pool._shards[1]


class _Cohort:
    """A cohort of two original SOP Instance UIDs; 9.9.9 cannot be looked up."""

    def has_uid(self, project: str, uid: str) -> bool:
        if uid == "9.9.9":
            raise RuntimeError("the cohort's database is gone")
        return uid in ("1.2.3.1", "1.2.3.2")

    def has_patient(self, project: str, patient: str) -> bool:
        return True


def _original(folder: Path, name: str, sop: str) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID = "1.2.840.10008.5.1.4.1.1.2", sop, "P1"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def test_retrieved_originals_are_kept_to_the_cohort_in_the_order_of_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cohorting (C-GET, C-MOVE and WADO-RS through the gateway): an original outside the
    cohort is deleted as it arrives, the others are de-identified and given back in the
    order of their names whatever order they came in; an original whose place in the
    cohort cannot be looked up fails the request (as before each arrival was handled)."""
    done: list[str] = []

    def deidentified(route: Any, original: Path, out: Path) -> Path:
        done.append(original.name)
        return out / original.name

    monkeypatch.setattr(cohorting_module, "deidentify_retrieved", deidentified)
    route = SimpleNamespace(project="p")
    cohort: Any = _Cohort()
    cohorting = Cohorting(route, Confinement(), cohort, tmp_path / "out", None)  # type: ignore[arg-type]
    second = _original(tmp_path, "000002.dcm", "1.2.3.2")
    outsider = _original(tmp_path, "000001.dcm", "1.2.4.1")
    first = _original(tmp_path, "000000.dcm", "1.2.3.1")
    for path in (second, outsider, first):
        cohorting.arrived(path)
    assert not outsider.exists() and first.exists() and second.exists()
    assert cohorting.files() == [tmp_path / "out" / "000000.dcm", tmp_path / "out" / "000002.dcm"]
    assert done == ["000000.dcm", "000002.dcm"]
    assert not first.exists() and not second.exists()  # deleted once de-identified

    failing = Cohorting(route, Confinement(), cohort, tmp_path / "out", None)  # type: ignore[arg-type]
    broken = _original(tmp_path, "000003.dcm", "9.9.9")
    failing.arrived(broken)
    assert not broken.exists()
    with pytest.raises(RuntimeError, match="database"):
        failing.files()


class _Association:
    """An association's send_c_store as pynetdicom has it: a path is sent from its file
    unless no presentation context takes its transfer syntax as it is (ValueError)."""

    def __init__(self, takes_the_file: bool) -> None:
        self.takes_the_file = takes_the_file
        self.sent: list[Any] = []

    def send_c_store(self, dataset: Any, msg_id: int = 1) -> str:
        if isinstance(dataset, Path) and not self.takes_the_file:
            raise ValueError("no presentation context for the transfer syntax")
        self.sent.append((dataset, msg_id))
        return "sent"


def test_a_delivered_instance_is_sent_from_its_file_or_read_where_it_must_be(
    tmp_path: Path,
) -> None:
    """C-GET and C-MOVE through the gateway (retrieve.send_files): a staged instance goes
    to pynetdicom as its file's path (sent in chunks, neither decoded nor encoded again);
    where the peer did not accept its transfer syntax, it is read, and pynetdicom converts
    the data set; anything else passes as it is. Wrapping twice changes nothing."""
    path = _original(tmp_path, "000000.dcm", "1.2.3.1")
    staged = StagedInstance(path)
    assert str(staged.SOPInstanceUID) == "1.2.3.1" and staged  # pynetdicom needs it truthy
    streamed: Any = _Association(takes_the_file=True)
    assert id(send_files(send_files(streamed))) == id(streamed)  # once (no narrowing)
    assert streamed.send_c_store(staged, msg_id=7) == "sent"
    other = Dataset()
    streamed.send_c_store(other, msg_id=8)
    assert streamed.sent == [(path, 7), (other, 8)]
    converted: Any = _Association(takes_the_file=False)
    send_files(converted)
    converted.send_c_store(staged, msg_id=9)
    ((read, msg_id),) = converted.sent
    assert isinstance(read, Dataset) and not isinstance(read, StagedInstance) and msg_id == 9
    assert str(read.SOPInstanceUID) == "1.2.3.1"


def test_an_unreachable_dicomweb_archive_is_an_upstream_error(tmp_path: Path) -> None:
    """WADO-RS from a DICOMweb archive that does not answer: an UpstreamError (the proxy's
    502, naming only the archive), not requests' ConnectionError, which is an OSError (a
    500 before); nothing is left in the folder."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    upstream = WebUpstream(WebService(url=f"http://127.0.0.1:{port}/dicom-web"), timeout=5)
    with pytest.raises(UpstreamError, match=r"^http://127\.0\.0\.1:\d+: ConnectionError$"):
        upstream.fetch({0x0020000D: "1.2.3"}, tmp_path)
    assert list(tmp_path.iterdir()) == []
