#!/usr/bin/env python
"""Burned-in text on an independent corpus: what ``clean-pixel-data`` leaves readable.

Usage::

    python benchmarks/bench_burnedin.py [--half tune|heldout] [--corpus DIR] [--workers 0]

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
* BurnedInAnnotation NO on a written file in which a box (any text) is not painted over;
* withheld and failed files, with their reasons; seconds per frame of the run.

Numbers are printed, never asserted (targets are in issue 23 and the README).
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


def _ocr(frame: np.ndarray[Any, Any]) -> set[str]:
    """The words Tesseract reads in one frame (8-bit, upscaled twice)."""
    image = frame.astype(np.float64)
    if image.ndim == 3:
        image = image.mean(axis=2)
    span = float(image.max() - image.min()) or 1.0
    grey = ((image - image.min()) * 255.0 / span).astype(np.uint8)
    picture = Image.fromarray(grey).resize((grey.shape[1] * 2, grey.shape[0] * 2))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.png"
        picture.save(path)
        done = subprocess.run(
            ["tesseract", str(path), "-", "--psm", "11"], capture_output=True, text=True
        )
    return _words(done.stdout)


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
    return 0


def _report(
    half: str, entries: list[dict[str, Any]], inputs: Path, results: dict[str, Any], seconds: float
) -> None:
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    boxes = covered = leaks = controls_changed = false_no = 0
    leaking: list[str] = []
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
        if str(written.get("BurnedInAnnotation", "")) == "NO" and not all(painted.values()):
            false_no += 1
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
    print(f"  written files with identifying text read back: {leaks} {sorted(leaking)}")
    print(f"  text-free controls changed: {controls_changed} of {controls}")
    print(f"  BurnedInAnnotation NO with a box not painted over: {false_no}")
    print(f"  run: {seconds:.1f} s, {seconds / max(frames, 1):.2f} s per frame")


if __name__ == "__main__":
    raise SystemExit(main())
