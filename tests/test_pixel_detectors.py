"""Burned-in text, issue 23: the second detector (the text detection network), the evidence
that decides what is painted, lines run into texture, and the fail-closed read after
painting; and the independent corpus (``tests/data/burnedin/``, written blind) on a few of
its tuning-half files: controls byte-identical, identifying text painted, the attribute true.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import JPEGBaseline8Bit

from dicomveil import Outcome, Profile, RunConfig, run
from dicomveil.cleaners.pixels import PixelSettings
from tests.support import textimages

from .conftest import KEY

np = pytest.importorskip("numpy", reason="the pixels extra is not installed: numpy")
pytest.importorskip("PIL", reason="the pixels extra is not installed: Pillow")

import dicomveil.cleaners.pixels.clean as clean  # noqa: E402
from dicomveil.cleaners.pixels import detect, network, ocr  # noqa: E402
from dicomveil.cleaners.pixels.boxes import Box  # noqa: E402
from tests.support.scratch import scratch  # noqa: E402

MISSING = ocr.unavailable() or network.unavailable()
needs_detectors = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
CLEAN = Profile.named("ps3.15-basic").with_options(["clean-pixel-data"])
CORPUS = Path(__file__).parent / "data" / "burnedin" / "make_corpus.py"


def _run(folder: Path, inputs: list[Path]) -> Any:
    config = RunConfig(
        profile=CLEAN, key=KEY, output=folder / "out", workers=1, pixels=PixelSettings()
    )
    return run(inputs, config)


# --------------------------------------------------------------------------------------------
# The model and its provenance


def test_the_model_ships_in_the_package_with_its_provenance() -> None:
    record = network.provenance()
    assert record["licence"] == "Apache-2.0"
    assert record["package"] == "rapidocr-onnxruntime" and record["version"] == "1.4.4"
    from importlib import resources

    model = resources.files("dicomveil.cleaners.pixels").joinpath(
        "data", "text-detector", network.MODEL
    )
    assert hashlib.sha256(model.read_bytes()).hexdigest() == record["model_sha256"]
    notice = model.parent.joinpath("LICENSE").read_text(encoding="utf-8")  # type: ignore[attr-defined]
    assert "Apache License, Version 2.0" in notice


@needs_detectors
def test_the_network_finds_lines_of_text_and_nothing_on_flat_ground() -> None:
    image = textimages.make(textimages.Spec(rows=160, columns=256, sizes=(14,), seed=5))
    frame = ocr.to_gray8(image.dataset.pixel_array)
    regions = network.find_regions(frame)
    for line in image.lines:
        assert any(
            r.x <= line.box.x + 2
            and r.y <= line.box.y + 2
            and r.x + r.width >= line.box.right - 2
            and r.y + r.height >= line.box.bottom - 2
            for r in regions
        ) or any(r.y <= line.box.y + 2 and r.y + r.height >= line.box.bottom - 2 for r in regions)
    flat = np.full((160, 256), 20, dtype=np.uint8)
    assert network.find_regions(flat) == []


@needs_detectors
def test_text_on_the_last_rows_is_found() -> None:
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.new("L", (320, 200), 10)
    font = ImageFont.truetype("DejaVuSans.ttf", 10)
    ImageDraw.Draw(picture).text((4, 189), "DOE JOHN 19510829", fill=200, font=font)
    regions = network.find_regions(np.asarray(picture))
    assert any(r.y + r.height >= 197 and r.x <= 10 for r in regions), regions


# --------------------------------------------------------------------------------------------
# Evidence: what is painted


def _region(x: int, y: int, w: int, h: int, score: float) -> network.Region:
    return network.Region(x, y, w, h, score)


def test_a_blob_of_anatomy_is_not_a_line_of_text() -> None:
    blob = _region(10, 10, 120, 110, 0.97)  # scores like text, shaped like an organ
    words, regions = detect.evidence([], [blob], rows=480)
    assert regions == [] and words == []


def test_a_sure_line_running_upwards_or_slanting_is_painted() -> None:
    """Text turned 90 or 270 degrees (a label along an ultrasound's side), or slanted, is a
    tall or oblique region the network is sure of: painted (a black-box test found such
    lines left, under BurnedInAnnotation NO); a thin upright edge, a fair one and a blob
    are not."""
    upright = _region(88, 215, 23, 178, 0.95)
    slanted = network.Region(0, 93, 160, 151, 0.88, length=133.0, thickness=8.0)
    edge = _region(300, 10, 3, 200, 0.97)
    fair = _region(40, 215, 20, 150, 0.6)
    blob = network.Region(10, 10, 120, 110, 0.97, length=120.0, thickness=100.0)
    _, regions = detect.evidence([], [upright, slanted, edge, fair, blob], rows=400, columns=400)
    assert regions == [upright, slanted]
    assert detect.evidence([], [upright], rows=400)[1] == [], "without the columns: as before"


def test_a_sure_region_alone_is_painted_a_fair_one_needs_a_word() -> None:
    sure = _region(10, 10, 120, 14, 0.9)
    fair = _region(10, 40, 120, 14, 0.55)
    words, regions = detect.evidence([], [sure, fair], rows=480)
    assert regions == [sure]
    word = ocr.Word(20, 42, 40, 10, 48.0, "Pia")
    words, regions = detect.evidence([word], [sure, fair], rows=480)
    assert regions == [sure, fair] and words == [word]


def test_a_fair_region_beside_a_painted_line_is_painted_too() -> None:
    name = _region(484, 509, 56, 17, 0.82)  # "Halvorsen": sure
    title = _region(465, 511, 16, 11, 0.56)  # "Dr.": fair, on the same line, close by
    after = _region(552, 510, 30, 15, 0.6)  # fair, on from "Dr." through the name: chained
    far = _region(700, 510, 30, 15, 0.6)  # fair, on the same row but far away
    below = _region(484, 540, 56, 15, 0.6)  # fair, another line
    _, regions = detect.evidence([], [far, after, below, title, name], rows=600)
    assert regions == [name, after, title]  # top to bottom
    _, alone = detect.evidence([], [title, after, far], rows=600)
    assert alone == [], "nothing sure on the frame: fair regions alone stay unpainted"


def test_frames_are_read_in_order_whatever_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    class Slow:
        def frame(self, index: int, gray: Any, colour: Any) -> detect.FrameReport:
            time.sleep(0.02 * (index % 3))  # later frames finish first
            return detect.FrameReport(index, (), ())

    frames = [(i, np.full((4, 4), i, np.uint8), None) for i in range(11)]
    for threads in ("1", "3"):
        monkeypatch.setenv("DICOMVEIL_FRAME_THREADS", threads)
        read = list(clean._read_all(Slow(), iter(frames)))  # type: ignore[arg-type]
        assert [r.frame for _, r in read] == list(range(11))
        assert all(int(g[0, 0]) == r.frame for g, r in read)


def test_a_word_alone_needs_confidence_and_letters() -> None:
    sure = ocr.Word(5, 5, 60, 12, 91.0, "SMITH")
    unsure = ocr.Word(5, 30, 60, 12, 60.0, "SMITH")
    short = ocr.Word(5, 50, 20, 12, 95.0, "Pi")
    words, _ = detect.evidence([sure, unsure, short], [], rows=480)
    assert words == [sure]


def test_a_line_runs_on_into_texture_not_into_flat_ground() -> None:
    rng = np.random.default_rng(0)
    gray = np.full((100, 300), 5, dtype=np.uint8)
    gray[:, 150:] = rng.integers(0, 255, size=(100, 150), dtype=np.uint8)  # speckle
    into = detect.into_texture([Box(40, 10, 100, 15)], gray)[0]
    assert into.right > 150 and into.right <= 140 + 4 * 15 + 1
    flat = detect.into_texture([Box(10, 60, 60, 15)], gray)[0]
    assert flat == Box(10, 60, 60, 15)


# --------------------------------------------------------------------------------------------
# Fail closed: the output is read again


def _jpeg_image(tmp_path: Path) -> Path:
    spec = textimages.Spec(
        rows=160, columns=256, sizes=(14,), seed=7, transfer_syntax=JPEGBaseline8Bit
    )
    return textimages.make(spec).write(tmp_path / "in" / "us.dcm")


@needs_detectors
def test_text_found_again_after_painting_is_painted_then_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = textimages.make(textimages.Spec(rows=160, columns=256, sizes=(14,), seed=7))
    path = image.write(tmp_path / "in" / "us.dcm")
    calls: list[int] = []
    real = clean._still_found

    def once_more(*args: Any) -> dict[int, tuple[Box, ...]]:
        calls.append(1)
        if len(calls) == 1:
            return {0: (Box(200, 140, 20, 10),)}  # "found" where nothing was painted
        return real(*args)

    monkeypatch.setattr(clean, "_still_found", once_more)
    summary = _run(tmp_path, [path])
    assert summary.count(Outcome.WRITTEN) == 1, [r.reason for r in summary.results]
    out = dcmread(summary.written[0].output)
    assert out.BurnedInAnnotation == "NO"
    assert (out.pixel_array[140:150, 200:220] == 0).all(), "the second round painted it"
    assert len(calls) == 2


@needs_detectors
def test_text_that_stays_after_painting_withholds_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _jpeg_image(tmp_path)
    rounds: list[dict[str, Any]] = []

    def always(
        replacement: Any, full: Any, image: Any, redactions: Any, settings: Any, frames: Any
    ) -> Any:
        rounds.append({"boxes": sum(len(b) for b in redactions.values())})
        return {0: (Box(0, 0, 8, 8),)}

    monkeypatch.setattr(clean, "_still_found", always)
    summary = _run(tmp_path, [path])
    assert summary.count(Outcome.WITHHELD) == 1
    assert "still found after painting" in summary.results[0].reason
    assert len(rounds) == 3
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.dcm"))


@needs_detectors
def test_lossy_steps_are_recorded_once_whatever_the_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _jpeg_image(tmp_path)
    real = clean._still_found
    calls: list[int] = []

    def twice(*args: Any) -> Any:
        calls.append(1)
        return {0: (Box(200, 140, 20, 10),)} if len(calls) <= 2 else real(*args)

    monkeypatch.setattr(clean, "_still_found", twice)
    summary = _run(tmp_path, [path])
    out = dcmread(summary.written[0].output)
    assert out.LossyImageCompression == "01"
    methods = list(out.LossyImageCompressionMethod)
    assert methods.count("ISO_10918_1") == 2, methods  # the source's step, and ours: once


@needs_detectors
def test_each_round_paints_the_input_not_the_round_before(tmp_path: Path) -> None:
    """Reading the output again leaves the input's pixel data as it was: a second round
    paints and encodes the input, not the JPEG the first round made (a JPEG re-compressed
    once more, read differently in frames nothing new was painted in)."""
    from dicomveil.cleaners.pixels.image import PixelImage, read_full
    from dicomveil.cleaners.pixels.redact import redact
    from dicomveil.io import read_source

    source = read_source(_jpeg_image(tmp_path))
    full = read_full(source)
    image = PixelImage.of(full, source.transfer_syntax)
    before = bytes(full.PixelData)
    painted: dict[int, tuple[Box, ...]] = {0: (Box(10, 10, 40, 20),)}
    replacement = redact(source, full, image, painted, fill=None, jpeg_quality=90)
    assert replacement.data != before
    clean._still_found(replacement, full, image, painted, PixelSettings(), {0})
    assert bytes(full.PixelData) == before
    assert full["PixelData"].is_undefined_length


@needs_detectors
def test_later_rounds_read_only_the_frames_painted_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = textimages.Spec(rows=160, columns=256, frames=3, sizes=(14,), seed=7)
    path = textimages.make(spec).write(tmp_path / "in" / "cine.dcm")
    real = clean._still_found
    asked: list[set[int]] = []

    def once_more(*args: Any) -> dict[int, tuple[Box, ...]]:
        asked.append(set(args[-1]))
        found = real(*args)
        return {1: (Box(200, 140, 20, 10),)} if len(asked) == 1 else found

    monkeypatch.setattr(clean, "_still_found", once_more)
    summary = _run(tmp_path, [path])
    assert summary.count(Outcome.WRITTEN) == 1, [r.reason for r in summary.results]
    assert asked == [{0, 1, 2}, {1}]  # every painted frame, then the one painted anew
    out = dcmread(summary.written[0].output).pixel_array
    assert (out[1, 140:150, 200:220] == 0).all()


# --------------------------------------------------------------------------------------------
# The independent corpus (tuning half only: the held-out half is for bench_ocr.py)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    with scratch(tmp_path_factory, "burnedin") as folder:
        command = [sys.executable, str(CORPUS), str(folder)]
        subprocess.run(command, check=True, capture_output=True)
        yield folder, json.loads((folder / "key.json").read_text(encoding="utf-8"))


@pytest.mark.slow
@needs_detectors
@pytest.mark.parametrize(
    "case",
    ["control-cine", "control-jpeg2000-rgb", "text-rgb-cine", "text-mono1", "text-jpeg"],
)
def test_corpus_files(tmp_path: Path, corpus: tuple[Path, dict[str, Any]], case: str) -> None:
    folder, key = corpus
    entry = _pick(key, case)
    source = tmp_path / "in" / entry["file"]
    source.parent.mkdir()
    shutil.copy2(folder / entry["file"], source)
    summary = _run(tmp_path, [source])
    assert summary.count(Outcome.WRITTEN) == 1, [r.reason for r in summary.results]
    before, after = dcmread(source), dcmread(summary.written[0].output)
    assert after.BurnedInAnnotation == "NO"
    if entry["control"]:
        assert after.PixelData == before.PixelData
        assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
        return
    frames = after.pixel_array if int(entry["frames"]) > 1 else after.pixel_array[np.newaxis]
    lossy = after.file_meta.TransferSyntaxUID.is_compressed or entry["lossy"]
    top = 255 if frames.dtype == np.uint8 else int(np.iinfo(frames.dtype).max)
    for box in entry["boxes"]:
        if box["identifying"]:
            x0, y0, x1, y1 = box["ink"]
            region = frames[box["frame"], y0:y1, x0:x1].astype(np.int64)
            spread = int(region.max() - region.min())
            assert spread <= (0.08 * top if lossy else 0), f"a box of {box['kind']} not painted"


def _pick(key: dict[str, Any], case: str) -> dict[str, Any]:
    tune: list[dict[str, Any]] = [f for f in key["files"] if f["split"] == "tune"]
    rules: dict[str, Callable[[dict[str, Any]], bool]] = {
        "control-cine": lambda f: f["control"] and f["frames"] > 1 and f["family"] == "us",
        "control-jpeg2000-rgb": lambda f: f["control"] and f["samples_per_pixel"] == 3,
        "text-rgb-cine": lambda f: not f["control"] and f["variant"] == "us_rgb_cine",
        "text-mono1": lambda f: not f["control"] and f["photometric"] == "MONOCHROME1",
        "text-jpeg": lambda f: not f["control"] and f["transfer_syntax"] == "jpeg_baseline",
    }
    found = [f for f in tune if rules[case](f)]
    assert found, f"no tuning-half file for {case}"
    return found[0]
