"""Issue 22: runs whose memory does not grow with the number of files, and that resume.

The kill test runs the real command as a subprocess, kills its whole process group with
SIGKILL at three moments, resumes each time, and compares the final tree byte for byte with
an uninterrupted run's. The journal is read as bytes for any patient value or input path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID

from dicomveil import Outcome, Profile, RunConfig, run
from dicomveil.runs import results as results_module
from dicomveil.runs.journal import JOURNAL_NAME
from tests.conftest import KEY, OTHER_KEY, TODAY
from tests.support import tiny
from tests.support.commands import cli, keygen

COMMAND = [sys.executable, "-m", "dicomveil"]


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root``: relative path -> sha256; every folder -> ''."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return found


def _written(out: Path) -> int:
    """Outputs in place so far (not counting temporary files)."""
    return sum(1 for _ in out.rglob("*.dcm")) if out.exists() else 0


def _corpus(folder: Path, n: int, per_patient: int = 100) -> Path:
    list(tiny.write_corpus(folder, n, per_patient=per_patient))
    return folder


def _config(tmp: Path, **changes: object) -> RunConfig:
    base = RunConfig(
        profile=Profile.named("ps3.15-basic"),
        key=KEY,
        output=tmp / "out",
        workers=1,
        today=TODAY,
        state_dir=tmp / "state",
        keep_results=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.slow
def test_kill_nine_and_resume_gives_the_uninterrupted_tree(tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in", 3000)
    key = keygen(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def command(out: Path, state: Path, *extra: str) -> list[str]:
        return [
            *COMMAND, "run", "--key", str(key), "--workers", "2", "--progress", "none",
            "--state-dir", str(state), *extra, str(source), str(out),
        ]  # fmt: skip

    reference = subprocess.run(
        command(tmp_path / "ref", tmp_path / "ref-state"), capture_output=True, text=True, env=env
    )
    assert reference.returncode == 0, reference.stderr

    out, state = tmp_path / "out", tmp_path / "state"
    targets = sorted(random.Random(22).sample(range(300, 2700), 3))  # outputs written by then
    killed_mid_run = 0
    for attempt, target in enumerate(targets):
        extra = ("--resume",) if attempt else ()
        with subprocess.Popen(
            command(out, state, *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        ) as proc:
            while proc.poll() is None and _written(out) < target:
                time.sleep(0.01)
            if proc.poll() is None:
                killed_mid_run += 1
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert killed_mid_run >= 2, "the kills should land while the run is going on"
    assert (out / ".").exists()

    last = subprocess.run(command(out, state, "--resume"), capture_output=True, text=True, env=env)
    assert last.returncode == 0, last.stderr
    assert "input(s) skipped, done by an earlier run" in last.stderr
    assert _tree(out) == _tree(tmp_path / "ref")

    journal = b"".join(p.read_bytes() for p in state.iterdir() if p.is_file())
    assert journal, "the journal is kept in the state folder"
    for patient in range(30):
        assert tiny.patient_name(patient).encode() not in journal
        assert tiny.patient_id(patient).encode() not in journal
    assert str(source).encode() not in journal and b"f000.dcm" not in journal


def test_resume_skips_what_is_done_and_redoes_what_changed(tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in", 40, per_patient=10)
    (source / "d0000" / "broken.dcm").write_bytes((source / "d0000/f000.dcm").read_bytes()[:300])
    first = run([source], _config(tmp_path))
    assert first.count(Outcome.WRITTEN) == 40 and first.count(Outcome.FAILED) == 1
    assert first.results == [], "keep_results=False: counts only"

    again = run([source], _config(tmp_path, resume=True))
    assert again.resumed == 40, "written inputs are skipped; the failed one is tried again"
    assert again.count(Outcome.FAILED) == 1 and again.count(Outcome.WRITTEN) == 0
    assert again.total == 1

    changed = source / "d0000" / "f007.dcm"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    one = run([source], _config(tmp_path, resume=True))
    assert (one.resumed, one.count(Outcome.WRITTEN)) == (39, 1)

    other_profile = run(
        [source], _config(tmp_path, resume=True, profile=Profile.named("nidb-anonymize-full"))
    )
    assert other_profile.resumed == 0 and other_profile.count(Outcome.WRITTEN) > 0

    other_key = run(
        [source],
        _config(tmp_path, resume=True, key=OTHER_KEY, output=tmp_path / "out2"),
    )
    assert other_key.resumed == 0 and other_key.count(Outcome.WRITTEN) == 40


def test_without_resume_a_run_starts_its_journal_afresh(tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in", 20, per_patient=10)
    run([source], _config(tmp_path))
    fresh = run([source], _config(tmp_path))
    assert fresh.resumed == 0 and fresh.count(Outcome.WRITTEN) == 20
    assert (tmp_path / "state" / JOURNAL_NAME).is_file()
    with pytest.raises(Exception, match="state folder"):
        run([source], _config(tmp_path, resume=True, state_dir=None))


def test_a_second_instance_of_a_uid_is_refused_across_a_resume(tmp_path: Path) -> None:
    """A file of an SOP Instance UID an earlier run wrote, added before a resume (or found
    after a kill): it fails as it would in one run, and the release holds one instance of
    the UID (a black-box test: the resume wrote both, under two pseudonyms, exit 0)."""
    source = _corpus(tmp_path / "in", 6, per_patient=3)
    first = run([source], _config(tmp_path))
    assert first.count(Outcome.WRITTEN) == 6
    copy = source / "zz-copy" / "f.dcm"
    copy.parent.mkdir()
    modified = bytearray((source / "d0000" / "f001.dcm").read_bytes())
    for was, now in ((b"TINY^P", b"COPY^P"), (b"MRN", b"XYZ")):  # another patient, its UID
        place = modified.index(was)
        modified[place : place + len(was)] = now
    copy.write_bytes(bytes(modified))

    resumed = run([source], _config(tmp_path, resume=True, keep_results=True))

    assert resumed.resumed == 6 and resumed.count(Outcome.FAILED) == 1
    (failed,) = [r for r in resumed.results if r.outcome is Outcome.FAILED]
    assert failed.task.path == copy and "same SOP Instance UID" in failed.reason
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6


def test_an_input_changed_before_a_resume_leaves_no_old_output(tmp_path: Path) -> None:
    """An input whose SOP Instance UID changed since the earlier run is done again, and its
    old output goes: the output holds what an uninterrupted run of today's inputs writes
    (a black-box test: 201 outputs for 200 inputs)."""
    source = _corpus(tmp_path / "in", 6, per_patient=3)
    assert run([source], _config(tmp_path)).count(Outcome.WRITTEN) == 6
    changed = source / "d0000" / "f001.dcm"
    ds = pydicom.dcmread(changed)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{ds.SOPInstanceUID}.9")
    ds.save_as(changed)
    reference = run([source], _config(tmp_path, output=tmp_path / "ref", state_dir=None))

    resumed = run([source], _config(tmp_path, resume=True))

    assert resumed.resumed == 5 and resumed.count(Outcome.WRITTEN) == 1
    names = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.dcm"))
    assert names == sorted(
        p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*.dcm")
    )
    assert reference.count(Outcome.WRITTEN) == 6


def test_an_earlier_versions_journal_is_started_afresh(tmp_path: Path) -> None:
    """A journal of format 1 (its table of five columns) where the run keeps its state: the
    run starts it afresh in today's format (the fresh-clone CI found runs failing on one,
    "table inputs has 5 columns but 6 values were supplied")."""
    source = _corpus(tmp_path / "in", 4, per_patient=2)
    (tmp_path / "state").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / JOURNAL_NAME)) as db:
        db.executescript(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE inputs (id TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, outcome TEXT NOT NULL, output TEXT);"
            "INSERT INTO meta VALUES ('format', 'dicomveil-journal/1');"
        )
    for resume in (False, True):
        summary = run([source], _config(tmp_path, resume=resume, output=tmp_path / str(resume)))
        assert summary.count(Outcome.WRITTEN) == 4 and summary.resumed == 0


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no-journal"])
def test_same_uid_found_after_the_set_of_outputs_moved_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: bool
) -> None:
    """Two inputs of one SOP Instance UID, far apart: the first's task has left memory (and,
    with a journal, is known by its keyed id only); the second fails and the first's file is
    written again, as it was."""
    monkeypatch.setattr(results_module, "SEEN_IN_MEMORY", 4)
    source = _corpus(tmp_path / "in", 30, per_patient=10)
    copy = source / "zz-copy" / "f.dcm"
    copy.parent.mkdir()
    modified = bytearray((source / "d0000" / "f001.dcm").read_bytes())
    place = modified.index(b"TINY^P")  # same SOP Instance UID, another patient name
    modified[place : place + 6] = b"COPY^P"
    copy.write_bytes(bytes(modified))
    reference = run([source / "d0000"], _config(tmp_path, output=tmp_path / "ref", state_dir=None))
    assert reference.count(Outcome.WRITTEN) == 30
    config = _config(tmp_path, keep_results=True, state_dir=tmp_path / "s" if journal else None)
    summary = run([source], config)
    assert summary.count(Outcome.FAILED) == 1
    failed = [r for r in summary.results if r.outcome is Outcome.FAILED]
    assert failed[0].task.path == copy and "same SOP Instance UID" in failed[0].reason
    assert _tree(tmp_path / "out") == _tree(tmp_path / "ref")


def test_the_summary_counts_without_keeping_results(tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in", 25, per_patient=5)
    (source / "notes.txt").write_text("not DICOM")
    summary = run([source], _config(tmp_path, state_dir=None, workers=2))
    assert summary.results == [] and summary.total == 26
    assert summary.count(Outcome.WRITTEN) == 25 and summary.count(Outcome.SKIPPED) == 1
    assert sum(summary.reasons(Outcome.SKIPPED).values()) == 1


def test_progress_lines_and_json_events(tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in", 30, per_patient=10)
    key = keygen(tmp_path)
    lines = cli(
        "run", "--key", key, "--workers", "1", "--progress", "lines", "--progress-every",
        "0.1", source, tmp_path / "o1",
    )  # fmt: skip
    assert lines.exit_code == 0, lines.output
    events = cli(
        "run", "--key", key, "--workers", "1", "--progress", "json", "--progress-every",
        "0.1", source, tmp_path / "o2",
    )  # fmt: skip
    assert events.exit_code == 0, events.output
    parsed = [json.loads(line) for line in events.stdout.splitlines() if line.strip()]
    assert parsed[-1]["event"] == "finished"
    assert parsed[-1]["done"] == parsed[-1]["total"] == 30
    assert {"files_per_s", "bytes_per_s", "eta_s", "elapsed_s"} <= set(parsed[-1])
    for text in (lines.stderr, events.stdout):
        assert "TINY^" not in text and "MRN1" not in text and str(source) not in text


def test_resume_refuses_a_dry_run(tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in", 2)
    key = keygen(tmp_path)
    result = cli("run", "--key", key, "--resume", "--dry-run", source, tmp_path / "o")
    assert result.exit_code != 0 and "--resume" in result.stderr
    shutil.rmtree(source)


def test_a_json_report_that_cannot_be_written_stops_the_run_first(tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in", 2)
    key = keygen(tmp_path)
    result = cli("run", "--key", key, source, tmp_path / "o", "--json", tmp_path / "no" / "r.json")
    assert result.exit_code == 2 and "cannot write" in result.stderr
    assert not (tmp_path / "o").exists(), "nothing written before the report can be"
