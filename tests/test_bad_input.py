"""Bad input, bad configuration and bad luck: ``dicomveil run`` reports, keeps going, leaks
nothing and never leaves half-written output.

Inputs are synthetic DICOM files (:mod:`tests.support.synthetic`) and corrupted copies of them.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import random
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

import dicomveil.io.write as dv_io
from dicomveil.errors import InputError
from dicomveil.identity.keys import read_key
from dicomveil.io.read import _LONG_VRS, SourceFile
from dicomveil.profiles import Profile
from dicomveil.runs.batch import Outcome, RunConfig, discover, run
from dicomveil.runs.maps import PENDING_MAPS, MapError
from tests.support.commands import cli, keygen
from tests.support.synthetic import PhiRecord, ct_series, fake_patient, phi_of, write_series


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keygen(tmp_path)


# --------------------------------------------------------------------------------------------
# Building inputs


@dataclass(frozen=True)
class Element:
    offset: int  # of the tag
    tag: int
    vr: bytes
    header: int  # bytes before the value
    length: int

    @property
    def value_start(self) -> int:
        return self.offset + self.header


def elements(data: bytes) -> list[Element]:
    """The top-level elements of an explicit VR little endian file, up to Pixel Data."""
    assert data[128:132] == b"DICM"
    found: list[Element] = []
    position = 132
    while position + 8 <= len(data):
        group, elem = struct.unpack("<HH", data[position : position + 4])
        vr = data[position + 4 : position + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack("<I", data[position + 8 : position + 12])
            header = 12
        else:
            (length,) = struct.unpack("<H", data[position + 6 : position + 8])
            header = 8
        item = Element(position, (group << 16) | elem, vr, header, length)
        found.append(item)
        if item.tag == 0x7FE00010 or length == 0xFFFFFFFF:
            break
        position += header + length
    return found


def element(data: bytes, tag: int) -> Element:
    matches = [e for e in elements(data) if e.tag == tag]
    assert matches, f"({tag >> 16:04X},{tag & 0xFFFF:04X}) not found"
    return matches[0]


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def truncated_in_header(data: bytes) -> bytes:
    patient_id = element(data, 0x00100020)
    return data[: patient_id.value_start + patient_id.length // 2]


def truncated_in_pixels(data: bytes) -> bytes:
    pixels = element(data, 0x7FE00010)
    return data[: pixels.value_start + pixels.length // 2]


def wrong_preamble(data: bytes) -> bytes:
    return data[:128] + b"DICN" + data[132:]


def bad_length(data: bytes) -> bytes:
    """A defined-length element of a 4-byte-length VR (before Pixel Data) gets 0x7FFFFFF0."""
    candidates = [
        e
        for e in elements(data)
        if e.vr in _LONG_VRS
        and e.tag >> 16 != 0x0002
        and e.tag != 0x7FE00010
        and e.length != 0xFFFFFFFF
    ]
    target = candidates[0]
    return patched(data, target.offset + 8, struct.pack("<I", 0x7FFFFFF0))


def unknown_vr(data: bytes) -> bytes:
    name = element(data, 0x00100010)
    assert name.vr == b"PN"
    return patched(data, name.offset + 4, b"ZZ")


def zip_bytes(members: Iterable[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def member_data_offset(archive: bytes, member: str) -> int:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        info = z.getinfo(member)
    offset = info.header_offset
    name_length, extra_length = struct.unpack("<HH", archive[offset + 26 : offset + 30])
    return int(offset + 30 + name_length + extra_length)


def series(folder: Path, seed: int, n: int = 3, size: int = 16) -> tuple[list[Path], PhiRecord]:
    datasets = ct_series(
        fake_patient(seed),
        seed=seed,
        n_slices=n,
        rows=size,
        columns=size,
        transfer_syntax=ExplicitVRLittleEndian,
    )
    return write_series(datasets, folder), phi_of(datasets)


# --------------------------------------------------------------------------------------------
# Checking outputs


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def output_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_clean_output(root: Path) -> list[Dataset]:
    """No temporary file remains and every output file is complete DICOM."""
    assert not list(root.rglob("*.dvtmp")), "a temporary file was left behind"
    datasets: list[Dataset] = []
    for path in output_files(root):
        assert not path.name.endswith(".dvtmp")
        datasets.append(dcmread(path))
    return datasets


def reports(text: str, display: str) -> list[tuple[str, str]]:
    """(outcome, reason) of each line reporting ``display``."""
    found = []
    for line in text.splitlines():
        for outcome in Outcome:
            prefix = f"{outcome.value} {display}: "
            if line.startswith(prefix):
                found.append((outcome.value, line[len(prefix) :].strip()))
    return found


def assert_no_phi(text: str, phi: PhiRecord, *, strip: Iterable[str] = ()) -> None:
    """No name (4 characters or more) nor ID of the inputs in ``text``, in any case."""
    for harmless in strip:
        text = text.replace(harmless, "")
    lowered = text.lower()
    values = {n for n in phi.names if len(n) >= 4} | set(phi.ids)
    for value in sorted(values):
        assert value.lower() not in lowered, f"PHI in the messages: {value!r}"


# --------------------------------------------------------------------------------------------
# One bad input next to good files


Builder = Callable[[Path, bytes, list[tuple[str, bytes]]], tuple[str, int]]


@dataclass(frozen=True)
class Case:
    """Writes one bad input into the folder; returns its display name's suffix and outcomes."""

    build: Builder
    outcomes: frozenset[Outcome]


def _file(name: str, make: Callable[[bytes], bytes]) -> Builder:
    def build(folder: Path, good: bytes, _others: list[tuple[str, bytes]]) -> tuple[str, int]:
        (folder / name).write_bytes(make(good))
        return name, 0

    return build


def _zip_with_bad_member(
    folder: Path, good: bytes, others: list[tuple[str, bytes]]
) -> tuple[str, int]:
    members = [*others, ("scans/broken", truncated_in_header(good))]
    (folder / "scans.zip").write_bytes(zip_bytes(members))
    return "scans.zip!scans/broken", len(others)


def _corrupt_zip(folder: Path, good: bytes, others: list[tuple[str, bytes]]) -> tuple[str, int]:
    data = zip_bytes(others)
    (folder / "damaged.zip").write_bytes(data[: len(data) // 2])
    return "damaged.zip", 0


def _zip_bad_crc(folder: Path, good: bytes, others: list[tuple[str, bytes]]) -> tuple[str, int]:
    data = bytearray(zip_bytes(others, zipfile.ZIP_STORED))
    start = member_data_offset(bytes(data), others[0][0])
    pixels = element(others[0][1], 0x7FE00010)
    at = start + pixels.value_start + 16
    data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    (folder / "flipped.zip").write_bytes(bytes(data))
    return f"flipped.zip!{others[0][0]}", len(others) - 1


FAILED = frozenset({Outcome.FAILED})
SKIPPED = frozenset({Outcome.SKIPPED})

CASES = {
    "truncated-in-header": Case(_file("X0001", truncated_in_header), FAILED),
    "truncated-in-pixel-data": Case(_file("X0001", truncated_in_pixels), FAILED),
    # A file meta group behind a wrong prefix: damaged DICOM, not silently skipped.
    "wrong-preamble": Case(_file("X0001", wrong_preamble), FAILED),
    "bad-element-length": Case(_file("X0001", bad_length), FAILED),
    "unknown-vr": Case(_file("X0001", unknown_vr), FAILED),
    "empty-file": Case(_file("X0001", lambda _: b""), SKIPPED),
    "random-bytes": Case(_file("X0001", lambda _: random.Random(7).randbytes(4096)), SKIPPED),
    "text-file": Case(_file("notes.txt", lambda _: b"scanned on the new scanner\n" * 20), SKIPPED),
    "zip-with-a-bad-member": Case(_zip_with_bad_member, FAILED),
    "zip-cut-in-half": Case(_corrupt_zip, FAILED),
    "zip-member-bad-crc": Case(_zip_bad_crc, FAILED),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_reported_and_the_rest_written(tmp_path: Path, key: Path, name: str) -> None:
    case = CASES[name]
    source = tmp_path / "input"
    good_paths, phi = series(source, seed=11, n=3)
    zipped_paths, zipped_phi = series(tmp_path / "for-zip", seed=12, n=2)
    others = [(f"scans/{p.name}", p.read_bytes()) for p in zipped_paths]
    shutil.rmtree(tmp_path / "for-zip")
    suffix, good_in_bad = case.build(source, good_paths[0].read_bytes(), others)
    display = f"{source}/{suffix}"
    non_dicom = {
        digest(p) for p in source.iterdir() if p.is_file() and p.read_bytes()[128:132] != b"DICM"
    }
    before = hashes(source)
    out = tmp_path / "output"

    result = cli("run", "--key", key, "--workers", "1", source, out)

    text = result.stdout + result.stderr
    found = reports(result.stderr, display)
    assert len(found) == 1, f"{display} not reported once:\n{result.stderr}"
    outcome, reason = found[0]
    assert Outcome(outcome) in case.outcomes, (outcome, reason)
    assert reason
    assert result.exit_code == (1 if outcome == Outcome.FAILED else 0), text
    written = assert_clean_output(out)
    assert len(written) == len(good_paths) + good_in_bad
    assert len({str(ds.SOPInstanceUID) for ds in written}) == len(written)
    assert hashes(source) == before, "an input was modified"
    assert not non_dicom & {digest(p) for p in output_files(out)}, "a non-DICOM file was copied"
    merged = PhiRecord(names=phi.names | zipped_phi.names, ids=phi.ids | zipped_phi.ids)
    assert_no_phi(text, merged, strip=[str(tmp_path)])


def test_all_bad_inputs_together_with_worker_processes(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "input"
    good_paths, phi = series(source / "good", seed=21, n=4)
    good = good_paths[0].read_bytes()
    bad = source / "bad"
    bad.mkdir()
    makers: dict[str, Callable[[bytes], bytes]] = {
        "cut-header": truncated_in_header,
        "cut-pixels": truncated_in_pixels,
        "bad-length": bad_length,
        "unknown-vr": unknown_vr,
    }
    for name, make in makers.items():
        (bad / name).write_bytes(make(good))
    (bad / "empty").write_bytes(b"")
    (bad / "readme.txt").write_text("nothing to see\n", encoding="utf-8")
    before = hashes(source)
    out = tmp_path / "output"

    result = cli("run", "--key", key, "--workers", "2", source, out)

    assert result.exit_code == 1
    for name in makers:
        assert [o for o, _ in reports(result.stderr, f"{bad}/{name}")] == ["failed"], name
    for name in ("empty", "readme.txt"):
        assert [o for o, _ in reports(result.stderr, f"{bad}/{name}")] == ["skipped"], name
    assert len(assert_clean_output(out)) == len(good_paths)
    assert hashes(source) == before
    assert_no_phi(result.stdout + result.stderr, phi, strip=[str(tmp_path)])


def test_zip_member_with_corrupt_deflate_data_fails_alone(tmp_path: Path, key: Path) -> None:
    """zlib.error (not a BadZipFile) fails that member only; the run goes on."""
    source = tmp_path / "input"
    paths, _ = series(tmp_path / "src", seed=31, n=3)
    data = bytearray(zip_bytes([(f"scans/{p.name}", p.read_bytes()) for p in paths]))
    start = member_data_offset(bytes(data), "scans/IM0002")
    data[start] = 0x07  # a final deflate block of the reserved type 11: "invalid block type"
    source.mkdir()
    (source / "scans.zip").write_bytes(bytes(data))
    out = tmp_path / "output"

    result = cli("run", "--key", key, "--workers", "1", source, out)

    found = reports(result.stderr, f"{source}/scans.zip!scans/IM0002")
    assert [o for o, _ in found] == ["failed"], result.stderr
    assert result.exit_code == 1
    assert len(assert_clean_output(out)) == 2


def test_file_names_with_brackets_are_reported_verbatim(tmp_path: Path, key: Path) -> None:
    """Names are never read as Rich markup: '[red]' is kept, '[/x]' does not crash the run."""
    source = tmp_path / "input"
    paths, _ = series(source, seed=32, n=2)
    good = paths[0].read_bytes()
    (source / "scan[red]1").write_bytes(truncated_in_header(good))
    (source / "batch.zip").write_bytes(zip_bytes([("x[/x]", truncated_in_header(good))]))
    out = tmp_path / "output"

    result = cli("run", "--key", key, "--workers", "1", source, out)

    assert result.exit_code == 1
    assert len(reports(result.stderr, f"{source}/scan[red]1")) == 1, result.stderr
    assert len(reports(result.stderr, f"{source}/batch.zip!x[/x]")) == 1, result.stderr
    assert len(assert_clean_output(out)) == 2


def test_names_that_are_not_utf8_or_hold_control_characters(tmp_path: Path, key: Path) -> None:
    """A Latin-1 file name (legacy archives: "Müller") and one holding a newline and a
    terminal escape: the run writes both, its JSON report, audit trail and maps name them
    with \\xNN escapes (a black-box test: UnicodeEncodeError ended the whole run)."""
    source = tmp_path / "input"
    paths, _ = series(source, seed=33, n=2)
    paths[0].rename(source / os.fsdecode(b"M\xfcller.dcm"))
    paths[1].rename(source / "bad\nsummary: written 9999\x1b[31m.dcm")
    out, maps = tmp_path / "output", tmp_path / "maps"

    result = cli(
        "run", "--key", key, "--workers", "1", "--json", tmp_path / "r.json", "--audit",
        tmp_path / "a.sqlite", "--redact-paths", "--map-dir", maps, "-v", source, out,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert len(assert_clean_output(out)) == 2
    report = (tmp_path / "r.json").read_text(encoding="utf-8")
    assert report.count('"outcome": "written"') == 2
    inputs = (maps / "paths.csv").read_text(encoding="utf-8")
    assert "M\\xfcller.dcm" in inputs and "bad\\x0asummary: written 9999\\x1b[31m.dcm" in inputs
    assert "\x1b" not in result.stderr and "written 9999\n" not in result.stderr


# --------------------------------------------------------------------------------------------
# Profiles that cannot be used


def test_unknown_profile_name(tmp_path: Path, key: Path) -> None:
    series(tmp_path / "input", seed=41, n=1)
    result = cli("run", "--key", key, "-p", "no-such-profile", tmp_path / "input", tmp_path / "o")
    assert result.exit_code == 2
    assert "no-such-profile" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("body", "entry", "word"),
    [
        ('[[rules]]\nkeyword = "PatientNameX"\naction = "K"\n', "rules[0]", "PatientNameX"),
        ('[[rules]]\ntag = "0010,9999"\naction = "K"\n', "rules[0]", "0010,9999"),
        (
            '[[rules]]\nkeyword = "PatientName"\naction = "K"\n'
            '[[rules]]\nkeyword = "PatientID"\naction = "obliterate"\n',
            "rules[1]",
            "obliterate",
        ),
        ('options = ["retain-uids", "retain-everything"]\n', "options[1]", "retain-everything"),
        ('allow = ["faces"]\n', "allow[0]", "faces"),
    ],
    ids=["keyword", "tag", "action", "option", "risk"],
)
def test_profile_with_an_unknown_entry(
    tmp_path: Path, key: Path, body: str, entry: str, word: str
) -> None:
    series(tmp_path / "input", seed=42, n=1)
    profile = tmp_path / "study.toml"
    profile.write_text('description = "test"\n' + body, encoding="utf-8")
    result = cli("run", "--key", key, "-p", profile, tmp_path / "input", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert str(profile) in result.stderr
    assert entry in result.stderr
    assert word in result.stderr
    assert not (tmp_path / "o").exists()


def test_profile_with_invalid_toml(tmp_path: Path, key: Path) -> None:
    series(tmp_path / "input", seed=43, n=1)
    profile = tmp_path / "broken.toml"
    profile.write_text('[[rules]\nkeyword = "PatientName"\n', encoding="utf-8")
    result = cli("run", "--key", key, "-p", profile, tmp_path / "input", tmp_path / "o")
    assert result.exit_code == 2
    assert str(profile) in result.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# Key files


def test_keygen_writes_owner_only_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k" / "project.key"
    first = cli("keygen", path)
    assert first.exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    again = cli("keygen", path)
    assert again.exit_code == 2
    assert str(path) in again.stderr
    assert path.read_bytes() == content
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_readable_by_others_is_refused(tmp_path: Path, key: Path) -> None:
    series(tmp_path / "input", seed=44, n=1)
    key.chmod(0o644)
    result = cli("run", "--key", key, tmp_path / "input", tmp_path / "o")
    assert result.exit_code == 2
    assert "chmod" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "content",
    [
        "",
        "dicomveil-key-v1\n",
        "dicomveil-key-v2 " + "ab" * 32 + "\n",
        "dicomveil-key-v1 " + "zz" * 32 + "\n",
        "dicomveil-key-v1 " + "ab" * 16 + "\n",
        "dicomveil-key-v1 " + "ab" * 32 + " extra\n",
    ],
    ids=["empty", "no-secret", "wrong-magic", "not-hex", "too-short", "trailing"],
)
def test_malformed_key_is_refused(tmp_path: Path, content: str) -> None:
    series(tmp_path / "input", seed=45, n=1)
    path = tmp_path / "bad.key"
    path.write_text(content, encoding="ascii")
    path.chmod(0o600)
    result = cli("run", "--key", path, tmp_path / "input", tmp_path / "o")
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert not (tmp_path / "o").exists()


def test_the_secret_never_appears_anywhere(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "input"
    paths, _ = series(source, seed=46, n=3)
    (source / "X0001").write_bytes(truncated_in_header(paths[0].read_bytes()))
    secret = bytes.fromhex(key.read_text(encoding="ascii").split()[1])
    needles = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    out, maps = tmp_path / "output", tmp_path / "maps"

    results = [
        cli("run", "--key", key, "--workers", "1", "--map-dir", maps, source, out),
        cli("explain", "--key", key, "--show-values", paths[0]),
        cli("keygen", key),  # refused: it must not echo the existing key either
    ]

    for result in results:
        for needle in needles[1:]:
            assert needle.decode() not in result.stdout + result.stderr
    files = output_files(out) + output_files(maps)
    assert len(output_files(out)) == 3
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"the key is in {path}"


# --------------------------------------------------------------------------------------------
# A full disk


def test_disk_full_fails_one_file_and_leaves_no_temporary(
    tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "input"
    series(source, seed=51, n=4)
    out = tmp_path / "output"
    real_write = dv_io._write
    calls: list[int] = []
    temporaries_seen: list[Path] = []

    def failing_write(src: SourceFile, ds: Dataset, fh: BinaryIO) -> None:
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"\x00" * 4096)
            temporaries_seen.extend(out.rglob("*.dvtmp"))
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(src, ds, fh)

    monkeypatch.setattr(dv_io, "_write", failing_write)
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"), key=read_key(key), output=out, workers=1
    )

    summary = run([source], config)

    failed = [r for r in summary.results if r.outcome is Outcome.FAILED]
    assert len(failed) == 1
    assert "write" in failed[0].reason
    assert "No space left on device" in failed[0].reason
    assert summary.count(Outcome.WRITTEN) == 3
    assert temporaries_seen, "the write did not go through a temporary file"
    assert len(assert_clean_output(out)) == 3
    assert {p.resolve() for p in output_files(out)} == {
        r.output.resolve() for r in summary.written if r.output is not None
    }


# --------------------------------------------------------------------------------------------
# Output locations


def test_output_inside_the_input_is_refused(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "input"
    series(source, seed=61, n=1)
    before = hashes(source)
    result = cli("run", "--key", key, source, source / "deid")
    assert result.exit_code == 2
    assert "inside" in result.stderr
    assert not (source / "deid").exists()
    assert hashes(source) == before


def test_map_dir_inside_the_output_is_refused(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "input"
    series(source, seed=62, n=1)
    out = tmp_path / "output"
    result = cli("run", "--key", key, "--map-dir", out / "maps", source, out)
    assert result.exit_code == 2
    assert "--map-dir" in result.stderr
    assert not output_files(out)


# --------------------------------------------------------------------------------------------
# An interrupted run (a real process, killed)


def _script() -> str:
    beside = Path(sys.executable).with_name("dicomveil")
    if beside.exists():
        return str(beside)
    found = shutil.which("dicomveil")
    assert found is not None, "the dicomveil console script is not installed"
    return found


def test_a_second_run_into_a_held_output_changes_nothing(tmp_path: Path, key: Path) -> None:
    """A run holds its output folder: a second run into it is refused before it removes the
    first one's temporaries in flight (a black-box test: it removed them, and the first run
    lost files), and a run after the first removes what an interrupted run left."""
    source = tmp_path / "input"
    series(source, seed=34, n=2)
    out = tmp_path / "output"
    out.mkdir()
    config = RunConfig(profile=Profile.named("ps3.15-basic"), key=read_key(key), output=out)
    claim = dv_io.claim_output(out)  # the first run, writing
    in_flight = out / f".IM1.abc{dv_io.TEMP_SUFFIX}"
    in_flight.write_bytes(b"half")
    try:
        with pytest.raises(InputError, match="another run is writing into the output folder"):
            run([source], config)
        assert in_flight.exists() and not any(out.rglob("*.dcm"))
    finally:
        claim.release()
    summary = run([source], config)
    assert len(summary.written) == 2 and not in_flight.exists()


def test_an_interrupted_run_resumed_has_every_map_row(tmp_path: Path, key: Path) -> None:
    """The maps of the inputs an interrupted run did are kept for the run that resumes it
    (which skips those inputs), and an input whose output was removed is done again (a
    black-box test: the maps lost every input done before a kill, and a resume into an
    emptied output wrote nothing)."""
    for seed in (35, 36):
        series(tmp_path / "input" / str(seed), seed=seed, n=3)
    profile, secret = Profile.named("ps3.15-basic"), read_key(key)
    base = RunConfig(profile=profile, key=secret, output=tmp_path / "whole", workers=1)
    whole = replace(base, map_dir=tmp_path / "whole-maps")
    run([tmp_path / "input"], whole)
    config = replace(
        base, output=tmp_path / "out", map_dir=tmp_path / "maps", state_dir=tmp_path / "state"
    )
    done: list[object] = []

    def interrupt(result: object) -> None:
        done.append(result)
        if len(done) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run([tmp_path / "input"], config, progress=interrupt)
    summary = run([tmp_path / "input"], replace(config, resume=True))

    assert summary.resumed == 4 and len(summary.written) == 2
    for name in ("patients.csv", "uids.csv", "instances.csv", "date_offsets.csv"):
        expected = (tmp_path / "whole-maps" / name).read_text()
        assert (tmp_path / "maps" / name).read_text() == expected, name
    assert not (tmp_path / "maps" / PENDING_MAPS).exists()
    removed = sorted((tmp_path / "out").rglob("*.dcm"))[0]
    removed.unlink()
    again = run([tmp_path / "input"], replace(config, resume=True))
    assert again.resumed == 5 and len(again.written) == 1 and removed.exists()


def test_maps_that_cannot_be_written_are_kept_for_the_next_run(
    tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the map folder at the run's end: an error that says so (no
    traceback), and the entries stay in the folder's pending store, written by the next run
    (a black-box test: a traceback, and a resume wrote empty maps)."""
    series(tmp_path / "input", seed=37, n=2)
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"), key=read_key(key), output=tmp_path / "out",
        workers=1, map_dir=tmp_path / "maps", state_dir=tmp_path / "state",
    )  # fmt: skip

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("dicomveil.runs.maps._write_csv", full)
        with pytest.raises(MapError, match=r"No space left on device.*run again"):
            run([tmp_path / "input"], config)
    assert (tmp_path / "maps" / PENDING_MAPS).exists()
    summary = run([tmp_path / "input"], replace(config, resume=True))
    assert summary.resumed == 2
    assert len((tmp_path / "maps" / "uids.csv").read_text().splitlines()) > 2


def test_a_file_reached_twice_is_done_and_counted_once(tmp_path: Path, key: Path) -> None:
    """Inputs that overlap (a folder, one of its subfolders, one of its files, the folder
    again): each file once (a black-box test: 250 written for 200 files)."""
    source = tmp_path / "input"
    series(source, seed=38, n=2)
    paths, _ = series(source / "sub", seed=39, n=2)
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"), key=read_key(key), output=tmp_path / "out"
    )
    summary = run([source, source / "sub", paths[0], source], config)
    assert len(summary.results) == len(summary.written) == 4


def test_an_input_changed_while_the_run_reads_it_is_done_again(tmp_path: Path, key: Path) -> None:
    """The journal records an input as it was found, before it was read: one changed after
    that is done again by a resume (a black-box test: the journal recorded the changed file
    as done, and the output kept the old patient's pseudonym)."""
    source = tmp_path / "input"
    paths, _ = series(source, seed=40, n=2)
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"), key=read_key(key), output=tmp_path / "out",
        workers=1, state_dir=tmp_path / "state",
    )  # fmt: skip
    tasks = list(discover([source]))
    changed = dcmread(paths[0])
    changed.PatientID = "CHANGED-ID"
    changed.save_as(paths[0])  # after it was found, before it was read

    run([source], config, tasks=tasks)
    again = run([source], replace(config, resume=True))

    assert again.resumed == 1 and [r.task.path for r in again.written] == [paths[0]]


def test_a_gzipped_dicom_file_fails_saying_so(tmp_path: Path, key: Path) -> None:
    """A .dcm.gz (nibabel ships its Siemens DWI so) is a failure that says to decompress it,
    not "not DICOM" with exit 0 and nothing written (found by a black-box test); a .nii.gz
    beside it is still skipped as not DICOM."""
    source = tmp_path / "input"
    paths, _ = series(source, seed=41, n=1)
    (source / "IM.dcm.gz").write_bytes(gzip.compress(paths[0].read_bytes()))
    paths[0].unlink()
    (source / "T1w.nii.gz").write_bytes(gzip.compress(b"\x5c\x01\x00\x00" + bytes(400)))

    result = cli("run", "--key", key, source, tmp_path / "out")

    assert result.exit_code == 1
    assert "decompress it first" in result.stderr and "T1w.nii.gz: not DICOM" in result.stderr


def test_interrupted_run_then_rerun_equals_a_clean_run(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "input"
    for seed in range(4):
        series(source / f"p{seed}", seed=70 + seed, n=10, size=128)
    before = hashes(source)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env["DICOMVEIL_KEY"] = str(tmp_path / "unused-default-key")

    def command(out: Path) -> list[str]:
        return [_script(), "run", "--key", str(key), "--workers", "2", str(source), str(out)]

    clean = tmp_path / "clean"
    done = subprocess.run(command(clean), env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert len(output_files(clean)) == 40

    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        command(out),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and any(out.rglob("*.dcm")):
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes
        proc.wait(timeout=30)
    # What a kill in the middle of a write leaves behind (the rename never happened).
    stale = out / "p0" / ".IM0001.abc123.dvtmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00")

    again = subprocess.run(command(out), env=env, capture_output=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr.decode()
    assert not list(out.rglob("*.dvtmp"))
    assert tree(out) == tree(clean)
    assert hashes(source) == before


def test_the_workers_of_a_killed_run_end_with_it(tmp_path: Path, key: Path) -> None:
    """``kill -9`` of the run alone (not its process group): its worker processes, waiting
    on a pipe they hold both ends of, slept on for good (found by an independent black-box
    test); they now end within seconds."""
    source = tmp_path / "input"
    for seed in range(8):
        series(source / f"p{seed}", seed=90 + seed, n=40, size=64)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [_script(), "run", "--key", str(key), "--workers", "2", str(source), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.rglob("*.dcm"))):
        time.sleep(0.002)
    children = [int(c) for c in _children(proc.pid)]
    proc.kill()
    proc.wait(timeout=30)
    assert children, "the run had no worker processes when it was killed"

    def alive() -> list[int]:
        return [c for c in children if Path(f"/proc/{c}").exists() and _state(c) != "Z"]

    deadline = time.monotonic() + 15
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive() == []


def _children(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


# --------------------------------------------------------------------------------------------
# Cut short where pydicom's reader says nothing (found by an independent black-box test)


def _cuts_inside_headers(data: bytes) -> list[int]:
    """Every length of ``data`` that ends inside an element header (1 to 11 bytes of it), for
    the first elements, a long-VR one and the last one before Pixel Data."""
    found = elements(data)
    early = [*found[:3], *(e for e in found if e.header == 12)][:5]
    chosen = [*early, found[-1]]
    return sorted({e.offset + k for e in chosen for k in range(1, e.header)})


def test_a_file_cut_inside_an_element_header_fails(tmp_path: Path, key: Path) -> None:
    """pydicom stops at an element header the end of the file cuts short and keeps what it
    read: such a file was written as an image without its pixel data (or without half its
    header). Every cut inside a header fails as truncated; nothing is written for it."""
    source = tmp_path / "in"
    write_series(ct_series(fake_patient(7), seed=7, n_slices=1, rows=16, columns=16), source)
    (good,) = source.rglob("IM*")
    data = good.read_bytes()
    cuts = _cuts_inside_headers(data)
    assert len(cuts) > 20
    cut_folder = tmp_path / "cut"
    cut_folder.mkdir()
    for cut in cuts:
        (cut_folder / f"X{cut:06d}").write_bytes(data[:cut])
    (cut_folder / "META").write_bytes(data[: elements(data)[0].offset])  # the file meta alone
    summary = run(
        [cut_folder], RunConfig(Profile.named("ps3.15-basic"), read_key(key), tmp_path / "out")
    )
    assert summary.count(Outcome.FAILED) == len(cuts) + 1
    assert all("truncated" in r.reason for r in summary.results), {
        r.reason for r in summary.results
    }
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_two_inputs_of_one_uid_in_other_folders_give_one_output(tmp_path: Path, key: Path) -> None:
    """One SOP Instance UID in two inputs whose outputs go to other paths (another patient
    ID, another series): the first reported keeps the output, the others fail, and their
    files are removed (before, all three were written)."""
    source = tmp_path / "in"
    write_series(ct_series(fake_patient(8), seed=8, n_slices=1, rows=16, columns=16), source)
    (first,) = source.rglob("IM*")
    for name, change in (("other-patient", "PatientID"), ("other-series", "SeriesInstanceUID")):
        ds = dcmread(first)
        setattr(ds, change, "1.2.826.0.1.3680043.10.1" if change.endswith("UID") else "OTHER9")
        ds.save_as(source / name)
    out = tmp_path / "out"
    summary = run([source], RunConfig(Profile.named("ps3.15-basic"), read_key(key), out, workers=2))
    assert summary.count(Outcome.WRITTEN) == 1
    assert summary.count(Outcome.FAILED) == 2
    failed = [r for r in summary.results if r.outcome is Outcome.FAILED]
    assert all("same SOP Instance UID" in r.reason for r in failed)
    (written,) = summary.written
    assert [p for p in out.rglob("*") if p.is_file()] == [written.output]
    layout = [p for p in out.rglob("*") if p.is_dir() and not p.name.startswith(".")]
    assert all(any(p.iterdir()) for p in layout)  # no empty layout folder left
