#!/usr/bin/env python
"""Burned-in text on an independent corpus: what ``clean-pixel-data`` leaves readable.

Usage::

    python benchmarks/bench_ocr.py [--half tune|heldout] [--corpus DIR] [--workers 0]

The corpus is ``tests/data/burnedin/`` (written by a session that never saw the redactor:
93 images, ultrasound, secondary capture, X-ray and endoscopy frames, cines, 8/16-bit and
RGB, six transfer syntaxes, 15 text-free controls, every text box in ``key.json``); it is
generated into ``--corpus`` (or a temporary folder) by its script. Issue 23: tune on the
``tune`` half, report on the ``heldout`` half. The images of the half go through ``dicomveil
run`` with ``ps3.15-basic`` and ``clean-pixel-data``; each output is compared with its input:

* box recall: identifying boxes whose glyph box is painted over (flat in the output; a
  little spread allowed where the output is lossy), of all identifying boxes;
* leaks: written files in which Tesseract reads back a word (3 characters or more) of an
  identifying box;
* controls: text-free images whose pixel data and transfer syntax are not byte-identical;
* BurnedInAnnotation NO on a written file in which an identifying box is not painted over
  (untruthful: PS3.3 Table C.7-9 defines the attribute as annotation "sufficient to identify
  the patient and the date"), and, apart, files saying NO that keep clinical text (scale
  marks, orientation letters, labels: not identifying, left by design when not found);
* withheld and failed files, with their reasons; seconds per frame of the run.

Then seconds per frame on one core for a 512 x 512 and a 1024 x 768 image (the first text
image of that size in the corpus, alone in a run with one worker: both detectors on every
frame, the output read again after painting; a timing, so from either half).

Numbers are printed, never asserted (targets are in issue 23 and the README). The older
benchmark on images generated beside the detector is ``bench_ocr_synthetic.py``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomveil import Key, Outcome, Profile, RunConfig, run

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tests" / "data" / "burnedin" / "make_corpus.py"


def _corpus(folder: Path) -> dict[str, Any]:
    if not (folder / "key.json").is_file():
        subprocess.run([sys.executable, str(GENERATOR), str(folder)], check=True)
    key: dict[str, Any] = json.loads((folder / "key.json").read_text(encoding="utf-8"))
    return key


def _frames(ds: Dataset) -> np.ndarray[Any, Any]:
    pixels = np.asarray(ds.pixel_array)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[np.newaxis, ...]
    return pixels


def _painted(out: np.ndarray[Any, Any], box: dict[str, Any], lossy: bool) -> bool:
    """The glyph box is flat in the output (painted over)."""
    x0, y0, x1, y1 = box["ink"]
    region = out[box["frame"], y0:y1, x0:x1].astype(np.int64)
    if region.size == 0:
        return True
    spread = int(region.max() - region.min())
    top = int(np.iinfo(out.dtype).max) if np.issubdtype(out.dtype, np.integer) else 1
    return spread <= (0.08 * top if lossy else 0)


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[^\W_]{3,}", text)}


def grey8(frame: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A frame as 8-bit grey, stretched to its full range (colour: the mean of the samples)."""
    image = frame.astype(np.float64)
    if image.ndim == 3:
        image = image.mean(axis=2)
    span = float(image.max() - image.min()) or 1.0
    grey: np.ndarray[Any, Any] = ((image - image.min()) * 255.0 / span).astype(np.uint8)
    return grey


def read_text(frame: np.ndarray[Any, Any]) -> str:
    """What Tesseract reads in one frame on its own (8-bit, enlarged twice, sparse text): not
    the redactor's views, an independent reading."""
    grey = grey8(frame)
    picture = Image.fromarray(grey).resize((grey.shape[1] * 2, grey.shape[0] * 2))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.png"
        picture.save(path)
        done = subprocess.run(
            ["tesseract", str(path), "-", "--psm", "11"], capture_output=True, text=True
        )
    return done.stdout


def _ocr(frame: np.ndarray[Any, Any]) -> set[str]:
    """The words Tesseract reads in one frame."""
    return _words(read_text(frame))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half", choices=("tune", "heldout"), default="heldout")
    parser.add_argument("--corpus", type=Path, help="where the corpus is (generated if absent)")
    parser.add_argument("--workers", type=int, default=0, help="0: all cores")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomveil-burnedin-") as tmp:
        base = Path(tmp)
        corpus = args.corpus or base / "corpus"
        key = _corpus(corpus)
        entries = [f for f in key["files"] if f["split"] == args.half]
        inputs = base / "in"
        inputs.mkdir()
        for entry in entries:
            shutil.copy2(corpus / entry["file"], inputs / entry["file"])
        profile = Profile.named("ps3.15-basic").with_options(["clean-pixel-data"])
        config = RunConfig(
            profile=profile, key=Key.generate(), output=base / "out", workers=args.workers
        )
        started = time.perf_counter()
        summary = run([inputs], config)
        seconds = time.perf_counter() - started
        results = {r.task.path.name: r for r in summary.results}
        _report(args.half, entries, inputs, results, seconds)
        for rows, columns in ((512, 512), (768, 1024)):  # timing only: from either half
            _per_frame(corpus, key["files"], rows, columns, base / f"size-{rows}x{columns}")
    return 0


def _per_frame(
    corpus: Path, entries: list[dict[str, Any]], rows: int, columns: int, folder: Path
) -> None:
    """Seconds per frame, one worker, for the first text image of this size."""
    sized = [
        e for e in entries if (e["rows"], e["columns"]) == (rows, columns) and not e["control"]
    ]
    if not sized:
        print(f"  {columns} x {rows}: no text image of this size")
        return
    entry = sized[0]
    (folder / "in").mkdir(parents=True)
    shutil.copy2(corpus / entry["file"], folder / "in" / entry["file"])
    profile = Profile.named("ps3.15-basic").with_options(["clean-pixel-data"])
    config = RunConfig(profile=profile, key=Key.generate(), output=folder / "out", workers=1)
    started = time.perf_counter()
    run([folder / "in"], config)
    seconds = time.perf_counter() - started
    frames = int(entry["frames"])
    print(
        f"  {columns} x {rows} ({entry['variant']}, {frames} frame(s)), one core: "
        f"{seconds / frames:.2f} s per frame"
    )


def _report(
    half: str, entries: list[dict[str, Any]], inputs: Path, results: dict[str, Any], seconds: float
) -> None:
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    boxes = covered = leaks = controls_changed = false_no = clinical_no = 0
    leaking: list[str] = []
    missed: list[str] = []  # where and what kind, never the text
    for entry in entries:
        result = results[entry["file"]]
        outcomes[result.outcome.value] += 1
        if result.outcome is not Outcome.WRITTEN:
            reasons[f"{result.outcome.value}: {result.reason}"] += 1
            continue
        source, written = dcmread(inputs / entry["file"]), dcmread(result.output)
        if entry["control"]:
            same = (
                source.PixelData == written.PixelData
                and source.file_meta.TransferSyntaxUID == written.file_meta.TransferSyntaxUID
            )
            controls_changed += not same
            continue
        out = _frames(written)
        lossy = bool(entry["lossy"]) or written.file_meta.TransferSyntaxUID.is_compressed
        painted = {id(b): _painted(out, b, lossy) for b in entry["boxes"]}
        identifying = [b for b in entry["boxes"] if b["identifying"]]
        boxes += len(identifying)
        covered += sum(painted[id(b)] for b in identifying)
        missed += [
            f"{entry['file']} frame {b['frame']}: {b['kind']}, {b['size_px']} px, "
            f"contrast {b['contrast']:.2f} ({entry['variant']}, {entry['transfer_syntax']})"
            for b in identifying
            if not painted[id(b)]
        ]
        if str(written.get("BurnedInAnnotation", "")) == "NO":
            false_no += not all(painted[id(b)] for b in identifying)
            clinical_no += all(painted[id(b)] for b in identifying) and not all(painted.values())
        read: dict[int, set[str]] = {}
        for b in identifying:
            frame = int(b["frame"])
            if frame not in read:
                read[frame] = _ocr(out[frame])
            if _words(b["text"]) & read[frame]:
                leaks += 1
                leaking.append(entry["file"])
                break
    frames = sum(int(e["frames"]) for e in entries)
    controls = sum(1 for e in entries if e["control"])
    print(f"== {half} half: {len(entries)} files ({controls} text-free), {frames} frames")
    print(f"  outcomes: {dict(outcomes)}")
    for reason, n in reasons.most_common():
        print(f"    {n} x {reason}")
    recall = covered / boxes if boxes else 1.0
    print(f"  identifying boxes painted over: {recall:.1%} ({covered}/{boxes})")
    for where in missed:
        print(f"    not painted: {where}")
    print(f"  written files with identifying text read back: {leaks} {sorted(leaking)}")
    print(f"  text-free controls changed: {controls_changed} of {controls}")
    print(f"  BurnedInAnnotation NO with an identifying box not painted over: {false_no}")
    print(f"  BurnedInAnnotation NO with only clinical text left (scale, labels): {clinical_no}")
    print(f"  run: {seconds:.1f} s, {seconds / max(frames, 1):.2f} s per frame")


if __name__ == "__main__":
    raise SystemExit(main())
