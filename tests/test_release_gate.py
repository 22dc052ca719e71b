"""The release gate (issue 21): with ``--verify`` the verifier checks every written file
against its input before it counts as written, and withholds what it flags.

Each defect class the verifier knows is produced by an engine broken on purpose (its
``deidentify`` monkeypatched to pass an element of the original through), or by a profile
rule that keeps a private element holding the name: under the gate the file is withheld with
the finding as its reason (never the value) and moved out of the output; without the gate it
is written. The file is real (pydicom's CT_small), with a planted name.
"""

from __future__ import annotations

import copy
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil import Key, Outcome, Profile, RunConfig, run
from dicomveil.engine import Engine
from dicomveil.qc.verify.gate import ReleaseGate
from tests.support.commands import cli, keygen, validate
from tests.support.planted import planted_ct

PLANTED = "ZQXWVGATED^QQQ"
KEY = Key(b"release-gate-key-0123456789abcde")
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample"


OPERATOR = "OPERATORSON^OLIVE"  # a person the engine does not know as the patient


def _seed(folder: Path) -> Path:
    """CT_small with the planted name, a per-frame comment naming the patient, a reference
    to another instance and a private element holding the operator's name (one holding the
    patient's own the engine removes, even where a rule keeps it)."""
    ds = planted_ct(PLANTED)
    reference = Dataset()
    reference.ReferencedSOPClassUID = ds.SOPClassUID
    reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.1.424242"
    ds.ReferencedImageSequence = Sequence([reference])
    ds.OperatorsName = OPERATOR
    block = ds.private_block(0x0009, "ACME GATE TEST", create=True)
    block.add_new(0x10, "LO", OPERATOR.replace("^", " "))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _break(monkeypatch: pytest.MonkeyPatch, corrupt: Callable[[Dataset, Dataset], None]) -> None:
    """Make the engine pass something of the original through (``corrupt(before, after)``)."""
    deidentify = Engine.deidentify

    def broken(self: Engine, ds: Dataset, **kwargs: object) -> object:
        before = copy.deepcopy(ds)
        result = deidentify(self, ds, **kwargs)  # type: ignore[arg-type]
        if result.dataset is not None:
            corrupt(before, result.dataset)
        return result

    monkeypatch.setattr(Engine, "deidentify", broken)


def _name_through_sequence(before: Dataset, after: Dataset) -> None:
    after.PerFrameFunctionalGroupsSequence = before.PerFrameFunctionalGroupsSequence


def _nested_original_uid(before: Dataset, after: Dataset) -> None:
    uid = before.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    after.ReferencedImageSequence[0].ReferencedSOPInstanceUID = uid


def _original_date(before: Dataset, after: Dataset) -> None:
    after.StudyDate = before.StudyDate


def _invalid_date(before: Dataset, after: Dataset) -> None:
    after.ContentDate = "2024-13-45"


DEFECTS = {
    "name copied through a damaged sequence": (_name_through_sequence, "leak name"),
    "original UID nested in a sequence": (_nested_original_uid, "uid"),
    "original date": (_original_date, "leak date"),
    "invalid DA": (_invalid_date, "validity invalid-value"),
}


def _run(
    inputs: Path, out: Path, profile: Profile, gate: bool, maps: Path | None = None
) -> Outcome:
    config = RunConfig(
        profile=profile, key=KEY, output=out, workers=1, map_dir=maps,
        gate=ReleaseGate(profile) if gate else None,
    )  # fmt: skip
    (result,) = run([inputs], config).results
    if gate and result.outcome is Outcome.WITHHELD:
        assert result.reason.startswith("release gate: "), result.reason
        assert "ZQXWV" not in result.reason and "424242" not in result.reason
        _stopped.append(result.reason)
    return result.outcome


_stopped: list[str] = []


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_the_gate_withholds_what_a_broken_engine_lets_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    corrupt, expected = DEFECTS[defect]
    source = _seed(tmp_path / "in")
    profile = Profile.named("ps3.15-basic")
    assert _run(source.parent, tmp_path / "clean", profile, gate=True) is Outcome.WRITTEN
    _break(monkeypatch, corrupt)
    _stopped.clear()

    assert _run(source.parent, tmp_path / "ungated", profile, gate=False) is Outcome.WRITTEN
    gated, maps = tmp_path / "gated", tmp_path / "maps"
    assert _run(source.parent, gated, profile, gate=True, maps=maps) is Outcome.WITHHELD

    assert expected in _stopped[0], _stopped
    assert not list(gated.rglob("*.dcm"))  # moved out of the output, nothing left visible
    (kept,) = (maps / "gated").rglob("*.dcm")  # for review, beside the other secrets
    assert kept.stat().st_mode & 0o077 == 0


def _keeping_private(folder: Path) -> Profile:
    """ps3.15-basic with a careless rule: it keeps the private element of the planted name."""
    rules = folder / "keep-private.toml"
    rules.write_text(
        'extends = "ps3.15-basic"\n[[rules]]\n'
        'private = {creator = "ACME GATE TEST", group = "0009", element = "xx10"}\n'
        'action = "K"\n',
        encoding="utf-8",
    )
    return Profile.named(rules)


def test_the_gate_withholds_a_name_a_rule_keeps(tmp_path: Path) -> None:
    source = _seed(tmp_path / "in")
    profile = _keeping_private(tmp_path)
    _stopped.clear()
    assert _run(source.parent, tmp_path / "ungated", profile, gate=False) is Outcome.WRITTEN
    assert _run(source.parent, tmp_path / "gated", profile, gate=True) is Outcome.WITHHELD
    assert "leak name" in _stopped[0] and "ACME GATE TEST" in _stopped[0], _stopped


def test_verify_on_the_command_line(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    report = tmp_path / "run.json"
    result = cli("run", "--key", key, "--workers", "1", "--verify", "--json", report, SAMPLE,
                 tmp_path / "out")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "release gate: 0 written file(s) stopped by the verifier" in result.stderr
    document = json.loads(report.read_text(encoding="utf-8"))
    validate(document, "run")
    assert document["release_gate"] == {"on": True, "stopped": 0}
    off = cli("run", "--key", key, "--no-verify", "-p", "neuro-research", "--json", report,
              SAMPLE, tmp_path / "out2")  # fmt: skip
    assert off.exit_code == 0, off.output
    assert json.loads(report.read_text(encoding="utf-8"))["release_gate"]["on"] is False
    on = cli("run", "--key", key, "-p", "neuro-research", "--json", report, SAMPLE,
             tmp_path / "out3")  # fmt: skip
    assert (
        on.exit_code == 0 and json.loads(report.read_text(encoding="utf-8"))["release_gate"]["on"]
    )


def test_the_gate_knows_the_patient_from_the_files_before(tmp_path: Path) -> None:
    """A name only another file of the patient holds: the first file's Other Patient Names
    (removed by the profile), found in the second file's private element that a rule keeps.
    The second file's own input does not name it as a person, so a gate that knew only that
    input would pass it; the gate of the run has read the first file of the patient."""
    alias = "ZQXWVALIAS"
    first = planted_ct(PLANTED)
    first.OtherPatientNames = f"{alias}^BOB"
    second = planted_ct(PLANTED)
    second.SOPInstanceUID = second.SOPInstanceUID + ".2"
    second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
    block = second.private_block(0x0009, "ACME GATE TEST", create=True)
    block.add_new(0x10, "LO", f"scanned for {alias}")
    folder = tmp_path / "in"
    folder.mkdir()
    first.save_as(folder / "a.dcm", enforce_file_format=True)
    second.save_as(folder / "b.dcm", enforce_file_format=True)
    profile = _keeping_private(tmp_path)
    out = tmp_path / "out"
    summary = run([folder], RunConfig(profile=profile, key=KEY, output=out, workers=1, verify=True))
    outcomes = {r.task.path.name: (r.outcome, r.reason) for r in summary.results}
    assert outcomes["a.dcm"][0] is Outcome.WRITTEN, outcomes
    assert outcomes["b.dcm"][0] is Outcome.WITHHELD, outcomes
    assert "leak name" in outcomes["b.dcm"][1] and alias not in outcomes["b.dcm"][1]

    # The same file before a gate that has read nothing of the patient: it passes.
    again = run([folder / "b.dcm"], RunConfig(profile=profile, key=KEY, output=tmp_path / "o2",
                                               workers=1, verify=False))  # fmt: skip
    (result,) = again.results
    assert result.output is not None
    fresh = ReleaseGate(profile)
    assert fresh.findings(result.output, tmp_path / "o2", folder / "b.dcm", result.uid_map) == []


def test_the_library_follows_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RunConfig's ``verify``: None follows the profile (``verify = true`` in neuro-research),
    True and False decide; the front door ``deidentify`` takes it too."""
    from dicomveil import deidentify

    source = _seed(tmp_path / "in")
    basic, neuro = Profile.named("ps3.15-basic"), Profile.named("neuro-research")
    assert not RunConfig(profile=basic, key=KEY, output=tmp_path).verifying
    assert RunConfig(profile=neuro, key=KEY, output=tmp_path).verifying
    assert not RunConfig(profile=neuro, key=KEY, output=tmp_path, verify=False).verifying
    assert isinstance(
        RunConfig(profile=basic, key=KEY, output=tmp_path, verify=True).release_gate(),
        ReleaseGate,
    )
    _break(monkeypatch, _original_date)
    for name, profile, verify, expected in [
        ("basic", basic, None, Outcome.WRITTEN),
        ("basic-on", basic, True, Outcome.WITHHELD),
        ("neuro", neuro, None, Outcome.WITHHELD),
        ("neuro-off", neuro, False, Outcome.WRITTEN),
    ]:
        config = RunConfig(profile=profile, key=KEY, output=tmp_path / name, verify=verify)
        (result,) = run([source.parent], config).results
        assert result.outcome is expected, (name, result.reason)
    summary = deidentify(source.parent, tmp_path / "front", key=KEY, verify=True)
    assert summary.count(Outcome.WITHHELD) == 1


def test_the_gate_reads_a_long_header_but_never_the_pixel_data_whole(tmp_path: Path) -> None:
    """A large file whose header runs past the first 64 KiB read (a Siemens CSA header, an
    enhanced object's functional groups): the gate reads on until the header ends, so a
    name kept past that point is still caught, and never reads the pixel data whole for it
    (it did: a 157 MB file took 378 MB of RAM under ``run --verify``)."""
    ds = planted_ct(PLANTED)
    ds.Rows = ds.Columns = 3200  # 20 MB of pixel data
    ds.PixelData = bytes(3200 * 3200 * 2)
    ds.OperatorsName = OPERATOR
    block = ds.private_block(0x0009, "ACME GATE TEST", create=True)
    block.add_new(0x10, "UT", "x" * 200_000 + " " + OPERATOR.replace("^", " "))  # kept
    folder = tmp_path / "in"
    folder.mkdir()
    ds.save_as(folder / "large.dcm", enforce_file_format=True)
    profile = _keeping_private(tmp_path)
    _stopped.clear()
    assert _run(folder, tmp_path / "ungated", profile, gate=False) is Outcome.WRITTEN
    (written,) = (tmp_path / "ungated").rglob("*.dcm")
    assert written.read_bytes().find(OPERATOR.split("^")[0].encode()) > 3 * 64 * 1024

    tracemalloc.start()
    try:
        outcome = _run(folder, tmp_path / "gated", profile, gate=True)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome is Outcome.WITHHELD
    assert "leak name" in _stopped[0] and "ACME GATE TEST" in _stopped[0], _stopped
    assert peak < 8_000_000, f"{peak} bytes allocated at most: the pixel data was read"
