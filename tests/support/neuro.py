"""dcm2niix as the oracle of neuroimaging fidelity (issue 14).

:func:`mr_series` finds the real MR series that pip installs (nibabel, heudiconv, pydicom,
pydicom-data; :mod:`tests.realdata`), one folder each; :func:`convert` runs dcm2niix on a
folder; :func:`compare` sets two conversions side by side: NIfTI files by name, voxel
arrays, affines, bvec/bval and sidecar keys.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.realdata import RealFile, place, real_files

SOURCES = ("nibabel", "heudiconv", "pydicom", "pydicom-data")

# Sidecar keys that name the site, the device or the patient, or give a calendar date: a
# de-identified conversion may lack them or hold other values (README, "Neuroimaging").
IDENTIFYING_KEYS = frozenset(
    {
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "AcquisitionDateTime",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "WipMemBlock",  # the Phoenix protocol's free text (sWipMemBlock.tFree)
    }
)


@dataclass(frozen=True)
class Series:
    """One real MR series: its name (source/folder/series number) and files."""

    name: str
    files: tuple[Path, ...]

    def place(self, folder: Path) -> Path:
        """The series' files linked into ``folder`` (created); returns it."""
        for path in self.files:
            place(path, folder)
        return folder


def mr_series() -> list[Series]:
    """Every MR image series of :data:`SOURCES`: files grouped by folder and Series Instance
    UID, one file per SOP Instance UID (pydicom's transfer-syntax variants of one image
    are one instance), series whose files dcm2niix reads."""
    groups: dict[tuple[str, str], dict[str, Path]] = {}
    for real, ds in real_headers(SOURCES):
        if ds.get("Modality") != "MR" or not _has_pixels(real.path):
            continue
        folder = real.name.rsplit("/", 1)[0]
        key = (folder, str(ds.get("SeriesInstanceUID", "")))
        groups.setdefault(key, {}).setdefault(str(ds.get("SOPInstanceUID", real.name)), real.path)
    series = []
    for (folder, _uid), files in sorted(groups.items()):
        name = f"{folder}/{sorted(files.values())[0].name}"
        series.append(Series(name, tuple(sorted(files.values()))))
    return series


def real_headers(sources: Iterable[str]) -> Iterator[tuple[RealFile, Dataset]]:
    """The real files of ``sources`` (zip archives aside) with their headers, those that
    pydicom reads."""
    wanted = set(sources)
    for real in real_files():
        if real.source not in wanted or real.is_zip:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(real.path, stop_before_pixels=True)
        except Exception:
            continue
        yield real, ds


def _has_pixels(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, specific_tags=["PixelData", "TransferSyntaxUID"])
    except Exception:
        return False
    return "PixelData" in ds


@dataclass
class Conversion:
    """What dcm2niix made of one folder: NIfTI images, sidecars, bvec/bval texts."""

    images: dict[str, Any] = field(default_factory=dict)  # name -> nibabel image
    sidecars: dict[str, dict[str, Any]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # name.bvec / name.bval -> text
    log: str = ""


def dcm2niix() -> str | None:
    return shutil.which("dcm2niix")


def convert(folder: Path, out: Path) -> Conversion:
    """dcm2niix on ``folder`` into ``out``: files named by series number (``-f %s``),
    uncompressed, sidecars written (its default anonymised BIDS sidecar)."""
    out.mkdir(parents=True, exist_ok=True)
    program = dcm2niix()
    assert program is not None
    done = subprocess.run(
        [program, "-f", "%s", "-z", "n", "-b", "y", "-o", str(out), str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    result = Conversion(log=done.stdout + done.stderr)
    for path in sorted(out.iterdir()):
        stem = path.name.split(".", 1)[0]
        if path.suffix == ".nii":
            result.images[stem] = nib.load(path)
        elif path.suffix == ".json":
            result.sidecars[stem] = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in (".bvec", ".bval"):
            result.texts[path.name] = path.read_text(encoding="utf-8")
    return result


def compare(before: Conversion, after: Conversion) -> list[str]:
    """How ``after`` differs from ``before``, apart from identifying sidecar keys and free
    text cleaned into tokens: one line per difference (none: the same conversion).

    Images pair by name; an image whose name was taken by another pairs by content (equal
    shape and voxels): dcm2niix suffixes the second series of one series number (``12a``)
    in the order it reads files, and files are named by UIDs, which de-identification
    replaces."""
    problems: list[str] = []
    pairs = _pairs(before, after)
    unpaired = sorted(set(before.images) - set(pairs))
    extra = sorted(set(after.images) - set(pairs.values()))
    if unpaired or extra:
        problems.append(f"NIfTI files {sorted(before.images)} became {sorted(after.images)}")
    for name, other in sorted(pairs.items()):
        a, b = before.images[name], after.images[other]
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} became {b.shape}")
            continue
        if not np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)):
            problems.append(f"{name}: voxel values differ")
        if not np.allclose(a.affine, b.affine, atol=1e-6):
            problems.append(f"{name}: affine differs")
        for suffix in (".bvec", ".bval"):
            if before.texts.get(name + suffix) != after.texts.get(other + suffix):
                problems.append(f"{name}{suffix} differs")
        problems.extend(
            f"{name}: {p}"
            for p in sidecar_changes(before.sidecars.get(name, {}), after.sidecars.get(other, {}))
        )
    return problems


def _pairs(before: Conversion, after: Conversion) -> dict[str, str]:
    def same(a: Any, b: Any) -> bool:
        return bool(
            a.shape == b.shape
            and np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
        )

    pairs = {
        n: n for n in before.images if n in after.images and same(before.images[n], after.images[n])
    }
    for name in sorted(set(before.images) - set(pairs)):
        free = [o for o in sorted(after.images) if o not in pairs.values()]
        match = next((o for o in free if same(before.images[name], after.images[o])), None)
        if match is None and name in free:
            match = name  # the same name, different content: compared, reported
        if match is not None:
            pairs[name] = match
    return pairs


# Free text that clean-descriptors cleans: it may change only by identifying spans becoming
# dicomveil's tokens.
FREE_TEXT_KEYS = frozenset(
    {
        "ProcedureStepDescription",
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "ImageComments",
    }
)
_TOKEN = re.compile(r"\[(?:NAME|ID|DATE|AGE|PHONE|EMAIL|ADDRESS|INSTITUTION|URL|DEVICE)\]")


def sidecar_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Sidecar keys lost, added or changed, identifying keys aside (and free text whose
    change is a token in place of an identifying span)."""
    lost = sorted(k for k in before if k not in after and k not in IDENTIFYING_KEYS)
    added = sorted(k for k in after if k not in before and k not in IDENTIFYING_KEYS)
    changed = sorted(
        k
        for k in before
        if k in after
        and before[k] != after[k]
        and k not in IDENTIFYING_KEYS
        and not (k in FREE_TEXT_KEYS and _TOKEN.search(str(after[k])))
    )
    out = []
    if lost:
        out.append("lost " + ", ".join(lost))
    if added:
        out.append("added " + ", ".join(added))
    if changed:
        out.append("changed " + ", ".join(changed))
    return out


def lost_keys(pairs: Iterable[tuple[Conversion, Conversion]]) -> set[str]:
    """Every non-identifying sidecar key some conversion had before and lost after (images
    paired as :func:`compare` pairs them)."""
    lost: set[str] = set()
    for before, after in pairs:
        for name, other in _pairs(before, after).items():
            sidecar, then = before.sidecars.get(name, {}), after.sidecars.get(other, {})
            lost.update(k for k in sidecar if k not in then and k not in IDENTIFYING_KEYS)
    return lost
