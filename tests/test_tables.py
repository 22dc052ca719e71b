"""Tests for dicomveil.standard.tables and tools/generate_tables.py."""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
GENERATOR = REPO / "tools" / "generate_tables.py"

if importlib.util.find_spec("dicomveil") is None:  # not installed: use the source tree
    sys.path.insert(0, str(REPO / "src"))

from dicomveil.standard import tables  # noqa: E402

PATTERN_TAGS = {"50xxxxxx", "60xx3000", "60xx4000", "private"}
BASIC_CODES = {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


def _reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(
            "../shared/reference is absent: "
            "cannot compare the generated tables with the reference facts"
        )
    return REFERENCE


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (_reference() / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _row(tag: str) -> tables.TableRow:
    matches = [row for row in tables.e1_1_rows() if row.tag == tag]
    assert len(matches) == 1, f"{tag}: {len(matches)} rows"
    return matches[0]


# --- comparisons with ../shared/reference -------------------------------------------


def test_generator_check_passes() -> None:
    reference = _reference()
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--reference", str(reference), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_e1_1_row_count_matches_csv() -> None:
    csv_rows = _csv_rows("ps3.15-table-e1-1.csv")
    rows = tables.e1_1_rows()
    assert len(csv_rows) == len(rows) == 657
    patterns = [row.tag for row in rows if row.tag in PATTERN_TAGS]
    assert sorted(patterns) == sorted(PATTERN_TAGS)
    assert len(rows) - len(patterns) == 653
    singles = {
        r["tag"].replace(",", "") for r in csv_rows if re.fullmatch(r"[0-9A-F,]{9}", r["tag"])
    }
    assert singles == {row.tag for row in rows} - PATTERN_TAGS


def test_e1_1_rows_match_csv() -> None:
    for csv_row, row in zip(_csv_rows("ps3.15-table-e1-1.csv"), tables.e1_1_rows(), strict=True):
        assert csv_row["basic_profile"] == row.basic, row.tag
        assert csv_row["keyword"] == row.keyword, row.tag
        assert {c: csv_row[c] for c in tables.OPTION_COLUMNS if csv_row[c]} == dict(row.options)


def test_safe_private_row_count_matches_csv() -> None:
    csv_rows = _csv_rows("ps3.15-safe-private.csv")
    rows = tables.safe_private_rows()
    assert len(csv_rows) == len(rows) == 479
    for csv_row, row in zip(csv_rows, rows, strict=True):
        assert csv_row["tag"] == f"{row.group:04X},xx{row.offset:02X}"
        assert csv_row["private_creator"] == row.creator


def test_sop_class_count_matches_csv() -> None:
    csv_rows = _csv_rows("sop-class-to-iod.csv")
    assert len(csv_rows) == 183
    for csv_row in csv_rows:
        assert tables.sop_class_iod(csv_row["sop_class_uid"]) == csv_row["iod"]


# --- spot checks, independent of ../shared ------------------------------------------


@pytest.mark.parametrize(
    ("tag", "keyword", "basic", "options"),
    [
        ("00100010", "PatientName", "Z", {}),
        ("00100020", "PatientID", "Z/D", {}),
        ("0020000D", "StudyInstanceUID", "U", {"retain_uids": "K"}),
        ("00080018", "SOPInstanceUID", "U", {"retain_uids": "K"}),
        ("00080080", "InstitutionName", "X/Z/D", {"retain_institution_identity": "K"}),
        (
            "00080020",
            "StudyDate",
            "Z",
            {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"},
        ),
        ("00081140", "ReferencedImageSequence", "X/Z/U*", {"retain_uids": "K"}),
        ("0040A730", "ContentSequence", "D", {"clean_structured_content": "C"}),
        ("60xx3000", "OverlayData", "X", {"clean_graphics": "C"}),
        ("private", "", "X", {"retain_safe_private": "C"}),
    ],
)
def test_e1_1_spot_checks(tag: str, keyword: str, basic: str, options: dict[str, str]) -> None:
    row = _row(tag)
    assert row.keyword == keyword
    assert row.basic == basic
    assert dict(row.options) == options


def test_edition_and_option_columns() -> None:
    assert tables.EDITION == "2026d"
    assert len(tables.OPTION_COLUMNS) == 10
    assert tables.OPTION_COLUMNS[0] == "retain_safe_private"
    assert tables.OPTION_COLUMNS[-1] == "clean_graphics"


def test_e1_1_codes_are_valid() -> None:
    rows = tables.e1_1_rows()
    assert len(rows) == 657
    for row in rows:
        if row.tag not in PATTERN_TAGS:
            assert re.fullmatch(r"[0-9A-F]{8}", row.tag), row.tag
        assert row.basic in BASIC_CODES, row
        assert set(row.options) <= set(tables.OPTION_COLUMNS), row
        assert set(row.options.values()) <= {"K", "C"}, row


def test_returned_mappings_are_read_only() -> None:
    with pytest.raises(TypeError):
        _row("00100010").options["retain_uids"] = "K"  # type: ignore[index]
    with pytest.raises(TypeError):
        tables.attribute_types("CT Image")["PatientID"] = "1"  # type: ignore[index]
    with pytest.raises(TypeError):
        tables.tcia_private()[("X", 0x0009, 0x10)] = "keep"  # type: ignore[index]


def test_sop_class_iod() -> None:
    assert tables.sop_class_iod("1.2.840.10008.5.1.4.1.1.2") == "CT Image"
    assert tables.sop_class_iod("1.2.3.4") is None


def test_attribute_types() -> None:
    ct = tables.attribute_types("CT Image")
    assert ct["PatientID"] == "2"
    assert ct["InstitutionName"] == "3"
    assert ct["SeriesDate"] == "3"
    # nested, InstitutionName (X/Z/D) in the Operator Identification Sequence items
    assert ct["OperatorIdentificationSequence>InstitutionName"] == "1C"
    # only tags with a compound Basic Profile code are kept: Requested Procedure ID
    # (0040,1001) is Basic X, so its path (Type 1C in CT Image) is not in the table
    assert "RequestAttributesSequence>RequestedProcedureID" not in ct
    assert tables.attribute_types("Positron Emission Tomography Image")["SeriesDate"] == "1"
    assert "PatientName" not in ct  # Basic Profile Z: not a compound code
    assert len(tables.attribute_types("No Such IOD")) == 0


def test_tcia_private() -> None:
    tcia = tables.tcia_private()
    assert tcia[("SIEMENS CSA HEADER", 0x0029, 0x10)] == "remove"
    assert tcia[("GEMS_PARM_01", 0x0043, 0x39)] == "keep"
    assert set(tcia.values()) <= {"keep", "remove", "hash", "date-shift", "date-shift-integer"}
    assert all(creator for creator, _, _ in tcia)


def test_safe_private() -> None:
    keys = {(row.creator, row.group, row.offset) for row in tables.safe_private_rows()}
    assert ("Philips PET Private Group", 0x7053, 0x00) in keys
    assert len(keys) == len(tables.safe_private_rows())


def test_table_digest() -> None:
    digest = tables.table_digest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == tables.table_digest()


def test_data_files_match_their_recorded_provenance() -> None:
    """Without ../shared: each generated table is the content recorded with its sources'
    sha256 when it was generated (a table edited by hand fails here), and each table's own
    header names a source whose sha256 the record holds."""
    data = REPO / "src" / "dicomveil" / "standard" / "data"
    record = json.loads((data / "provenance.json").read_text())
    assert set(record["files"]) == {"ps3.15-e1-1.json", "ps3.15-safe-private.json",
                                    "iod-types.json.gz", "tcia-private.json"}  # fmt: skip
    for name, expected in record["files"].items():
        raw = (data / name).read_bytes()
        content = gzip.decompress(raw) if name.endswith(".gz") else raw
        assert hashlib.sha256(content).hexdigest() == expected, f"{name} was changed by hand"
        table = json.loads(content)
        assert record["sources"][table["source_file"]] == table["source_sha256"]


def test_provenance_sources_match_the_reference() -> None:
    reference = _reference()
    record = json.loads(
        (REPO / "src" / "dicomveil" / "standard" / "data" / "provenance.json").read_text()
    )
    for name, expected in record["sources"].items():
        assert hashlib.sha256((reference / name).read_bytes()).hexdigest() == expected, name
