"""Hostile input (issue 13): each damaged file fails or is cleaned on its own, with a reason
that quotes none of its values; special files are skipped, never read; an unusable output
path is a clear error. Each case plants a fake name and checks that it appears nowhere.

The files are real (pydicom's CT_small.dcm), damaged byte by byte; the command runs as a
user runs it (the ``dicomveil`` program, in a subprocess with a timeout: a hang fails).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.support.planted import planted_ct

PLANTED = "ZQXWVPLANTED^QQQ"
DICOMVEIL = str(Path(sys.executable).with_name("dicomveil"))


def _seed(tmp_path: Path) -> bytes:
    """CT_small with the planted name as PatientName and in a per-frame comment."""
    ds = planted_ct(PLANTED)
    path = tmp_path / "seed.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _vr(raw: bytes, tag: bytes, old: bytes, new: bytes) -> bytes:
    """``raw`` with the VR bytes of the first element ``tag`` (little endian) replaced."""
    at = raw.index(tag + old)
    return raw[: at + 4] + new + raw[at + 6 :]


def _run(
    tmp_path: Path, inputs: Path, output: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    key = tmp_path / "k.key"
    if not key.exists():
        subprocess.run([DICOMVEIL, "keygen", str(key)], check=True, capture_output=True)
    return subprocess.run(
        [DICOMVEIL, "run", str(inputs), str(output), "--key", str(key), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _no_leak(result: subprocess.CompletedProcess[str], output: Path) -> None:
    assert "Traceback" not in result.stdout + result.stderr
    assert PLANTED.split("^")[0] not in result.stdout + result.stderr
    for path in output.rglob("*") if output.exists() else ():
        assert PLANTED.split("^")[0] not in str(path)
        if path.is_file():
            data = path.read_bytes()
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                assert PLANTED.split("^")[0].encode(encoding) not in data, path.name
            for elem in pydicom.dcmread(path).iterall():  # readable, every element
                assert elem.tag is not None


def test_damaged_files_fail_alone_and_quote_no_value(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.dcm").write_bytes(seed)
    (inputs / "meta_vr.dcm").write_bytes(_vr(seed, b"\x02\x00\x02\x00", b"UI", b"ZZ"))
    ts = seed.index(b"\x02\x00\x10\x00UI")  # TransferSyntaxUID: a length far too long
    (inputs / "ts_length.dcm").write_bytes(
        seed[: ts + 6] + struct.pack("<H", 0xFFF0) + seed[ts + 8 :]
    )
    output = tmp_path / "out"
    result = _run(tmp_path, inputs, output)
    assert result.returncode == 1, result.stderr
    assert "failed in/meta_vr.dcm: unknown VR in (0002,0002)" in result.stderr.replace(
        str(tmp_path) + "/", ""
    )
    assert "unknown transfer syntax in TransferSyntaxUID (0002,0010)" in result.stderr
    assert "written 1," in result.stderr
    _no_leak(result, output)


def test_a_sequence_with_damaged_vr_is_read_as_a_sequence(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for number, vr in enumerate((b"UR", b"UC", b"OF"), 1):
        damaged = _vr(seed, b"\x00\x52\x30\x92", b"SQ", vr)
        sop = damaged.index(b"\x08\x00\x18\x00UI")  # a SOP Instance UID of its own
        length = struct.unpack("<H", damaged[sop + 6 : sop + 8])[0]
        uid = f"1.2.3.{number}".encode().ljust(length, b"\x00")[:length]
        (inputs / f"{vr.decode()}.dcm").write_bytes(
            damaged[: sop + 8] + uid + damaged[sop + 8 + length :]
        )
    output = tmp_path / "out"
    result = _run(tmp_path, inputs, output)
    assert result.returncode == 0, result.stderr
    assert "written 3," in result.stderr
    _no_leak(result, output)
    for path in output.rglob("*.dcm"):
        frames = pydicom.dcmread(path).PerFrameFunctionalGroupsSequence
        assert "FrameComments" not in frames[0].FrameContentSequence[0]


def test_an_element_with_unknown_vr_is_never_copied(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "pj.dcm").write_bytes(_vr(seed, b"\x08\x00\x70\x00", b"LO", b"PJ"))
    output = tmp_path / "out"
    result = _run(tmp_path, inputs, output)
    assert result.returncode == 0, result.stderr
    _no_leak(result, output)
    (written,) = output.rglob("*.dcm")
    assert "Manufacturer" not in pydicom.dcmread(written)


def _swallow(raw: bytes, tag: bytes, vr: bytes, until: bytes) -> bytes:
    """``raw`` with the 16-bit length of element ``tag`` grown to swallow every element up
    to ``until`` (a damaged length field: the value now holds the elements between)."""
    at = raw.index(tag + vr)
    end = raw.index(until, at)
    return raw[: at + 6] + struct.pack("<H", end - (at + 8)) + raw[at + 8 :]


def test_a_value_that_swallowed_the_next_elements_fails_the_file(tmp_path: Path) -> None:
    """A damaged length makes a number (Bits Allocated) or a code (Modality) hold the bytes
    of the elements after it, a frame comment with a name among them: the file fails, its
    bytes are never written as values (the bit-flip case 1-06057 of the fuzz campaign)."""
    seed = _seed(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    pixels = b"\xe0\x7f\x10\x00"
    (inputs / "us.dcm").write_bytes(_swallow(seed, b"\x28\x00\x00\x01", b"US", pixels))
    (inputs / "cs.dcm").write_bytes(
        _swallow(seed, b"\x08\x00\x60\x00", b"CS", b"\x10\x00\x20\x00LO")
    )
    output = tmp_path / "out"
    result = _run(tmp_path, inputs, output)
    assert result.returncode == 1, result.stderr
    stderr = result.stderr.replace(str(inputs) + "/", "")
    assert "failed us.dcm: (0028,0100): value longer than its VR and VM allow" in stderr
    assert "failed cs.dcm: (0008,0060): value longer than its VR and VM allow" in stderr
    assert "written 0," in result.stderr
    _no_leak(result, output)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_special_files_are_skipped_never_read(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.dcm").write_bytes(_seed(tmp_path))
    os.mkfifo(inputs / "x.dcm")
    (inputs / "zero.dcm").symlink_to("/dev/zero")
    (inputs / "random.dcm").symlink_to("/dev/urandom")
    (inputs / "passwd.dcm").symlink_to("/etc/passwd")
    output = tmp_path / "out"
    result = _run(tmp_path, inputs, output)  # a hang times out and fails the test
    assert result.returncode == 0, result.stderr
    assert "skipped 4" in result.stderr.replace(",", "")
    assert "a FIFO, not a regular file" in result.stderr
    assert "a symbolic link out of the input folder" in result.stderr
    fifo_alone = _run(tmp_path, inputs / "x.dcm", tmp_path / "out2")
    assert "a FIFO, not a regular file" in fifo_alone.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_the_commands_that_read_a_folder_back_skip_a_fifo(tmp_path: Path) -> None:
    """verify --against, diff and risk on a folder with a FIFO: they sat waiting for a
    writer forever (found by an independent black-box test); they read regular files only."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.dcm").write_bytes(_seed(tmp_path))
    os.mkfifo(inputs / "pipe.dcm")
    output = tmp_path / "out"
    assert _run(tmp_path, inputs, output).returncode == 0
    command = [sys.executable, "-m", "dicomveil"]
    for args in (
        ["verify", str(output), "--against", str(inputs)],
        ["diff", str(inputs), str(output)],
        ["risk", str(inputs)],
    ):
        done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr, args


def test_folder_links_and_folders_that_cannot_be_listed_are_reported(tmp_path: Path) -> None:
    """A symbolic link to a folder (inside or outside the input) is skipped with its reason,
    and a folder that cannot be listed fails (both were passed over without a word, exit 0)."""
    inputs = tmp_path / "in"
    (inputs / "a").mkdir(parents=True)
    (inputs / "a" / "good.dcm").write_bytes(_seed(tmp_path))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (inputs / "a" / "loop").symlink_to("..")
    (inputs / "out-link").symlink_to(outside)
    result = _run(tmp_path, inputs, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "skipped 2" in result.stderr.replace(",", "")
    assert "a symbolic link to a folder: not followed" in result.stderr
    assert "a symbolic link out of the input folder" in result.stderr
    locked = inputs / "locked"
    locked.mkdir()
    (locked / "x.dcm").write_bytes(_seed(tmp_path))
    locked.chmod(0)
    try:
        # root reads any folder: run as root without the capabilities that allow it
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search", "--"]  # fmt: skip
        prefix = drop if os.access(locked, os.R_OK) and shutil.which("setpriv") else []
        if os.access(locked, os.R_OK) and not prefix:
            pytest.skip("this user reads any folder, and setpriv is not installed")
        key = tmp_path / "k.key"
        result = subprocess.run(
            [*prefix, DICOMVEIL, "run", str(inputs), str(tmp_path / "out2"), "--key", str(key)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "a folder that cannot be read" in result.stderr


def test_an_unusable_output_path_is_a_clear_error(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.dcm").write_bytes(_seed(tmp_path))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _run(tmp_path, inputs, blocker)
    assert result.returncode == 2
    assert "the output folder exists and is not a folder" in result.stderr
    assert "Traceback" not in result.stderr
    result = _run(tmp_path, inputs, tmp_path / "out", "--map-dir", str(blocker / "maps"))
    assert result.returncode == 2
    assert "cannot create the map folder" in result.stderr
    assert "Traceback" not in result.stderr
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def _with_uid(seed: bytes, number: int) -> bytes:
    """``seed`` with a SOP Instance UID of its own (same length)."""
    sop = seed.index(b"\x08\x00\x18\x00UI")
    length = struct.unpack("<H", seed[sop + 6 : sop + 8])[0]
    uid = f"1.2.3.{number}".encode().ljust(length, b"\x00")[:length]
    return seed[: sop + 8] + uid + seed[sop + 8 + length :]


def test_zips_duplicate_names_nested_archives_and_many_members(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    with zipfile.ZipFile(inputs / "inner.zip", "w") as inner:
        inner.writestr("a.dcm", _with_uid(seed, 9))
    with zipfile.ZipFile(inputs / "study.zip", "w") as archive:
        archive.writestr("same.dcm", _with_uid(seed, 1))
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("same.dcm", _with_uid(seed, 2))
        archive.write(inputs / "inner.zip", "inner.zip")
        for number in range(20_000):
            archive.writestr(f"tiny/{number}.txt", b"x")
    (inputs / "inner.zip").unlink()
    output = tmp_path / "out"
    result = _run(tmp_path, inputs, output)  # within the run's timeout (a hang guard)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "written 2," in result.stderr  # both members named same.dcm, apart
    assert "a zip archive inside a zip archive: unpack it first" in result.stderr
    assert len(list(output.rglob("*.dcm"))) == 2
    assert "skipped 20001" in result.stderr.replace(",", "")
    _no_leak(result, output)


def test_two_inputs_of_one_uid_leave_the_reported_ones_output(tmp_path: Path) -> None:
    """Two different files with one SOP Instance UID, on two workers: one is written, the
    other fails, and the file on disk is the one reported written (the other's worker may
    have renamed its file into place last)."""
    from dicomveil import Key, Outcome, Profile, RunConfig, run

    source = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    inputs = tmp_path / "in"
    for number in range(6):  # six pairs: chances for the later twin to land last
        for twin in (0, 1):
            ds = source.copy()
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1.{number}"
            ds.InstanceNumber = 100 * twin + number  # kept: tells the twins apart
            folder = inputs / f"twin{twin}"
            folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / f"{number}.dcm", enforce_file_format=True)
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"),
        key=Key(b"k" * 32),
        output=tmp_path / "out",
        workers=2,
        chunk_size=1,
    )
    summary = run([inputs], config)
    written = {r.output: r for r in summary.results if r.outcome is Outcome.WRITTEN}
    failed = [r for r in summary.results if r.outcome is Outcome.FAILED]
    assert len(written) == len(failed) == 6
    assert all("same SOP Instance UID as" in r.reason for r in failed)
    for output, result in written.items():
        assert output is not None
        expected = pydicom.dcmread(result.task.path).InstanceNumber
        assert pydicom.dcmread(output).InstanceNumber == expected, result.task.path.name
