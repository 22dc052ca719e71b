"""Burned-in text: detection recall and precision per box, and redaction coverage.

Generates images with fake PHI rendered at known positions (tests.support.textimages: fonts,
sizes, contrasts, backgrounds, colour, transfer syntaxes, multi-frame), runs dicomveil's
clean-pixel-data step on each, writes the output, and scores:

* recall: text lines whose ink the found boxes (padded) cover to >= 95 %, of all lines;
* precision: OCR boxes that touch text ink, of all OCR boxes;
* coverage: ink pixels inside the redacted boxes, of all ink pixels;
* leaks: identifying words (3+ characters) that OCR still reads in the redacted output.

Results are reported for all lines and for "readable" identifying text (font size >= 12 px,
contrast >= 0.5), the figure the README quotes. Needs the pixels extra and Tesseract.

    python benchmarks/bench_ocr_synthetic.py                # 60 images, all cores
    python benchmarks/bench_ocr_synthetic.py --images 200 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the data builders

from dicomveil import Engine, Key, Profile, Pseudonymizer
from dicomveil.cleaners.pixels import PixelSettings, clean_pixels, ocr
from dicomveil.io import read_source, write_output
from tests.support import textimages

BACKGROUNDS = ("dark", "speckle", "gradient", "noise", "light")
SIZES = ((10, 12), (14, 16), (18, 24), (12, 14))
CONTRASTS = (1.0, 0.5, 0.35)
SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)


@dataclass
class Score:
    lines: int = 0
    found: int = 0
    ocr_boxes: int = 0
    ocr_true: int = 0
    ink: int = 0
    ink_covered: int = 0
    leaks: int = 0
    files: int = 0
    withheld: int = 0
    seconds: float = 0.0
    leaked_words: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for name in ("lines", "found", "ocr_boxes", "ocr_true", "ink", "ink_covered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.leaks += other.leaks
        self.files += other.files
        self.withheld += other.withheld
        self.seconds += other.seconds

    def row(self, name: str) -> str:
        recall = self.found / self.lines if self.lines else float("nan")
        precision = self.ocr_true / self.ocr_boxes if self.ocr_boxes else float("nan")
        coverage = self.ink_covered / self.ink if self.ink else float("nan")
        return (
            f"{name:<28} lines {self.lines:5d}  recall {recall:7.2%}  precision "
            f"{precision:7.2%}  coverage {coverage:7.2%}"
        )


def specs(count: int, seed: int) -> list[textimages.Spec]:
    """A balanced mix: every background, size pair, contrast, font and transfer syntax."""
    fonts = textimages.available_fonts()
    out = []
    for i in range(count):
        background = BACKGROUNDS[i % len(BACKGROUNDS)]
        sizes = SIZES[(i // len(BACKGROUNDS)) % len(SIZES)]
        contrast = CONTRASTS[(i // 3) % len(CONTRASTS)]
        font = fonts[(i * 5 + seed) % len(fonts)]
        ts = SYNTAXES[(i // 2) % len(SYNTAXES)]
        colour = i % 4 == 3 and background != "light"
        bits = 16 if (i % 7 == 2 and not colour and ts != JPEGBaseline8Bit) else 8
        frames = 3 if i % 10 == 9 else 1
        out.append(
            textimages.Spec(
                seed=seed * 10_000 + i,
                rows=176,
                columns=256,
                frames=frames,
                colour=colour,
                bits=bits,
                background=background,
                contrast=contrast,
                sizes=sizes,
                font=font,
                transfer_syntax=ts,
            )
        )
    return out


def score_one(spec: textimages.Spec) -> dict[str, Score]:
    """Run the pixel step on one generated image; scores by bucket."""
    image = textimages.make(spec)
    engine = Engine(
        Profile.named("ps3.15-basic").with_options(["clean-pixel-data"]).compile(),
        Pseudonymizer(Key(bytes(32))),
    )
    scores: dict[str, Score] = defaultdict(Score)
    with tempfile.TemporaryDirectory() as folder:
        path = image.write(Path(folder) / "in.dcm")
        source = read_source(path)
        started = time.perf_counter()
        outcome = clean_pixels(source, engine, PixelSettings())
        elapsed = time.perf_counter() - started
        buckets = ["all", f"background {spec.background}", f"syntax {spec.transfer_syntax.name}"]
        buckets.append(f"contrast {spec.contrast}")
        buckets.append("colour" if spec.colour else f"grey {spec.bits}-bit")
        for bucket in buckets:
            scores[bucket].files += 1
            scores[bucket].seconds += elapsed
        if outcome.withheld is not None:
            for bucket in buckets:
                scores[bucket].withheld += 1
            return dict(scores)
        result = engine.deidentify(source.dataset, has_pixel_data=True)
        assert result.dataset is not None, result.withheld_detail
        written = write_output(
            source, result.dataset, Path(folder) / "out.dcm", pixels=outcome.replacement
        )
        assert written > 0
        output = dcmread(Path(folder) / "out.dcm")
        out_frames = output.pixel_array.reshape(spec.frames, spec.rows, spec.columns, -1)
        for report in outcome.frames:
            ink = image.ink[report.frame]
            covered = np.zeros(ink.shape, dtype=bool)
            for box in report.redacted:
                covered[box.y : box.bottom, box.x : box.right] = True
            truth = np.zeros(ink.shape, dtype=bool)
            lines = [line for line in image.lines if line.frame == report.frame]
            for line in lines:
                truth[line.box.y : line.box.bottom, line.box.x : line.box.right] = True
            for line in lines:
                region = ink[line.box.y : line.box.bottom, line.box.x : line.box.right]
                hit = covered[line.box.y : line.box.bottom, line.box.x : line.box.right][region]
                keys = ["all", f"size {line.size}", *buckets[1:]]
                readable = line.identifying and line.size >= 12 and spec.contrast >= 0.5
                if readable:
                    keys.append("READABLE IDENTIFYING")
                if readable and hit.mean() < 0.95:
                    scores["all"].missed.append(
                        f"seed {spec.seed} {spec.background} {spec.font} {line.size}px "
                        f"contrast {spec.contrast} {spec.transfer_syntax.name}: "
                        f"{hit.mean():.0%} covered"
                    )
                for key in set(keys):
                    s = scores[key]
                    s.lines += 1
                    s.found += int(hit.mean() >= 0.95)
                    s.ink += int(region.sum())
                    s.ink_covered += int(hit.sum())
            for detection in report.found:
                if detection.source != "ocr":
                    continue
                box = detection.box
                touched = bool(truth[box.y : box.bottom, box.x : box.right].any())
                for key in buckets:
                    scores[key].ocr_boxes += 1
                    scores[key].ocr_true += int(touched)
            # Leaks: OCR of the redacted output must not read identifying words.
            gray = ocr.to_gray8(out_frames[report.frame].squeeze())
            read = " ".join(w.text.upper() for w in ocr.find_words(gray))
            for line in lines:
                if not line.identifying:
                    continue
                for word in line.text.replace(",", " ").split():
                    if len(word) >= 3 and word.upper() in read:
                        scores["all"].leaks += 1
                        scores["all"].leaked_words.append(f"{spec.seed}:{line.size}px")
    return dict(scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    missing = ocr.unavailable()
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    todo = specs(args.images, args.seed)
    total: dict[str, Score] = defaultdict(Score)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for scores in pool.map(score_one, todo):
            for key, score in scores.items():
                total[key].add(score)
                total[key].leaked_words += score.leaked_words
                total[key].missed += score.missed
    wall = time.perf_counter() - started
    fonts = ", ".join(textimages.available_fonts())
    print(f"{args.images} images ({fonts}); {wall:.0f} s on {args.workers} worker(s)")
    order = sorted(total, key=lambda k: (k != "READABLE IDENTIFYING", k != "all", k))
    for key in order:
        print(total[key].row(key))
    everything = total["all"]
    print(
        f"withheld {everything.withheld} of {everything.files} files; "
        f"identifying words OCR still reads in the output: {everything.leaks}"
        + (f" ({', '.join(everything.leaked_words[:10])})" if everything.leaks else "")
    )
    print(f"pixel step: {everything.seconds / max(1, everything.files):.1f} s per file (mean)")
    for line in everything.missed:
        print(f"  missed readable identifying text: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
