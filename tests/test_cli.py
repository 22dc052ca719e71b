"""The ``dicomveil`` command line: profiles, run (maps, options, crosswalk, layout, DICOMDIR),
explain, keys, and what it prints.

Most tests call the Typer app in-process with :class:`typer.testing.CliRunner`; a few run the
installed console script in a real process.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from dicomveil.profiles import preset_names
from dicomveil.standard.options import Option
from tests.support.commands import cli, keygen
from tests.support.synthetic import PhiRecord, phi_of

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "sample"
PRESETS = (
    "ps3.15-basic",
    "original",
    "nidb-anonymize",
    "nidb-anonymize-full",
    "qmenta",
    "lab-dicombrowser",
)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keygen(tmp_path)


def sample_inputs() -> dict[Path, Dataset]:
    """The sample's DICOM files, read with pydicom."""
    found: dict[Path, Dataset] = {}
    for path in sorted(SAMPLE.rglob("*")):
        if path.is_file() and path.suffix != ".txt":
            found[path] = dcmread(path)
    return found


def written(root: Path) -> dict[Path, Dataset]:
    """Every file of an output folder (all must be DICOM), read with pydicom."""
    assert not list(root.rglob("*.dvtmp"))
    return {p: dcmread(p) for p in sorted(root.rglob("*")) if p.is_file()}


def counts(text: str) -> dict[str, int]:
    """The summary's count of each outcome (the last number printed after each word)."""
    found: dict[str, int] = {}
    for outcome in ("written", "withheld", "skipped", "failed"):
        numbers = re.findall(rf"\b{outcome}\W+(\d+)\b", text)
        assert numbers, f"no count of {outcome} in the summary:\n{text}"
        found[outcome] = int(numbers[-1])
    return found


def reports(text: str, display: str) -> list[tuple[str, str]]:
    """(outcome, reason) of each line of ``text`` reporting the input ``display``."""
    found = []
    for line in text.splitlines():
        for outcome in ("withheld", "skipped", "failed"):
            prefix = f"{outcome} {display}: "
            if line.startswith(prefix):
                found.append((outcome, line[len(prefix) :].strip()))
    return found


def phi_values(phi: PhiRecord) -> set[str]:
    return {n for n in phi.names if len(n) >= 4} | set(phi.ids) | set(phi.uids)


def assert_no_phi(text: str, values: Iterable[str]) -> None:
    lowered = text.lower()
    for value in sorted(values):
        assert value.lower() not in lowered, f"PHI {value!r} in {text[:200]!r}..."


def uid_pattern(uid: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![0-9.])" + re.escape(uid.encode()) + rb"(?![0-9.])")


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a Rich table, as stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]


def _script() -> str:
    beside = Path(sys.executable).with_name("dicomveil")
    if beside.exists():
        return str(beside)
    found = shutil.which("dicomveil")
    assert found is not None, "the dicomveil console script is not installed"
    return found


# --------------------------------------------------------------------------------------------
# profiles


def test_profiles_lists_every_preset_and_option() -> None:
    result = cli("profiles")
    assert result.exit_code == 0
    assert set(PRESETS) <= set(preset_names())
    names = {row[0] for row in table_rows(result.stdout)}
    for name in preset_names():
        assert name in names, name
    for option in Option:
        assert option.value in names, option.value


# --------------------------------------------------------------------------------------------
# run on the shipped sample


def test_run_on_the_sample(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", "--key", key, "--workers", "1", SAMPLE, out)
    assert result.exit_code == 0, result.output
    files = written(out)
    assert len(files) == 8
    assert counts(result.stderr) == {"written": 8, "withheld": 1, "skipped": 1, "failed": 0}
    withheld = reports(result.stderr, str(SAMPLE / "us" / "IM0001"))
    assert [o for o, _ in withheld] == ["withheld"]
    assert "BurnedInAnnotation" in withheld[0][1]
    assert [o for o, _ in reports(result.stderr, str(SAMPLE / "notes.txt"))] == ["skipped"]
    inputs = sample_inputs()
    values = phi_values(phi_of(inputs.values()))
    for path in files:
        assert_no_phi(str(path.relative_to(out)), values)
    assert_no_phi(result.stdout + result.stderr.replace(str(SAMPLE), ""), values)


def test_run_json_report(tmp_path: Path, key: Path) -> None:
    """--json: the counts, the reasons, and every input's outcome with its specific reason."""
    out, report = tmp_path / "out", tmp_path / "run.json"
    result = cli("run", "--key", key, "--workers", "1", "--json", report, SAMPLE, out)
    assert result.exit_code == 0, result.output
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["summary"] == {"written": 8, "withheld": 1, "skipped": 1, "failed": 0}
    assert document["profile"] == "ps3.15-basic"
    by_input = {f["input"]: f for f in document["files"]}
    us = by_input[str(SAMPLE / "us" / "IM0001")]
    assert us["outcome"] == "withheld" and us["output"] is None
    assert us["reason"].startswith("BurnedInAnnotation (0028,0301) is YES")
    assert document["reasons"]["withheld"] == {us["reason"]: 1}
    outputs = [f["output"] for f in document["files"] if f["outcome"] == "written"]
    assert sorted(outputs) == sorted(p.relative_to(out).as_posix() for p in written(out))
    values = phi_values(phi_of(sample_inputs().values()))
    assert_no_phi(report.read_text(encoding="utf-8").replace(str(SAMPLE), ""), values)


def test_map_dir(tmp_path: Path, key: Path) -> None:
    out, maps = tmp_path / "out", tmp_path / "maps"
    result = cli("run", "--key", key, "--workers", "1", "--map-dir", maps, SAMPLE, out)
    assert result.exit_code == 0, result.output
    patients = read_csv(maps / "patients.csv")
    uids = read_csv(maps / "uids.csv")
    assert patients[0] == ["id_old", "id_new"]
    assert uids[0] == ["id_old", "id_new"]
    assert (maps / "date_offsets.csv").is_file()
    originals = {str(ds.PatientID) for ds in sample_inputs().values()}
    outputs = {str(ds.PatientID) for ds in written(out).values()}
    assert {row[0] for row in patients[1:]} == originals
    assert {row[1] for row in patients[1:]} == outputs
    assert not list(out.rglob("*.csv"))


def test_map_dir_with_modified_dates(tmp_path: Path, key: Path) -> None:
    out, maps = tmp_path / "out", tmp_path / "maps"
    result = cli(
        "run",
        "--key",
        key,
        "--workers",
        "1",
        "--map-dir",
        maps,
        "--option",
        "retain-long-modified-dates",
        SAMPLE,
        out,
    )
    assert result.exit_code == 0, result.output
    offsets = read_csv(maps / "date_offsets.csv")
    assert len(offsets) == 3  # header and the sample's two patients
    for row in offsets[1:]:
        assert int(row[-1]) != 0, row
    uids = read_csv(maps / "uids.csv")
    assert uids[0] == ["id_old", "id_new"]
    assert len(uids) > 1
    blob = b"\n".join(p.read_bytes() for p in written(out))
    for old, new in uids[1:]:
        assert uid_pattern(new).search(blob), f"mapped UID {new} is in no output file"
        assert not uid_pattern(old).search(blob), f"original UID {old} is in the output"


def test_retain_uids_dcm4chee_alias(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", "--key", key, "--workers", "1", "-o", "RetainUIDsOption", SAMPLE, out)
    assert result.exit_code == 0, result.output
    expected = {
        str(ds.SOPInstanceUID)
        for ds in sample_inputs().values()
        if str(ds.get("BurnedInAnnotation", "")).upper() != "YES"
    }
    assert {str(ds.SOPInstanceUID) for ds in written(out).values()} == expected


def test_crosswalk(tmp_path: Path, key: Path) -> None:
    inputs = sample_inputs()
    ids = sorted({str(ds.PatientID) for ds in inputs.values()})
    assert len(ids) == 2
    mapped, missing = ids
    walk = tmp_path / "crosswalk.csv"
    walk.write_text(f"original_id,study_id\n{mapped},SUBJ-0042\n", encoding="utf-8")
    out = tmp_path / "out"

    result = cli("run", "--key", key, "--workers", "1", "--crosswalk", walk, SAMPLE, out)

    assert result.exit_code == 1
    files = written(out)
    expected_written = [
        p
        for p, ds in inputs.items()
        if str(ds.PatientID) == mapped and str(ds.get("BurnedInAnnotation", "")) != "YES"
    ]
    assert len(files) == len(expected_written) > 0
    for ds in files.values():
        assert str(ds.PatientID) == "SUBJ-0042"
        assert str(ds.PatientName) == "SUBJ-0042"
    expected_failed = [
        p
        for p, ds in inputs.items()
        if str(ds.PatientID) == missing and str(ds.get("BurnedInAnnotation", "")) != "YES"
    ]
    assert expected_failed
    for path in expected_failed:
        found = reports(result.stderr, str(path))
        assert [o for o, _ in found] == ["failed"], result.stderr
        assert missing not in found[0][1]
    assert missing not in result.stdout + result.stderr


def test_layout(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "out"
    layout = "{patient}/{modality}_{series_number}/{sop}.dcm"
    result = cli("run", "--key", key, "--workers", "1", "--layout", layout, SAMPLE, out)
    assert result.exit_code == 0, result.output
    files = written(out)
    assert len(files) == 8
    for path, ds in files.items():
        parts = path.relative_to(out).parts
        assert parts == (
            str(ds.PatientID),
            f"{ds.Modality}_{ds.SeriesNumber}",
            f"{ds.SOPInstanceUID}.dcm",
        )


@pytest.mark.parametrize(
    ("layout", "word"),
    [
        ("{patient}/{patient_name}/{sop}.dcm", "patient_name"),
        ("../{patient}/{sop}.dcm", "layout"),
        ("{patient}/../../{sop}.dcm", "layout"),
    ],
    ids=["unknown-field", "leading-dotdot", "inner-dotdot"],
)
def test_bad_layout(tmp_path: Path, key: Path, layout: str, word: str) -> None:
    out = tmp_path / "nested" / "out"
    result = cli("run", "--key", key, "--layout", layout, SAMPLE, out)
    assert result.exit_code == 2
    assert word in result.stderr
    assert not (tmp_path / "nested").exists()
    assert not list(tmp_path.rglob("*.dcm"))


@contextlib.contextmanager
def fileset_staging_collected() -> Iterator[None]:
    """pydicom's FileSet keeps a staging TemporaryDirectory that only its finalizer removes
    (with a ResourceWarning, an error under this project's pytest configuration, raised in
    whichever test the garbage collector happens to run in): ignore that warning here and
    collect them before leaving."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Implicitly cleaning up", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


def _fileset_uids(dicomdir: Path) -> list[str]:
    fileset = FileSet(dcmread(dicomdir))
    return [str(instance.load().SOPInstanceUID) for instance in fileset]


def test_dicomdir(tmp_path: Path, key: Path) -> None:
    with fileset_staging_collected():
        _check_dicomdir(tmp_path, key)


def _check_dicomdir(tmp_path: Path, key: Path) -> None:
    first = tmp_path / "first"
    result = cli("run", "--key", key, "--workers", "1", "--dicomdir", SAMPLE, first)
    assert result.exit_code == 0, result.output
    files = written(first)
    instances = {p: ds for p, ds in files.items() if p.name != "DICOMDIR"}
    assert len(instances) == 8
    uids = _fileset_uids(first / "DICOMDIR")
    assert sorted(uids) == sorted(str(ds.SOPInstanceUID) for ds in instances.values())

    # An input DICOMDIR is never copied: the second run writes a fresh one.
    source = tmp_path / "with-dicomdir"
    shutil.copytree(first, source)
    old = (source / "DICOMDIR").read_bytes()
    second = tmp_path / "second"
    result = cli("run", "--key", key, "--workers", "1", "--dicomdir", source, second)
    assert result.exit_code == 0, result.output
    skipped = reports(result.stderr, str(source / "DICOMDIR"))
    assert [o for o, _ in skipped] == ["skipped"]
    assert "DICOMDIR" in skipped[0][1]
    files = written(second)
    assert [p for p in files if p.name == "DICOMDIR"] == [second / "DICOMDIR"]
    assert all(p.read_bytes() != old for p in files)
    instances = {p: ds for p, ds in files.items() if p.name != "DICOMDIR"}
    assert len(instances) == 8
    uids = _fileset_uids(second / "DICOMDIR")
    assert sorted(uids) == sorted(str(ds.SOPInstanceUID) for ds in instances.values())


def test_dicomdir_leaves_no_temporary_directory_behind(tmp_path: Path, key: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        result = cli("run", "--key", key, "--workers", "1", "--dicomdir", SAMPLE, tmp_path / "o")
        gc.collect()
    assert result.exit_code == 0, result.output
    leaks = [str(w.message) for w in caught if "TemporaryDirectory" in str(w.message)]
    assert not leaks


# --------------------------------------------------------------------------------------------
# explain


EXPLAINED = {
    "PatientName": "(0010,0010)",
    "PatientID": "(0010,0020)",
    "PatientBirthDate": "(0010,0030)",
    "StudyInstanceUID": "(0020,000D)",
}


def test_explain_shows_actions_without_values(key: Path) -> None:
    path = SAMPLE / "ct1" / "IM0001"
    ds = dcmread(path)
    result = cli("explain", "--key", key, path)
    assert result.exit_code == 0, result.output
    rows = {row[0]: row for row in table_rows(result.stdout)}
    for keyword, tag in EXPLAINED.items():
        assert rows[keyword][1] == tag
        assert rows[keyword][3], f"no action for {keyword}"
    phi = phi_of([ds])
    assert_no_phi(result.stdout + result.stderr, phi_values(phi) | set(phi.dates))


def test_explain_show_values(key: Path) -> None:
    path = SAMPLE / "ct1" / "IM0001"
    ds = dcmread(path)
    result = cli("explain", "--key", key, "--show-values", path)
    assert result.exit_code == 0, result.output
    rows = {row[0]: row for row in table_rows(result.stdout)}
    assert rows["PatientName"][1] == "(0010,0010)"
    assert str(ds.PatientName) in rows["PatientName"]
    assert str(ds.PatientID) in rows["PatientID"]


# --------------------------------------------------------------------------------------------
# What a run prints when stderr is not a terminal (a real process)


def test_stderr_is_plain_lines_when_not_a_terminal(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "a-rather-long-folder-name-so-that-lines-exceed-eighty-columns"
    shutil.copytree(SAMPLE, source)
    broken = source / "ct1" / "IM0009"
    broken.write_bytes((source / "ct1" / "IM0001").read_bytes()[:1000])
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    command = [_script(), "run", "--key", str(key), str(source), str(tmp_path / "out")]

    done = subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 1
    stderr = done.stderr.decode()
    assert "\x1b[" not in stderr and "\r" not in stderr, "terminal control sequences"
    assert "de-identifying" not in stderr, "a progress bar"
    expected = {
        source / "us" / "IM0001": "withheld",
        source / "notes.txt": "skipped",
        broken: "failed",
    }
    for path, outcome in expected.items():
        found = reports(stderr, str(path))
        assert [o for o, _ in found] == [outcome], stderr
        assert found[0][1], f"no reason for {path}"
    mentioning = [line for line in stderr.splitlines() if str(source) in line]
    assert len(mentioning) == len(expected), stderr
    assert len(written(tmp_path / "out")) == 8
    assert_no_phi(stderr.replace(str(source), ""), phi_values(phi_of(sample_inputs().values())))


# --------------------------------------------------------------------------------------------
# The default key


def test_default_key_is_created_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = tmp_path / "config" / "dicomveil" / "key"
    monkeypatch.setenv("DICOMVEIL_KEY", str(default))
    first_out, second_out = tmp_path / "first", tmp_path / "second"

    first = cli("run", "--workers", "1", SAMPLE, first_out)

    assert first.exit_code == 0, first.output
    assert default.is_file()
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert str(default) in first.stderr
    content = default.read_bytes()

    second = cli("run", "--workers", "1", SAMPLE, second_out)

    assert second.exit_code == 0, second.output
    assert str(default) not in second.stderr
    assert "created" not in second.stderr
    assert default.read_bytes() == content
    one = {p.relative_to(first_out): p.read_bytes() for p in written(first_out)}
    two = {p.relative_to(second_out): p.read_bytes() for p in written(second_out)}
    assert len(one) == 8
    assert one == two


def test_python_m_dicomveil_is_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dicomveil", "profiles"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ps3.15-basic" in result.stdout


_THREADS_AFTER_LOAD = """
import os
from dicomveil._command import load
load()
import numpy
numpy.ones((64, 64)) @ numpy.ones((64, 64))  # a BLAS call: its threads exist by now
print(os.environ["OPENBLAS_NUM_THREADS"], len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_the_program_starts_numpy_with_one_blas_thread_unless_told_otherwise() -> None:
    """The program sets OPENBLAS_NUM_THREADS=1 before NumPy loads (OpenBLAS's threads
    would spin on the other cores at every start): the process has one thread after it
    loaded the command line and made a BLAS call; a value in the environment is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_AFTER_LOAD],
        capture_output=True, text=True, check=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.stdout.split() == ["1", "1"]
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_AFTER_LOAD],
        capture_output=True, text=True, check=True, timeout=120,
        env={**env, "OPENBLAS_NUM_THREADS": "2"},
    )  # fmt: skip
    assert done.stdout.split()[0] == "2"


_DEFERRED_AFTER_LOAD = """
import sys
from dicomveil._command import load
load()
names = ("requests", "urllib.request", "PIL.ImageCms")
print([type(sys.modules[n]).__name__ for n in names], "http.client" in sys.modules)
import urllib.request
from PIL import ImageCms
import requests
used = (urllib.request.Request("http://127.0.0.1/").full_url, ImageCms.createProfile("sRGB"),
        requests.Session)
import urllib
print([type(sys.modules[n]).__name__ for n in names], type(urllib.request).__name__)
"""


def test_the_program_loads_pydicoms_downloader_and_icc_modules_only_when_used() -> None:
    """requests, urllib.request (http.client, email, ssl) and PIL.ImageCms stand deferred
    after the program loaded the command line; the first use of each loads the real module,
    which then replaces the stand-in (also as its package's attribute)."""
    done = subprocess.run(
        [sys.executable, "-c", _DEFERRED_AFTER_LOAD],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    before, after = done.stdout.strip().splitlines()
    assert before == "['_Deferred', '_Deferred', '_Deferred'] False"
    assert after == "['module', 'module', 'module'] module"


def test_main_takes_its_arguments() -> None:
    from dicomveil.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["profiles", "--no-such-flag"])
    assert exit_info.value.code == 2
