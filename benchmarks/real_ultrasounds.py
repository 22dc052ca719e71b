#!/usr/bin/env python
"""Burned-in text on the real ultrasounds pip installs: what ``clean-pixel-data`` leaves.

Usage::

    python benchmarks/real_ultrasounds.py [--previews DIR] [--readme-previews DIR]

The files: deid-data's ``GREYSCALE_IMAGE``, ``RGB_IMAGE``, ``ultrasound-multiframe`` and the
cines in ``GREYSCALE_CINE.zip`` and ``RGB_CINE.zip``; pydicom-data's ``US1_*`` (native and
JPEG 2000, lossless and lossy) and ``gdcm-US-ALOKA-16*`` (palette colour, both byte orders).
Each goes through ``dicomveil run`` with ``ps3.15-basic`` and ``clean-pixel-data``; then
Tesseract reads every written frame again on its own (8-bit, enlarged twice, sparse text:
not the redactor's views) and the strings it reads again that the input's header or the list of
strings known to be burned into these files hold are counted as leaks (counted, never
printed). Numbers are printed,
never asserted (issue 23). ``--readme-previews`` writes small before/after PNGs of the first
frame of each file for the README.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomveil import Key, Outcome, Profile, RunConfig, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_ocr import grey8, read_text  # benchmarks/ is on the path: this script is in it

from tests.support.commands import pydicom_data_folder

# Strings burned into these files (their own fake PHI), beside what their headers hold.
KNOWN = {
    "GREYSCALE_IMAGE.dcm": ["00079241539", "08/29/1951"],
    "RGB_IMAGE.dcm": ["ZZZDOWNTIME", "00047431395"],
    "US1_J2KR.dcm": ["BAPTIST"],
    "US1_J2KI.dcm": ["BAPTIST"],
    "US1_UNCR.dcm": ["BAPTIST"],
    "US1_UNCI.dcm": ["BAPTIST"],
    "gdcm-US-ALOKA-16.dcm": ["WESTWAY"],
    "gdcm-US-ALOKA-16_big.dcm": ["WESTWAY"],
}
HEADER_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "StudyDate", "AccessionNumber",
    "InstitutionName", "ReferringPhysicianName", "OperatorsName",
)  # fmt: skip


def inputs(folder: Path) -> list[Path]:
    """Copy the real ultrasounds into ``folder`` (the cines unzipped)."""
    import deid_data

    found: list[Path] = []
    us = Path(deid_data.__file__).parent / "data" / "ultrasounds"
    for name in ("GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm", "ultrasound-multiframe.dcm"):
        found.append(Path(shutil.copy2(us / name, folder / name)))
    for archive in ("GREYSCALE_CINE.zip", "RGB_CINE.zip"):
        with zipfile.ZipFile(us / archive) as zipped:
            for member in zipped.namelist():
                if member.endswith("/"):
                    continue
                target = folder / f"{archive[:-4]}-{Path(member).name}"
                target.write_bytes(zipped.read(member))
                found.append(target)
    data = pydicom_data_folder()
    if data is not None:
        for name in sorted(KNOWN):
            if (data / name).is_file() and name.startswith(("US1_", "gdcm-US")):
                found.append(Path(shutil.copy2(data / name, folder / name)))
    return found


def frames(ds: Dataset) -> np.ndarray[Any, Any]:
    pixels = np.asarray(ds.pixel_array)
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        pixels = apply_color_lut(pixels, ds)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) == 1:
        pixels = pixels[np.newaxis, ...]
    return pixels


def read_back(frame: np.ndarray[Any, Any]) -> str:
    """What Tesseract reads in a frame on its own (:func:`bench_ocr.read_text`), upper case."""
    return read_text(frame).upper()


def identifying(ds: Dataset, name: str) -> set[str]:
    """The strings whose reading back is a leak: the known ones and the header's values
    (each word of 4 characters or more)."""
    strings = {s.upper() for s in KNOWN.get(name, [])}
    for keyword in HEADER_KEYWORDS:
        value = str(ds.get(keyword, "") or "")
        strings.update(w.upper() for w in re.split(r"[\^\s,]+", value) if len(w) >= 4)
    return strings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--previews", type=Path, help="the redactor's QC previews (PNG)")
    parser.add_argument("--readme-previews", type=Path, help="before/after PNGs for the README")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomveil-us-") as tmp:
        base = Path(tmp)
        (base / "in").mkdir()
        files = inputs(base / "in")
        profile = Profile.named("ps3.15-basic").with_options(["clean-pixel-data"])
        config = RunConfig(profile=profile, key=Key.generate(), output=base / "out")
        if args.previews:
            config = replace(config, pixels=replace(config.pixels, preview_dir=args.previews))
        results = []
        for path in files:  # one run each: some share a SOP Instance UID (one image, two codings)
            (base / "one").mkdir()
            shutil.move(path, base / "one" / path.name)
            each = replace(config, output=base / "out" / path.stem)
            results += run([base / "one"], each).results
            for result in results[-1:]:
                kept = base / "in" / path.name
                shutil.move(base / "one" / path.name, kept)
                result.task = replace(result.task, path=kept)
            (base / "one").rmdir()
        leaks = 0
        for result in results:
            name = result.task.path.name
            if result.outcome is not Outcome.WRITTEN:
                print(f"{name}: {result.outcome.value} ({result.reason})")
                continue
            assert result.output is not None
            source, written = dcmread(result.task.path), dcmread(result.output)
            strings = identifying(source, name)
            out = frames(written)
            left = sorted(
                {s for i in range(out.shape[0]) for s in strings if s in read_back(out[i])}
            )
            leaks += bool(left)
            # The oracle's own check: what it reads of these strings in the input's first frame.
            before = read_back(frames(source)[0])
            seen = sum(s in before for s in strings)
            print(
                f"{name}: written, {out.shape[0]} frame(s), BurnedInAnnotation "
                f"{written.get('BurnedInAnnotation', '-')}, read back: "
                + (f"LEAK of {len(left)} string(s)" if left else "nothing identifying")
                + f" (in the input's first frame it reads {seen} of {len(strings)} strings)"
            )
            if args.readme_previews:
                _preview(frames(source)[0], out[0], args.readme_previews / f"{name[:-4]}.png")
        print(f"{len(files)} files, {leaks} with identifying text read back")
    return 0


def _preview(before: np.ndarray[Any, Any], after: np.ndarray[Any, Any], path: Path) -> None:
    """Before and after side by side, 320 pixels wide each."""
    left, right = Image.fromarray(grey8(before)), Image.fromarray(grey8(after))
    width = 320
    height = round(left.height * width / left.width)
    joined = Image.new("L", (2 * width + 8, height), 255)
    joined.paste(left.resize((width, height)), (0, 0))
    joined.paste(right.resize((width, height)), (width + 8, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    joined.save(path, optimize=True)


if __name__ == "__main__":
    raise SystemExit(main())
