"""Neuroimaging fidelity (issue 14): de-identified MR converts exactly like the original.

Every real MR series that pip installs (nibabel, heudiconv, pydicom, pydicom-data) is
converted with dcm2niix before and after de-identification, and the conversions compared
(:mod:`tests.support.neuro`): NIfTI files, voxels, affines, bvec/bval, sidecar keys. Under
``neuro-research`` they match, but for the documented cases below; under ``ps3.15-basic``
what is lost is exactly what the README's table says. ``verify`` passes on every
``neuro-research`` output, and catches names planted in a kept CSA header and Phoenix line.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomveil import Key, Outcome, Profile, RunConfig, run, verify
from dicomveil.qc.verify import Category, Verdict
from dicomveil.qc.verify.validity import run_dciodvfy
from tests.realdata import REQUIRE, ROOT, sdist_folder
from tests.support.neuro import Conversion, Series, compare, convert, dcm2niix, lost_keys, mr_series
from tests.support.scratch import scratch

KEY = Key(b"neuro-fidelity-key-0123456789abc")
TODAY = dt.date(2026, 12, 5)

if dcm2niix() is None:
    if REQUIRE:
        raise RuntimeError("dcm2niix is not installed (apt-get install dcm2niix): required in CI")
    pytest.skip("dcm2niix is not installed (Debian package dcm2niix)", allow_module_level=True)

# Series whose conversions differ under neuro-research, on purpose (README, "Neuroimaging").
OVERLAY_ROI = "NIfTI files ['18', '18_ROI1'] became ['18']"
EXPECTED = {
    # dcm2niix converts the overlay (60xx) into an extra ROI image; PS3.15 removes overlays
    # (they may hold burned-in annotations), so that image is not made.
    "pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm": [OVERLAY_ROI],
    "pydicom/test_files/examples_overlay.dcm": [OVERLAY_ROI],
    # The original does not convert (dcm2niix: illegal tags in the damaged file); the
    # de-identified file, written cleanly, does.
    "nibabel/nibabel/nicom/tests/data/slicethickness_empty_string.dcm": [
        "NIfTI files [] became ['100']"
    ],
}
# Not de-identified at all, under every profile: no SOP Instance UID (nibabel's test file).
FAILS = {"nibabel/nibabel/nicom/tests/data/decimal_rescale.dcm": "no SOP Instance UID"}

# What dcm2niix no longer gets under ps3.15-basic (the README's table lists the same keys):
# sidecar keys lost from some series, and the series whose images break.
BASIC_LOST = frozenset(
    {
        "AcquisitionTime", "BandwidthPerPixelPhaseEncode", "BaseResolution",
        "CoilCombinationMethod", "CoilString", "ConsistencyInfo", "DelayTime",
        "DerivedVendorReportedEchoSpacing",
        "DiffusionScheme", "DwellTime", "EchoTime1", "EchoTime2", "EffectiveEchoSpacing",
        "EstimatedEffectiveEchoSpacing", "EstimatedTotalReadoutTime", "ImageComments",
        "ImageOrientationText", "ImageTypeText", "MatrixCoilMode", "MultibandAccelerationFactor",
        "NonlinearGradientCorrection", "ParallelReductionFactorInPlane", "PartialFourier",
        "PhaseEncodingDirection", "PhaseEncodingSteps", "PhaseResolution",
        "PhilipsRescaleIntercept", "PhilipsRescaleSlope", "PhilipsScaleSlope",
        "ProcedureStepDescription", "ProtocolName", "PulseSequenceDetails",
        "ReceiveCoilActiveElements", "ReceiveCoilName", "RefLinesPE", "ScanOptions",
        "ScanningSequence", "SequenceVariant", "SeriesDescription", "ShimSetting", "SliceTiming",
        "TotalReadoutTime", "TxRefAmp", "UsePhilipsFloatNotDisplayScaling", "WaterFatShift",
    }
)  # fmt: skip
BASIC_BROKEN = frozenset(
    {
        "heudiconv/heudiconv/tests/data/axasc35.dcm",  # mosaic: 36 slices instead of 35
        "heudiconv/heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00001.dcm",  # bvec/bval
        "nibabel/nibabel/nicom/tests/data/0.dcm",  # mosaics not unpacked, 49 slices
        "nibabel/nibabel/tests/data/0.dcm",  # mosaic not unpacked
    }
)
SAFE_PRIVATE_KEEPS = frozenset(
    {"EstimatedEffectiveEchoSpacing", "EstimatedTotalReadoutTime", "WaterFatShift"}
)
# Each row of the README's table: the keys some series lose, the series whose images break.
ROWS = {
    "ps3.15-basic": (BASIC_LOST, BASIC_BROKEN),
    "ps3.15-basic+retain-safe-private": (
        BASIC_LOST - SAFE_PRIVATE_KEEPS,
        BASIC_BROKEN - {"heudiconv/heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00001.dcm"},
    ),
    "lab-dicombrowser": (frozenset(), frozenset()),
    "nidb-anonymize-full": (frozenset({"AcquisitionTime"}), frozenset()),
}


@dataclass
class Converted:
    series: Series
    source: Path
    before: Conversion
    after: dict[str, Conversion]
    outputs: dict[str, Path]
    maps: dict[str, Path]
    outcomes: dict[str, list[tuple[Outcome, str]]]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Converted]]:
    """Every series converted before, and after neuro-research and ps3.15-basic."""
    with scratch(tmp_path_factory, "neuro") as root:
        yield _convert_all(root)


def _convert_all(root: Path) -> list[Converted]:
    found = mr_series()
    if REQUIRE or (sdist_folder() / "heudiconv" / ".complete").exists():
        assert len(found) >= 20, [s.name for s in found]
    results = []
    for n, series in enumerate(found):
        source = series.place(root / f"in{n}")
        item = Converted(series, source, convert(source, root / f"before{n}"), {}, {}, {}, {})
        for profile in ("neuro-research", *ROWS):
            out, maps = root / f"{profile}-{n}", root / f"{profile}-{n}-maps"
            name, *options = profile.split("+")
            config = RunConfig(
                profile=Profile.named(name).with_options(options), key=KEY, output=out,
                map_dir=maps, workers=1, today=TODAY,
            )  # fmt: skip
            summary = run([source], config)
            item.outcomes[profile] = [(r.outcome, r.reason) for r in summary.results]
            item.after[profile] = convert(out, root / f"after-{profile}-{n}")
            item.outputs[profile], item.maps[profile] = out, maps
        results.append(item)
    return results


def test_neuro_research_converts_like_the_original(converted: list[Converted]) -> None:
    unexpected = {}
    for item in converted:
        name = item.series.name
        if name in FAILS:
            reasons = {reason for _, reason in item.outcomes["neuro-research"]}
            assert all(FAILS[name] in r for r in reasons), reasons
            continue
        assert {o for o, _ in item.outcomes["neuro-research"]} == {Outcome.WRITTEN}, name
        problems = compare(item.before, item.after["neuro-research"])
        if problems != EXPECTED.get(name, []):
            unexpected[name] = problems
    assert not unexpected, "\n".join(f"{k}: {v}" for k, v in unexpected.items())
    mosaic = next(i for i in converted if i.series.name.endswith("axasc35.dcm"))
    assert mosaic.after["neuro-research"].images["6"].shape == (64, 64, 35)
    dwi = mosaic.after["neuro-research"].sidecars["6"]
    for key in ("SliceTiming", "PhaseEncodingDirection", "EffectiveEchoSpacing", "ShimSetting"):
        assert key in dwi, key


@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_preset_loses_what_the_readme_says(converted: list[Converted], row: str) -> None:
    """The README's table, row by row: sidecar keys lost, series whose images break."""
    lost_expected, broken_expected = ROWS[row]
    usable = [i for i in converted if i.series.name not in FAILS]
    lost = lost_keys((i.before, i.after[row]) for i in usable)
    assert lost == lost_expected, (sorted(lost - lost_expected), sorted(lost_expected - lost))
    broken = {
        i.series.name
        for i in usable
        if i.series.name not in EXPECTED
        and any(
            re.search(r"shape|voxel|affine|bvec|bval|NIfTI files", p)
            for p in compare(i.before, i.after[row])
        )
    }
    assert broken == broken_expected
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### What dcm2niix gets, per preset") :]
    cell = " + ".join(f"`{part}`" for part in row.split("+"))
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {cell} |"))
    named = line if "+" not in row else table  # the safe-private row names what it keeps
    for key in lost_expected:
        assert key in named, key


def test_verify_passes_on_every_neuro_research_output(converted: list[Converted]) -> None:
    failing = {}
    for item in converted:
        if item.series.name in FAILS:
            continue
        report = verify(
            item.outputs["neuro-research"],
            against=item.source,
            map_dir=item.maps["neuro-research"],
            profile=Profile.named("neuro-research"),
            workers=1,
        )
        if report.result is not Verdict.PASS:
            failing[item.series.name] = [f"{f.path}: {f.message}" for f in report.findings][:5]
    assert not failing, failing


def test_no_new_dciodvfy_errors_on_neuro_research_outputs(converted: list[Converted]) -> None:
    """dciodvfy (dicom3tools) on every input and output: an output has no error its series'
    inputs did not have (errors compared without the values they quote)."""
    program = shutil.which("dciodvfy")
    if program is None:
        if REQUIRE:
            raise AssertionError("dciodvfy is not installed (apt-get install dicom3tools)")
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    new: dict[str, list[str]] = {}
    checked = 0
    for item in converted:
        if item.series.name in FAILS:
            continue
        before = {e for path in item.series.files for e in run_dciodvfy(program, path)}
        outputs = sorted(item.outputs["neuro-research"].rglob("*.dcm"))
        after = {e for path in outputs for e in run_dciodvfy(program, path)}
        checked += len(outputs)
        if after - before:
            new[item.series.name] = sorted(after - before)[:5]
    assert checked >= 40
    assert not new, new


# --------------------------------------------------------------------------------------------
# Names planted in a CSA header and in a Phoenix protocol line

PLANTED = "QUIGLEYSON"  # ten letters: replaces ten bytes, the CSA layout unchanged


def _mosaic(tmp_path: Path) -> Path:
    source = next(s for s in mr_series() if s.name.endswith("axasc35.dcm"))
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(source.files[0], folder / "axasc35.dcm")
    ds = dcmread(folder / "axasc35.dcm")
    ds.PatientName = f"{PLANTED}^ALBERT"
    ds.save_as(folder / "axasc35.dcm")
    return folder / "axasc35.dcm"


def _plant(path: Path, tag: int, old: bytes, new: bytes) -> None:
    """Replace the first ``old`` by ``new`` (same length) in the value of element ``tag``,
    after the Phoenix protocol's ASCCONV marker where there is one."""
    assert len(old) == len(new)
    ds = dcmread(path)
    value = ds[tag].value
    at = value.find(old, max(0, value.find(b"### ASCCONV BEGIN")))
    assert at >= 0, old
    ds[tag].value = value[:at] + new + value[at + len(old) :]
    ds.save_as(path)


def _run(folder: Path, out: Path, maps: Path) -> None:
    config = RunConfig(
        profile=Profile.named("neuro-research"), key=KEY, output=out, map_dir=maps, workers=1
    )
    summary = run([folder], config)
    assert [r.outcome for r in summary.results] == [Outcome.WRITTEN]


def test_names_in_a_csa_header_and_a_phoenix_line_never_reach_the_output(tmp_path: Path) -> None:
    path = _mosaic(tmp_path)
    name = PLANTED.encode()
    _plant(path, 0x00291010, b"X_1_1_1_2_", name)  # inside ICE_Dims, a kept text item
    _plant(path, 0x00291020, b"HeadMatrix", name)  # a coil ID line of the Phoenix protocol
    _plant(path, 0x00291020, b"SiemensSeq", name)  # the sequence file name line
    out, maps = tmp_path / "out", tmp_path / "maps"

    _run(path.parent, out, maps)

    (written,) = out.rglob("*.dcm")
    data = written.read_bytes()
    assert b"QUIGLEYS" not in data.upper() and PLANTED.encode("utf-16-le") not in data
    ds = dcmread(written)
    assert b"### ASCCONV BEGIN" in ds[0x00291020].value  # the protocol is kept, cleaned
    report = verify(out, against=path.parent, map_dir=maps, profile=Profile.named("neuro-research"))
    assert report.result is Verdict.PASS, report.findings


def test_the_csa_series_header_loses_the_weight_and_exact_age(tmp_path: Path) -> None:
    """PatReinPattern ("1;HFS;<weight kg>;<age, two decimals>;...") is not kept: the real
    mosaic's holds 100.70 kg and 33.68 years (found by a black-box test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel: "The DICOM readers are highly experimental"
        from nibabel.nicom import csareader
    path = _mosaic(tmp_path)
    series = csareader.get_csa_header(dcmread(path), "series")  # type: ignore[no-untyped-call]
    assert "100.70" in series["tags"]["PatReinPattern"]["items"][0]
    out, maps = tmp_path / "out", tmp_path / "maps"

    _run(path.parent, out, maps)

    (written,) = out.rglob("*.dcm")
    kept = csareader.get_csa_header(dcmread(written), "series")["tags"]  # type: ignore[no-untyped-call]
    assert "PatReinPattern" not in kept or not kept["PatReinPattern"]["items"]
    assert b"100.70" not in written.read_bytes()


def test_verify_catches_a_name_left_in_a_kept_container(tmp_path: Path) -> None:
    path = _mosaic(tmp_path)
    out, maps = tmp_path / "out", tmp_path / "maps"
    _run(path.parent, out, maps)
    (written,) = out.rglob("*.dcm")
    profile = Profile.named("neuro-research")
    assert verify(out, against=path.parent, map_dir=maps, profile=profile).result is Verdict.PASS
    for tag, old in ((0x00291010, b"X_1_1_1_2_"), (0x00291020, b"HeadMatrix")):
        tampered = tmp_path / f"tampered-{tag:08X}"
        shutil.copytree(out, tampered)
        (copy,) = tampered.rglob("*.dcm")
        _plant(copy, tag, old, PLANTED.encode())  # as a faulty cleaner would leave it

        report = verify(tampered, against=path.parent, map_dir=maps, profile=profile)

        leaks = [f for f in report.findings if f.category is Category.NAME]
        assert leaks, report.findings
        assert any("SIEMENS CSA HEADER" in f.path for f in leaks), [f.path for f in leaks]
    assert written.exists()
