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


def _seed(folder: Path) -> Path:
    """CT_small with the planted name, a per-frame comment naming the patient, a reference
    to another instance and a private element holding the name."""
    ds = planted_ct(PLANTED)
    reference = Dataset()
    reference.ReferencedSOPClassUID = ds.SOPClassUID
    reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.1.424242"
    ds.ReferencedImageSequence = Sequence([reference])
    block = ds.private_block(0x0009, "ACME GATE TEST", create=True)
    block.add_new(0x10, "LO", PLANTED.replace("^", " "))
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


def test_the_gate_withholds_a_name_a_rule_keeps(tmp_path: Path) -> None:
    source = _seed(tmp_path / "in")
    rules = tmp_path / "keep-private.toml"
    rules.write_text(
        'extends = "ps3.15-basic"\n[[rules]]\n'
        'private = {creator = "ACME GATE TEST", group = "0009", element = "xx10"}\n'
        'action = "K"\n',
        encoding="utf-8",
    )
    profile = Profile.named(rules)
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
