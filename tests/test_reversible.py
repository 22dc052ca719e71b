"""Issue 19, part 1: reversible de-identification under recipient certificates.

Real files (pydicom's test files, the Siemens and Philips MR of pydicom-data and deid-data)
are de-identified with ``--option reversible`` for two recipients; each recipient's private
key restores every original value (compared element by element with the input, read by
pydicom), a third key cannot, and a changed envelope is refused. OpenSSL (``openssl cms
-decrypt``) opens an envelope the test extracts, and dciodvfy finds no new error.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomveil import Outcome, Profile, RunConfig, run
from dicomveil.engine.reversible import ENCRYPTED_ATTRIBUTES, restore
from dicomveil.identity.envelope import EnvelopeError
from dicomveil.qc.verify import RiskKind, verify
from tests.conftest import KEY, TODAY
from tests.oracles import DCIODVFY, new_iod_errors
from tests.support.certificates import holder
from tests.support.commands import PYDICOM_DATA, cli, keygen

REAL = [
    PYDICOM_DATA / "test_files" / "CT_small.dcm",
    PYDICOM_DATA / "test_files" / "MR_small.dcm",
    PYDICOM_DATA / "test_files" / "rtplan.dcm",
]
PIXELS = {0x7FE00008, 0x7FE00009, 0x7FE00010}


def _real_mr() -> list[Path]:
    """Real vendor MR that pip installs, where fetched: a Siemens MR with CSA headers, a
    Siemens EPI mosaic, a Siemens XA Enhanced MR and a Philips Enhanced MR."""
    from tests.realdata import real_files

    wanted = ("nicom/tests/data/0.dcm", "axasc35.dcm", "MRI_102TD_PHA", "philips_mprage.dcm")
    return [f.path for f in real_files() if any(w in f.name for w in wanted)]


def _reversible(tmp: Path, inputs: list[Path], workers: int = 1) -> list[Path]:
    source = tmp / "in"
    for n, path in enumerate(inputs):
        (source / str(n)).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, source / str(n) / path.name)
    config = RunConfig(
        profile=Profile.named("ps3.15-basic").with_options(["reversible"]),
        key=KEY,
        output=tmp / "out",
        workers=workers,
        today=TODAY,
        recipients=(holder("a").recipient, holder("b").recipient),
    )
    summary = run([source], config)
    assert summary.count(Outcome.WRITTEN) == len(inputs), summary.reasons(Outcome.WITHHELD)
    return [r.output for r in summary.written if r.output is not None]


def _same_dataset(original: Dataset, back: Dataset) -> list[str]:
    problems = []
    for element in original:
        if int(element.tag) in PIXELS:
            continue
        if element.tag not in back:
            problems.append(f"{element.tag} missing")
        elif back[element.tag].VR != element.VR or back[element.tag].value != element.value:
            problems.append(f"{element.tag} {element.keyword} differs")
    problems += [f"{e.tag} added" for e in back if e.tag not in original and e.tag.group != 0x0002]
    return problems


@pytest.mark.parametrize("workers", [1, 2])
def test_each_recipient_restores_every_original_value(tmp_path: Path, workers: int) -> None:
    inputs = REAL + _real_mr()
    assert len(inputs) >= 4 or not _real_mr.__doc__, "python tools/fetch_test_data.py"
    outputs = _reversible(tmp_path, inputs, workers)
    by_sop = {pydicom.dcmread(p).SOPInstanceUID: p for p in inputs}
    for output in outputs:
        deidentified = pydicom.dcmread(output)
        assert ENCRYPTED_ATTRIBUTES in deidentified
        assert (
            "PatientName" not in deidentified
            or not str(deidentified.PatientName).strip()
            or (str(deidentified.PatientName) != "CompressedSamples^CT1")
        )
        for name in ("a", "b"):
            ds = pydicom.dcmread(output)
            restore(ds, holder(name).key)
            original = pydicom.dcmread(by_sop[ds.SOPInstanceUID])
            assert _same_dataset(original, ds) == []
        ds = pydicom.dcmread(output)
        with pytest.raises(EnvelopeError, match="no entry this private key opens"):
            restore(ds, holder("c").key)


def test_a_changed_envelope_is_refused(tmp_path: Path) -> None:
    (output,) = _reversible(tmp_path, REAL[:1])
    for position in (-3, -40, 200):
        ds = pydicom.dcmread(output)
        content = bytearray(ds[ENCRYPTED_ATTRIBUTES].value[0].EncryptedContent)
        content[position] ^= 0x01
        ds[ENCRYPTED_ATTRIBUTES].value[0].EncryptedContent = bytes(content)
        with pytest.raises(EnvelopeError, match=r"authentication|damaged|no entry"):
            restore(ds, holder("a").key)


def test_without_the_option_nothing_is_sealed(tmp_path: Path) -> None:
    config = RunConfig(
        profile=Profile.named("ps3.15-basic"), key=KEY, output=tmp_path / "out", workers=1,
        today=TODAY, recipients=(holder("a").recipient,),
    )  # fmt: skip
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(REAL[0], source)
    summary = run([source], config)
    (written,) = summary.written
    assert written.output is not None
    assert ENCRYPTED_ATTRIBUTES not in pydicom.dcmread(written.output)


def test_openssl_opens_the_envelope_and_dciodvfy_finds_no_new_error(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian: openssl)")
    (output,) = _reversible(tmp_path, REAL[:1])
    envelope = bytes(pydicom.dcmread(output)[ENCRYPTED_ATTRIBUTES].value[0].EncryptedContent)
    (tmp_path / "envelope.der").write_bytes(envelope)
    cert, key = holder("b").write(tmp_path / "b")
    plain = tmp_path / "plain.bin"
    done = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "envelope.der"),
         "-recip", str(cert), "-inkey", str(key), "-out", str(plain)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from io import BytesIO

    from pydicom.filereader import read_dataset

    content = read_dataset(BytesIO(plain.read_bytes()), is_implicit_VR=False, is_little_endian=True)
    (item,) = content.ModifiedAttributesSequence
    original = pydicom.dcmread(REAL[0])
    assert item.PatientName == original.PatientName
    assert item.SOPInstanceUID == original.SOPInstanceUID
    if DCIODVFY is not None:
        assert new_iod_errors(REAL[0], output) == []


def test_verify_flags_an_envelope_the_profile_did_not_ask_for(tmp_path: Path) -> None:
    _reversible(tmp_path, REAL[:1])
    asked = verify(
        tmp_path / "out",
        profile=Profile.named("ps3.15-basic").with_options(["reversible"]),
        workers=1,
        iod="off",
    )
    assert RiskKind.ENCRYPTED_ATTRIBUTES not in {f.flag for f in asked.risk_flags}
    plain = verify(tmp_path / "out", profile=Profile.named("ps3.15-basic"), workers=1, iod="off")
    assert RiskKind.ENCRYPTED_ATTRIBUTES in {f.flag for f in plain.risk_flags}


def test_the_commands_seal_and_restore_and_record_it(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    cert_a, key_a = holder("a").write(tmp_path / "a")
    _cert_c, key_c = holder("c").write(tmp_path / "c")
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(REAL[0], source)
    out = tmp_path / "out"
    missing = cli("run", "--key", key, "--option", "reversible", source, out)
    assert missing.exit_code == 2 and "recipient" in missing.stderr
    stray = cli("run", "--key", key, "--recipient", cert_a, source, out)
    assert stray.exit_code == 2 and "--option reversible" in stray.stderr
    sealed = cli("run", "--key", key, "--option", "reversible", "--recipient", cert_a, source, out)
    assert sealed.exit_code == 0, sealed.output
    audit = tmp_path / "audit.db"
    back = cli("reidentify", out, tmp_path / "back", "--private-key", key_a, "--audit", audit)
    assert back.exit_code == 0, back.output
    (restored,) = [p for p in (tmp_path / "back").rglob("*.dcm")]
    assert _same_dataset(pydicom.dcmread(REAL[0]), pydicom.dcmread(restored)) == []
    assert (restored.stat().st_mode & 0o777) == 0o600
    refused = cli("reidentify", out, tmp_path / "back-c", "--private-key", key_c)
    assert refused.exit_code == 1 and "no entry this private key opens" in refused.stderr
    assert not list((tmp_path / "back-c").rglob("*.dcm"))
    with sqlite3.connect(audit) as db:
        rows = db.execute("SELECT restored, refused, certificate FROM reidentifications").fetchall()
    assert rows == [(1, 0, "")]


CHARSET_FILES = ("chrJapMulti", "chrX1", "chrGreek", "chrRuss", "chrArab", "chrHbrw", "chrH31")


def test_names_in_any_character_set_come_back(tmp_path: Path) -> None:
    """The names of pydicom's character-set files (Japanese, Chinese in UTF-8, Greek,
    Russian, Arabic, Hebrew), each in a CT slice with its file's Specific Character Set: the
    sealed originals hold them as they were (they were sealed as "???^???" before: the
    sealed dataset had no character set of its own; found by an independent test)."""
    names = {}
    inputs = []
    for n, stem in enumerate(CHARSET_FILES):
        source = pydicom.dcmread(PYDICOM_DATA / "charset_files" / f"{stem}.dcm")
        ds = pydicom.dcmread(REAL[0])
        ds.SpecificCharacterSet = source.SpecificCharacterSet
        ds.PatientName = source.PatientName
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{n + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = tmp_path / "made" / f"{stem}.dcm"
        path.parent.mkdir(exist_ok=True)
        ds.save_as(path)
        names[ds.SOPInstanceUID] = str(source.PatientName)
        inputs.append(path)
    assert len(set(names.values())) == len(CHARSET_FILES)
    for output in _reversible(tmp_path, inputs):
        ds = pydicom.dcmread(output)
        restore(ds, holder("a").key)
        assert str(ds.PatientName) == names[ds.SOPInstanceUID]
        written = tmp_path / "back.dcm"
        ds.save_as(written)  # in the file's own character set again
        assert str(pydicom.dcmread(written).PatientName) == names[ds.SOPInstanceUID]
