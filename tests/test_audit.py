"""The audit trail and the tracking sheet, on SQLite and on a real PostgreSQL server.

Every test that takes ``audit_db`` runs twice: against a SQLite file and against a database of
a PostgreSQL server that this module starts (``initdb`` and ``pg_ctl`` from Debian's
``postgresql`` package, as the ``postgres`` user when the tests run as root) on a free loopback
port, and stops when the session ends. Runs go through the real command line: in-process with
Typer's runner, and in a real process for the crash.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from pydicom.dataset import FileDataset

from dicomveil import Outcome, Profile, RunConfig, __version__, write_key
from dicomveil.errors import AuditError
from dicomveil.qc.audit import SCHEMA_VERSION, AuditTrail
from dicomveil.qc.audit.sheets import TRACKING_COLUMNS
from dicomveil.qc.audit.trail import QcStatus, RunStatus
from dicomveil.standard.tables import EDITION
from tests.support import synthetic
from tests.support.commands import cli
from tests.support.postgres import PostgresServer

from .conftest import KEY

TABLES = {
    "schema_version", "runs", "files", "verifications", "subjects", "qc_events",
    "reidentifications", "risk_assessments",
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def audit_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the audit trail goes: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "trail" / "audit.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


def _engine(db: str) -> sa.Engine:
    """An engine of our own on the database, to look at it without dicomveil."""
    if "://" in db:
        return sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
    return sa.create_engine(f"sqlite:///{db}")


def dump(db: str) -> tuple[set[str], str]:
    """The names of the tables and every row of every table, as text."""
    engine = _engine(db)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        lines = []
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    lines.append(f"{table.name}: {tuple(row)!r}")
        return set(meta.tables), "\n".join(lines)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# Inputs with known fake PHI


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "project.key"
    write_key(path, KEY)
    return path


@dataclass
class Inputs:
    root: Path
    datasets: list[FileDataset]
    patients: list[synthetic.FakePatient]
    zip_path: Path

    def hashes(self) -> dict[str, str]:
        """Input display path -> SHA-256 of its bytes (zip members: the member's bytes)."""
        found: dict[str, str] = {}
        for path in sorted(self.root.rglob("*")):
            if path == self.zip_path:
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        digest = hashlib.sha256(archive.read(member)).hexdigest()
                        found[f"{path}!{member}"] = digest
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found


def make_inputs(folder: Path) -> Inputs:
    """Two patients: a CT series, an MR series in a zip archive, a burned-in ultrasound
    (withheld), a text file (skipped) and a truncated CT slice (failed)."""
    a, b = synthetic.fake_patient(31), synthetic.fake_patient(32)
    ct = synthetic.ct_series(a, seed=31, n_slices=3, rows=8, columns=8)
    mr = synthetic.mr_series(b, seed=32, n_slices=2, rows=8, columns=8)
    us = synthetic.us_burned_in(a, seed=33)
    synthetic.write_series(ct, folder / "ct")
    staging = folder.parent / "staging"
    members = synthetic.write_series(mr, staging)
    zip_path = folder / "mr.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in members:
            archive.write(path, f"mr/{path.name}")
    shutil.rmtree(staging)
    synthetic.write_series([us], folder / "us")
    (folder / "notes.txt").write_text("not a DICOM file\n", encoding="utf-8")
    (folder / "ct" / "IM0009").write_bytes((folder / "ct" / "IM0001").read_bytes()[:-10])
    return Inputs(folder, [*ct, *mr, us], [a, b], zip_path)


def phi_needles(datasets: list[FileDataset]) -> set[str]:
    record = synthetic.phi_of(datasets)
    values = record.names | record.ids | record.texts | record.uids
    dates = {d for d in record.dates if len(d) >= 8}
    return {v for v in values | dates if len(v) >= 4}


def assert_no_secret(text: str, needles: set[str]) -> None:
    lowered = text.lower()
    for needle in sorted(needles):
        assert needle.lower() not in lowered, f"{needle!r} found"


# --------------------------------------------------------------------------------------------
# A run is recorded


def test_run_is_recorded_without_key_or_phi(audit_db: str, tmp_path: Path, key_file: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"

    result = cli(
        "run", "--audit", audit_db, "--operator", "ada", "--workers", "2", "--key", key_file,
        inputs.root, out,
    )  # fmt: skip

    assert result.exit_code == 1, result.output  # the truncated slice failed
    assert "audit: run 1 in " in result.stderr
    with AuditTrail.open(audit_db, create=False) as trail:
        (run,) = trail.runs()
        files = trail.files()
        subjects = trail.subjects()
    assert run.status is RunStatus.FINISHED
    assert run.operator == "ada"
    assert run.host == socket.gethostname()
    assert run.version == __version__
    assert run.edition == EDITION
    assert run.profile_name == "ps3.15-basic"
    assert run.profile_digest == Profile.named("ps3.15-basic").digest
    assert run.key_fingerprint == KEY.fingerprint
    assert run.output == str(out.resolve())
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert run.started_at.tzinfo is dt.UTC
    assert run.options["options"] == []
    assert (run.written, run.withheld, run.skipped, run.failed) == (5, 1, 1, 1)

    hashes = inputs.hashes()
    assert sorted(f.input_path for f in files) == sorted(hashes)
    by_input = {f.input_path: f for f in files}
    for display, digest in hashes.items():
        assert by_input[display].input_sha256 == digest, display
        assert by_input[display].run_id == run.id
    outcomes = {f.input_path: f.outcome for f in files}
    assert outcomes[str(inputs.root / "us" / "IM0001")] is Outcome.WITHHELD
    assert outcomes[str(inputs.root / "notes.txt")] is Outcome.SKIPPED
    assert outcomes[str(inputs.root / "ct" / "IM0009")] is Outcome.FAILED
    for record in files:
        if record.outcome is Outcome.WRITTEN:
            assert record.output_path is not None and not record.output_path.startswith("/")
            assert (out / record.output_path).is_file()
            assert record.subject and record.output_path.startswith(record.subject + "/")
        else:
            assert record.output_path is None and record.reason
    written_files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.dcm"))
    assert sorted(f.output_path for f in files if f.output_path) == written_files

    pseudonyms = {f.subject for f in files if f.outcome is Outcome.WRITTEN}
    assert len(pseudonyms) == 2
    assert [s.pseudonym for s in subjects] == sorted(p for p in pseudonyms if p)
    for subject in subjects:
        assert subject.deidentified_by == "ada"
        assert subject.deidentified_at == run.started_at
        assert subject.deidentified_run == run.id
        assert subject.qc_status is QcStatus.PENDING
        assert subject.verified_by is None

    tables, text = dump(audit_db)
    assert tables == TABLES
    assert f"'{KEY.fingerprint}'" in text and run.profile_digest in text
    needles = phi_needles(inputs.datasets) | {KEY.secret.hex()}
    assert len(needles) > 30
    assert_no_secret(text, needles)
    assert_no_secret(result.output, needles)
    if "://" not in audit_db:  # the raw bytes too: nothing hides in free pages or the log
        raw = b"".join(p.read_bytes() for p in Path(audit_db).parent.iterdir())
        assert KEY.secret not in raw
        assert_no_secret(raw.decode("latin-1"), needles)
        assert Path(audit_db).stat().st_mode & 0o077 == 0


def test_without_audit_nothing_is_recorded(tmp_path: Path, key_file: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    result = cli("run", "--workers", "1", "--key", key_file, inputs.root, tmp_path / "out")
    assert result.exit_code == 1
    assert "audit:" not in result.stderr
    assert not list(tmp_path.rglob("*.sqlite"))
    refused = cli("run", "--operator", "ada", "--key", key_file, inputs.root, tmp_path / "o2")
    assert refused.exit_code == 2 and "--audit" in refused.stderr


# --------------------------------------------------------------------------------------------
# A crash mid-run


def _serve_fifo_once(fifo: Path) -> None:
    """If a process is opening the named pipe to read, let its open return: it then reads an
    empty file. Nothing is written, so a reader's read ends only when this closes its end, and
    a later open of the pipe by the run finds no writer and blocks."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader
            return
        raise
    os.close(fd)


def _dicomveil() -> str:
    beside = Path(sys.executable).with_name("dicomveil")
    found = str(beside) if beside.exists() else shutil.which("dicomveil")
    assert found is not None, "the dicomveil console script is not installed"
    return found


def test_a_killed_run_is_marked_interrupted_and_its_files_are_known(
    audit_db: str, tmp_path: Path, key_file: Path
) -> None:
    """A real process is killed with SIGKILL after recording three files.

    The fourth input is a named pipe: the run's discovery opens it (this test answers while
    nothing is recorded yet), then the run blocks when it reaches it, after exactly three
    files, until it is killed. No timing decides anything.
    """
    patient = synthetic.fake_patient(41)
    folder = tmp_path / "in"
    paths = synthetic.write_series(
        synthetic.ct_series(patient, seed=41, n_slices=6, rows=8, columns=8), folder
    )
    fourth = folder / "IM0004"
    kept = tmp_path / "IM0004.kept"
    fourth.rename(kept)
    os.mkfifo(fourth)
    out = tmp_path / "out"
    digest, fingerprint = Profile.named("ps3.15-basic").digest, KEY.fingerprint
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p != fourth}
    hashes["IM0004"] = hashlib.sha256(kept.read_bytes()).hexdigest()

    with AuditTrail.open(audit_db) as trail:  # the schema exists before the run starts
        log = (tmp_path / "run.log").open("wb")
        command = [_dicomveil(), "run", "--audit", audit_db, "--workers", "1"]
        proc = subprocess.Popen(
            [*command, "--key", str(key_file), str(folder), str(out)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
            while True:
                assert proc.poll() is None, (tmp_path / "run.log").read_text(errors="replace")
                assert time.monotonic() < deadline, "the run never recorded three files"
                recorded = len(trail.files())
                if recorded >= 3:
                    break
                if recorded == 0:
                    _serve_fifo_once(fourth)
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.close()
        assert proc.returncode == -signal.SIGKILL

    # The database opens and answers; the run is still "running" and its files are known.
    with AuditTrail.open(audit_db, create=False) as trail:
        (run,) = trail.runs()
        assert run.status is RunStatus.RUNNING and run.finished_at is None
        files = trail.files()
        assert [Path(f.input_path).name for f in files] == ["IM0001", "IM0002", "IM0003"]
        for name in ("IM0001", "IM0002", "IM0003"):
            done = trail.files_done(hashes[name], digest, fingerprint)
            assert done is not None and done.outcome is Outcome.WRITTEN and done.run_id == run.id
        for name in ("IM0004", "IM0005", "IM0006"):
            assert trail.files_done(hashes[name], digest, fingerprint) is None
        assert trail.files_done(hashes["IM0001"], "0" * 64, fingerprint) is None
        assert trail.files_done(hashes["IM0001"], digest, "0" * 16) is None
    if "://" not in audit_db:
        engine = _engine(audit_db)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        engine.dispose()

    # The next run marks the killed one interrupted and completes the work.
    fourth.unlink()
    kept.rename(fourth)
    result = cli("run", "--audit", audit_db, "--workers", "1", "--key", key_file, folder, out)
    assert result.exit_code == 0, result.output
    with AuditTrail.open(audit_db, create=False) as trail:
        first, second = trail.runs()
        assert first.status is RunStatus.INTERRUPTED and first.finished_at is None
        assert (first.written, first.withheld, first.skipped, first.failed) == (3, 0, 0, 0)
        assert second.status is RunStatus.FINISHED and second.written == 6
        for name, sha in hashes.items():
            done = trail.files_done(sha, digest, fingerprint)
            assert done is not None and done.run_id == second.id, name
        assert len(trail.files(run_id=first.id)) == 3
        assert trail.runs(status="interrupted") == [first]


def test_a_running_run_of_a_live_process_is_not_interrupted(audit_db: str, tmp_path: Path) -> None:
    config = _config(tmp_path)
    with AuditTrail.open(audit_db) as trail:
        first = trail.start_run(config)  # this process is alive: the run is not stale
        second = trail.start_run(config)
        assert [r.status for r in trail.runs()] == [RunStatus.RUNNING, RunStatus.RUNNING]
        trail.interrupt_run(first)
        assert trail.runs(run_id=first)[0].status is RunStatus.INTERRUPTED
        assert trail.runs(run_id=second)[0].status is RunStatus.RUNNING


def _config(tmp_path: Path) -> RunConfig:
    return RunConfig(profile=Profile.named("ps3.15-basic"), key=KEY, output=tmp_path)


# --------------------------------------------------------------------------------------------
# The tracking sheet


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _read_xlsx(path: Path) -> list[list[object]]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return [list(row) for row in book.active.iter_rows(values_only=True)]  # type: ignore[union-attr]
    finally:
        book.close()


def test_tracking_sheet(audit_db: str, tmp_path: Path, key_file: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    ran = cli("run", "--audit", audit_db, "--operator", "ada", "--workers", "1", "--key", key_file,
              inputs.root, out)  # fmt: skip
    assert ran.exit_code == 1
    with AuditTrail.open(audit_db) as trail:
        first, second = (s.pseudonym for s in trail.subjects())

    shown = cli("track", "--audit", audit_db)
    assert shown.exit_code == 0, shown.output
    assert first in shown.stdout and second in shown.stdout and "pending" in shown.stdout

    # the four-eyes rule, on the command line as in the review (found by an independent test)
    own = cli("track", "--audit", audit_db, "--set", first, "--status", "passed",
              "--operator", "ada")  # fmt: skip
    assert own.exit_code == 2 and "four-eyes rule" in own.output, own.output
    passed = cli("track", "--audit", audit_db, "--set", first, "--status", "passed",
                 "--notes", "=looks fine", "--operator", "bob")  # fmt: skip
    assert passed.exit_code == 0, passed.output
    failed = cli("track", "--audit", audit_db, "--set", second, "--status", "FAILED",
                 "--notes", "overlay left", "--export", tmp_path / "sheet.csv")  # fmt: skip
    assert failed.exit_code == 0, failed.output
    assert cli("track", "--audit", audit_db, "--export", tmp_path / "sheet.xlsx").exit_code == 0

    rows = _read_csv(tmp_path / "sheet.csv")
    assert tuple(rows[0]) == TRACKING_COLUMNS
    sheet = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(sheet) == {first, second}
    assert sheet[first]["deidentified_by"] == "ada"
    assert sheet[first]["checked_by"] == "bob"
    assert sheet[first]["qc_status"] == "passed"
    assert sheet[first]["notes"] == "'=looks fine"  # quoted: a spreadsheet never runs it
    assert sheet[second]["qc_status"] == "failed"
    assert sheet[second]["notes"] == "overlay left"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sheet[first]["deidentified_at"])

    table = _read_xlsx(tmp_path / "sheet.xlsx")
    assert tuple(table[0]) == TRACKING_COLUMNS
    by_subject = {row[0]: dict(zip(TRACKING_COLUMNS, row, strict=True)) for row in table[1:]}
    assert set(by_subject) == {first, second}
    assert by_subject[first]["notes"] == "=looks fine"  # text, never a formula
    assert by_subject[first]["checked_by"] == "bob"
    assert by_subject[second]["qc_status"] == "failed"
    assert isinstance(by_subject[first]["deidentified_at"], dt.datetime)
    with AuditTrail.open(audit_db) as trail:
        records = {s.pseudonym: s for s in trail.subjects()}
        at = records[first].deidentified_at
        assert at is not None
        assert by_subject[first]["deidentified_at"] == at.replace(tzinfo=None, microsecond=0)
        events = trail.qc_events()
    assert [(e.pseudonym, e.status) for e in events] == [
        (first, QcStatus.PASSED),
        (second, QcStatus.FAILED),
    ]

    unknown = cli("track", "--audit", audit_db, "--set", "NOBODY", "--status", "passed")
    assert unknown.exit_code == 2 and "NOBODY" in unknown.stderr
    assert cli("track", "--audit", audit_db, "--set", first).exit_code == 2
    assert cli("track", "--audit", audit_db, "--status", "passed").exit_code == 2
    bad = cli("track", "--audit", audit_db, "--set", first, "--status", "maybe")
    assert bad.exit_code == 2
    assert cli("track", "--audit", audit_db, "--export", tmp_path / "x.ods").exit_code == 2


def test_verification_and_a_new_run_update_the_sheet(
    audit_db: str, tmp_path: Path, key_file: Path
) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    cli("run", "--audit", audit_db, "--operator", "ada", "--workers", "1", "--key", key_file,
        inputs.root, out)  # fmt: skip
    with AuditTrail.open(audit_db) as trail:
        subjects = [s.pseudonym for s in trail.subjects()]
        findings = [{"file": "x/y.dcm", "tag": "(0010,0010)", "reason": "not empty"}]
        checked = trail.record_verification(out, "carol", "findings", findings)
        after = {s.pseudonym: s for s in trail.subjects()}
        assert {s.qc_status for s in after.values()} == {QcStatus.FAILED}
        assert {s.verified_by for s in after.values()} == {"carol"}
        (verification,) = trail.verifications()
        assert verification.id == checked and verification.output == str(out.resolve())
        assert verification.findings_count == 1 and verification.findings == findings
        assert trail.verifications(output=tmp_path / "elsewhere") == []
        trail.record_verification(out, "carol", "pass", [], subjects=subjects[:1])
        assert trail.subjects()[0].qc_status is QcStatus.PASSED
        assert trail.subjects()[1].qc_status is QcStatus.FAILED
        trail.record_verification(out, "erin", "could-not-check", [], subjects=subjects[1:])
        assert trail.subjects()[1].qc_status is QcStatus.FAILED
        assert trail.subjects()[1].verified_by == "erin"

    # New output for the subjects: their QC goes back to pending, their history stays.
    again = cli("run", "--audit", audit_db, "--operator", "dan", "--workers", "1",
                "--key", key_file, inputs.root, tmp_path / "out2")  # fmt: skip
    assert again.exit_code == 1
    with AuditTrail.open(audit_db) as trail:
        for subject in trail.subjects():
            assert subject.qc_status is QcStatus.PENDING
            assert subject.deidentified_by == "dan" and subject.deidentified_run == 2
        assert [s.verified_by for s in trail.subjects()] == ["carol", "erin"]
        history = [e.status for e in trail.qc_events(subjects[0])]
        assert history == [QcStatus.FAILED, QcStatus.PASSED, QcStatus.PENDING]
        history = [e.status for e in trail.qc_events(subjects[1])]
        assert history == [QcStatus.FAILED, QcStatus.FAILED, QcStatus.PENDING]


def test_original_ids_only_with_the_crosswalk_and_the_flag(
    audit_db: str, tmp_path: Path, key_file: Path
) -> None:
    inputs = make_inputs(tmp_path / "in")
    maps = tmp_path / "maps"
    ran = cli("run", "--audit", audit_db, "--workers", "1", "--key", key_file, "--map-dir", maps,
              inputs.root, tmp_path / "out")  # fmt: skip
    assert ran.exit_code == 1
    original_ids = {p.patient_id for p in inputs.patients}
    patients = maps / "patients.csv"
    pairs = dict(_read_csv(patients)[1:])
    assert set(pairs) == original_ids

    plain = cli("track", "--audit", audit_db, "--export", tmp_path / "plain.csv")
    held = cli("track", "--audit", audit_db, "--crosswalk", patients,
               "--export", tmp_path / "held.xlsx")  # fmt: skip
    for result in (plain, held):
        assert result.exit_code == 0, result.output
        assert_no_secret(result.output, original_ids)
    assert "--show-original-ids" in held.stderr
    assert _read_csv(tmp_path / "plain.csv")[0] == list(TRACKING_COLUMNS)
    assert tuple(_read_xlsx(tmp_path / "held.xlsx")[0]) == TRACKING_COLUMNS
    for path in (tmp_path / "plain.csv", tmp_path / "held.xlsx"):
        assert_no_secret(path.read_bytes().decode("latin-1"), original_ids)
    flag_only = cli("track", "--audit", audit_db, "--show-original-ids")
    assert flag_only.exit_code == 2 and "--crosswalk" in flag_only.stderr

    for name in ("ids.csv", "ids.xlsx"):
        shown = cli("track", "--audit", audit_db, "--crosswalk", patients,
                    "--show-original-ids", "--export", tmp_path / name)  # fmt: skip
        assert shown.exit_code == 0, shown.output
        for original in original_ids:
            assert original in shown.stdout
        export = tmp_path / name
        assert export.stat().st_mode & 0o077 == 0
        rows = _read_csv(export) if name.endswith(".csv") else _read_xlsx(export)
        assert tuple(rows[0]) == (TRACKING_COLUMNS[0], "original_id", *TRACKING_COLUMNS[1:])
        assert {(r[0], r[1]) for r in rows[1:]} == {(new, old) for old, new in pairs.items()}
    _, text = dump(audit_db)
    assert_no_secret(text, original_ids)


# --------------------------------------------------------------------------------------------
# Listing and exporting the trail


def test_audit_lists_filters_and_exports(audit_db: str, tmp_path: Path, key_file: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    for n, out in enumerate(("out1", "out2"), start=1):
        result = cli("run", "--audit", audit_db, "--operator", f"op{n}", "--workers", "1",
                     "--key", key_file, inputs.root, tmp_path / out)  # fmt: skip
        assert result.exit_code == 1
    with AuditTrail.open(audit_db) as trail:
        trail.record_verification(tmp_path / "out1", "carol", "passed", [])
        assert len(trail.files()) == 16
        assert len(trail.files(run_id=2)) == 8
        assert [f.outcome for f in trail.files(outcome="withheld")] == [Outcome.WITHHELD] * 2
        assert len(trail.files(run_id=1, outcome=Outcome.WRITTEN)) == 5
        subject = trail.subjects()[0].pseudonym
        assert {f.subject for f in trail.files(subject=subject)} == {subject}
        future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        assert trail.runs(since=future) == [] and trail.files(since=future) == []
        assert trail.verifications(since=future) == []
        assert len(trail.runs(since=dt.datetime(2000, 1, 1))) == 2
        assert [r.operator for r in trail.runs(run_id=2)] == ["op2"]

    runs = cli("audit", "--audit", audit_db, "--export", tmp_path / "runs.csv")
    assert runs.exit_code == 0, runs.output
    assert "op1" in runs.stdout and "op2" in runs.stdout
    rows = _read_csv(tmp_path / "runs.csv")
    header = rows[0]
    assert [r[header.index("operator")] for r in rows[1:]] == ["op1", "op2"]
    assert {r[header.index("status")] for r in rows[1:]} == {"finished"}
    assert {r[header.index("key_fingerprint")] for r in rows[1:]} == {KEY.fingerprint}

    withheld = cli("audit", "--audit", audit_db, "files", "--run", "2", "--outcome", "withheld",
                   "--export", tmp_path / "withheld.xlsx")  # fmt: skip
    assert withheld.exit_code == 0, withheld.output
    table = _read_xlsx(tmp_path / "withheld.xlsx")
    header = [str(c) for c in table[0]]
    assert len(table) == 2
    assert table[1][header.index("run_id")] == 2
    assert table[1][header.index("outcome")] == "withheld"
    assert table[1][header.index("input_path")] == str(inputs.root / "us" / "IM0001")
    assert "IM0001" in withheld.stdout and "written" not in withheld.stdout

    since = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    later = cli("audit", "--audit", audit_db, "files", "--since", since.date().isoformat())
    assert later.exit_code == 0 and "no files recorded" in later.stderr
    checks = cli("audit", "--audit", audit_db, "verifications", "--export", tmp_path / "v.csv")
    assert checks.exit_code == 0 and "carol" in checks.stdout
    assert len(_read_csv(tmp_path / "v.csv")) == 2

    assert cli("audit", "--audit", audit_db, "runs", "--outcome", "failed").exit_code == 2
    assert cli("audit", "--audit", audit_db, "verifications", "--run", "1").exit_code == 2
    assert cli("audit", "--audit", audit_db, "files", "--since", "yesterday").exit_code == 2
    assert cli("audit", "--audit", audit_db, "everything").exit_code == 2


# --------------------------------------------------------------------------------------------
# Opening databases


def test_reading_commands_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "audit.sqlite"
    for args in (("track",), ("audit", "runs")):
        result = cli(*args, "--audit", missing)
        assert result.exit_code == 2 and "no audit database" in result.stderr
    assert not missing.parent.exists()
    with pytest.raises(AuditError, match="no audit database"):
        AuditTrail.open(missing, create=False)


def test_unsupported_and_newer_databases_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="SQLite file path or a postgresql"):
        AuditTrail.open("mysql://someone@localhost/audit")
    path = tmp_path / "audit.sqlite"
    AuditTrail.open(path).close()
    engine = _engine(str(path))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    engine.dispose()
    with pytest.raises(AuditError, match="schema version"):
        AuditTrail.open(path)
    other = tmp_path / "other.sqlite"
    engine = _engine(str(other))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
    engine.dispose()
    with pytest.raises(AuditError, match="not a dicomveil audit database"):
        AuditTrail.open(other, create=False)


def test_postgres_url_password_is_hidden(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database().replace("postgres@", "postgres:s3cret@", 1)
    with AuditTrail.open(url) as trail:  # trust auth ignores the password
        assert "s3cret" not in trail.location and "***" in trail.location


def test_qc_workflow_end_to_end(tmp_path: Path, key_file: Path) -> None:
    """run -> verify (recorded) -> track: the checked subjects pass, with who and when."""
    a = synthetic.fake_patient(41)
    synthetic.write_series(synthetic.ct_series(a, seed=41, n_slices=2, rows=8, columns=8),
                           tmp_path / "in")  # fmt: skip
    db = str(tmp_path / "audit.sqlite")
    out, maps = tmp_path / "out", tmp_path / "maps"
    ran = cli("run", "--audit", db, "--operator", "ada", "--workers", "1", "--key", key_file,
              "--map-dir", maps, tmp_path / "in", out)  # fmt: skip
    assert ran.exit_code == 0, ran.output
    checked = cli("verify", out, "--against", tmp_path / "in", "--map-dir", maps,
                  "--audit", db, "--operator", "bob", "--workers", "1", "--iod", "off")  # fmt: skip
    assert checked.exit_code == 0, checked.output
    with AuditTrail.open(db) as trail:
        (subject,) = trail.subjects()
        assert subject.qc_status is QcStatus.PASSED
        assert (subject.deidentified_by, subject.verified_by) == ("ada", "bob")
        (verification,) = trail.verifications()
        assert verification.result == "pass" and verification.findings_count == 0
    sheet = cli("track", "--audit", db)
    assert sheet.exit_code == 0 and "passed" in sheet.stdout


def test_a_verification_by_the_de_identifier_decides_no_qc(
    audit_db: str, tmp_path: Path, key_file: Path
) -> None:
    """``verify --audit`` run by the operator who de-identified the release is recorded,
    but passes no subject: the four-eyes rule (it did: found by an independent test);
    run by another person it does."""
    sample = Path(__file__).resolve().parents[1] / "examples" / "sample"
    out, maps = tmp_path / "out", tmp_path / "maps"
    ran = cli("run", "--audit", audit_db, "--operator", "ada", "--key", key_file,
              "--map-dir", maps, sample, out)  # fmt: skip
    assert ran.exit_code == 0, ran.output

    def statuses() -> set[str]:
        with AuditTrail.open(audit_db) as trail:
            written = {f.subject for f in trail.files() if f.outcome.value == "written"}
            return {s.qc_status.value for s in trail.subjects() if s.pseudonym in written}

    for operator, expected in (("ada", {"pending"}), ("carl", {"passed"})):
        checked = cli("verify", out, "--against", sample, "--map-dir", maps,
                      "--audit", audit_db, "--operator", operator)  # fmt: skip
        assert checked.exit_code == 0, checked.output
        assert statuses() == expected, operator
