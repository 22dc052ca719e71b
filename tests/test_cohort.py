"""The gateway's cohort database (issue 16) on its SQLite file and on a real PostgreSQL
server: what is recorded is found by pseudonym and new UID, per project only, survives a
restart, and a database that cannot be used is a clear error without its password."""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil import Key, Profile, RunConfig, run
from dicomveil.errors import CohortError
from dicomveil.gateway.cohort import Cohort
from tests.support.postgres import PostgresServer

A, B = "a" * 64, "b" * 64  # two projects (key fingerprints)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "sqlite":
        return tmp_path / "state" / "cohort.sqlite"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


def test_recorded_instances_are_found_by_pseudonym_and_new_uid(database: str | Path) -> None:
    cohort = Cohort(database)
    try:
        cohort.record(A, "MRN-1", "DV1111", {"1.2.3": "2.25.1", "1.2.3.4": "2.25.2"})
        cohort.record(A, "MRN-1", "DV1111", {"1.2.3": "2.25.1"})  # again: no change
        cohort.record(A, "MRN-2", "DV2222", {"1.2.5": "2.25.3"})
        cohort.record(B, "MRN-3", "DV3333", {"1.2.6": "2.25.4"})
        assert cohort.patients_matching(A, "DV1111") == {"MRN-1"}
        assert cohort.patients_matching(A, "DV*") == {"MRN-1", "MRN-2"}
        assert cohort.patients_matching(A, "DV3333") == set()  # another project's
        assert cohort.patients_matching(B, "DV3333") == {"MRN-3"}
        assert cohort.original_uids(A, ["2.25.1", "2.25.3", "2.25.4", "9.9"]) == {"1.2.3", "1.2.5"}
        assert cohort.has_patient(A, "MRN-2") and not cohort.has_patient(B, "MRN-2")
        assert cohort.has_uid(A, "1.2.3.4") and not cohort.has_uid(A, "1.2.6")
    finally:
        cohort.close()
    again = Cohort(database)  # durable: a restarted gateway answers for the same cohort
    try:
        assert again.patients_matching(A, "DV1111") == {"MRN-1"}
        assert again.original_uids(B, ["2.25.4"]) == {"1.2.6"}
    finally:
        again.close()


def test_map_folders_are_imported(database: str | Path, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "patients.csv").write_text("id_old,id_new\nMRN-9,DV9999\n", encoding="utf-8")
    rows = "".join(f"1.2.{n},2.25.{n}\n" for n in range(1200))  # more than one IN (...) chunk
    (maps / "uids.csv").write_text("id_old,id_new\n" + rows, encoding="utf-8")
    cohort = Cohort(database)
    try:
        assert cohort.import_maps(A, maps) == (1, 1200)
        assert cohort.patients_matching(A, "DV9999") == {"MRN-9"}
        found = cohort.original_uids(A, [f"2.25.{n}" for n in range(1200)])
        assert found == {f"1.2.{n}" for n in range(1200)}
    finally:
        cohort.close()


def test_uids_an_instance_refers_to_do_not_join_the_cohort(database: str | Path) -> None:
    """Only the instance's own Study, Series and SOP Instance UIDs: a prior study or a source
    image it refers to is not the project's (not answered, not retrievable)."""
    cohort = Cohort(database)
    try:
        uid_map = {"1.2.1": "2.25.1", "1.2.2": "2.25.2", "1.2.3": "2.25.3", "1.9.9": "2.25.9"}
        cohort.record(A, "MRN-1", "DV1111", uid_map, own=["1.2.1", "1.2.2", "1.2.3"])
        assert cohort.original_uids(A, ["2.25.1", "2.25.2", "2.25.3", "2.25.9"]) == {
            "1.2.1", "1.2.2", "1.2.3"
        }  # fmt: skip
        assert not cohort.has_uid(A, "1.9.9")
    finally:
        cohort.close()


def test_a_runs_map_folder_gives_the_cohort_its_instances_only(tmp_path: Path) -> None:
    """A real CT (pydicom's CT_small) that refers to a prior image: `dicomveil run --map-dir`
    writes every UID to uids.csv and the instance's own to instances.csv; the cohort
    imported from the folder holds the instance's UIDs, not the prior's. A map folder
    without instances.csv (an earlier version's) still imports every UID."""
    ds = dcmread(cast(str, get_testdata_file("CT_small.dcm")))
    prior = "1.2.826.0.1.3680043.8.498.4711"
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = prior
    ds.ReferencedImageSequence = Sequence([item])
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "ct.dcm")
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"), key=Key.generate(), output=tmp_path / "out",
        map_dir=tmp_path / "maps", workers=1, today=dt.date(2026, 12, 6),
    )  # fmt: skip
    summary = run([tmp_path / "in"], config)
    [result] = summary.written
    own = {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
    assert prior in result.uid_map and own <= set(result.uid_map)
    cohort = Cohort(tmp_path / "state" / "cohort.sqlite")
    try:
        assert cohort.import_maps(A, tmp_path / "maps")[1] == 3
        assert {uid for uid in [*own, prior] if cohort.has_uid(A, uid)} == own
        assert cohort.original_uids(A, [result.uid_map[prior]]) == set()
        (tmp_path / "maps" / "instances.csv").unlink()
        assert cohort.import_maps(B, tmp_path / "maps")[1] == len(result.uid_map)
        assert cohort.has_uid(B, prior)
        # a later run into that folder keeps its format (no list of its instances only)
        run([tmp_path / "in"], replace(config, output=tmp_path / "again"))
        assert not (tmp_path / "maps" / "instances.csv").exists()
    finally:
        cohort.close()


def test_an_unreachable_database_is_a_clear_error_without_its_password() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CohortError) as caught:
        Cohort(f"postgresql://dv:s3cret@127.0.0.1:{port}/cohort?connect_timeout=2")
    assert "cohort database postgresql+psycopg://dv:***@127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_another_kind_of_database_is_refused() -> None:
    with pytest.raises(CohortError, match="SQLite file path or a postgresql:// URL, not mysql"):
        Cohort("mysql://dv@127.0.0.1/cohort")
