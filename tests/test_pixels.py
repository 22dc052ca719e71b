"""clean-pixel-data: burned-in text found (header, rules, Tesseract) and blacked out.

The images: text rendered by Pillow at known positions (:mod:`tests.support.textimages`) in
every transfer syntax dicomveil re-encodes, and the ultrasounds with burned-in text of
pydicom-data (``US1_*``, ``gdcm-US-ALOKA-16*``) and deid-data (``GREYSCALE_IMAGE``,
``RGB_IMAGE``). OCR tests need Tesseract and the pixels extra and skip, saying why, without
them. Images are small and few: Tesseract takes about a second per frame.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from dicomveil import Key, Option, Outcome, Profile, RunConfig, RunSummary, run
from dicomveil.cleaners.pixels import (
    Box,
    PixelRules,
    PixelSettings,
    clean_pixels,
    header_signals,
    text_line_boxes,
)
from dicomveil.errors import ProfileError
from dicomveil.io import read_source, write_output
from dicomveil.standard.risks import Risk
from tests.support.commands import cli, pydicom_data_folder

from .conftest import KEY, EngineFactory

np = pytest.importorskip("numpy", reason="the pixels extra is not installed: numpy")
pytest.importorskip("PIL", reason="the pixels extra is not installed: Pillow")

from dicomveil.cleaners.pixels import network, ocr  # noqa: E402
from tests.support import textimages  # noqa: E402  (needs numpy and Pillow)

OCR_MISSING = ocr.unavailable() or network.unavailable()
needs_ocr = pytest.mark.skipif(OCR_MISSING is not None, reason=OCR_MISSING or "")
CLEAN = Profile.named("ps3.15-basic").with_options(["clean-pixel-data"])


def _run(folder: Path, inputs: list[Path], profile: Profile = CLEAN, **pixels: Any) -> RunSummary:
    return run(
        inputs,
        RunConfig(
            profile=profile,
            key=KEY,
            output=folder / "out",
            workers=1,
            pixels=PixelSettings(**pixels),
        ),
    )


def _image(tmp_path: Path, name: str = "in.dcm", **spec: Any) -> tuple[textimages.TextImage, Path]:
    settings: dict[str, Any] = {"rows": 112, "columns": 192, "sizes": (16,), "seed": 3}
    settings.update(spec)
    image = textimages.make(textimages.Spec(**settings))
    return image, image.write(tmp_path / "in" / name)


def _covered(image: textimages.TextImage, output: Dataset, fill: int = 0) -> list[str]:
    """Lines whose ink is not blacked out in the output (by their size, never the text)."""
    frames = output.pixel_array.reshape(len(image.ink), *image.ink.shape[1:], -1)
    missed = []
    for line in image.lines:
        ink = image.ink[line.frame][line.box.y : line.box.bottom, line.box.x : line.box.right]
        region = frames[line.frame][line.box.y : line.box.bottom, line.box.x : line.box.right]
        painted = (np.abs(region.astype(np.int32) - fill) <= 6).all(axis=-1)
        if painted[ink].mean() < 0.98:
            missed.append(f"frame {line.frame} line of {line.size}px: {painted[ink].mean():.0%}")
    return missed


def _leaks(image: textimages.TextImage, output: Dataset) -> list[str]:
    """Identifying words (3+ characters) Tesseract still reads in the output."""
    frames = output.pixel_array.reshape(len(image.ink), *image.ink.shape[1:], -1)
    leaks = []
    for index, frame in enumerate(frames):
        read = " ".join(w.text.upper() for w in ocr.find_words(ocr.to_gray8(frame.squeeze())))
        for line in image.lines:
            if line.frame == index and line.identifying:
                words = line.text.replace(",", " ").split()
                leaks += [f"frame {index}" for w in words if len(w) >= 3 and w.upper() in read]
    return leaks


def _written(summary: RunSummary) -> Path:
    assert summary.count(Outcome.WRITTEN) == 1, [r.reason for r in summary.results]
    output = summary.written[0].output
    assert output is not None
    return output


# --------------------------------------------------------------------------------------------
# The option, header signals, rules (no OCR)


def test_the_option_is_ps315_clean_pixel_data() -> None:
    option = Option.parse("clean-pixel-data")
    assert option is Option.CLEAN_PIXEL_DATA
    assert option.code == ("113101", "Clean Pixel Data Option")
    assert Option.parse("CleanPixelDataOption") is option


def test_without_the_option_nothing_changes(make_engine: EngineFactory, tmp_path: Path) -> None:
    _, path = _image(tmp_path)
    source = read_source(path)
    outcome = clean_pixels(source, make_engine())
    assert not outcome.checked and outcome.replacement is None and outcome.withheld is None
    result = make_engine().deidentify(source.dataset, has_pixel_data=True)
    assert result.withheld is Risk.POSSIBLE_BURNED_IN


def test_the_engine_alone_still_withholds_uncleaned_pixels(make_engine: EngineFactory) -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.4.1"
    ds.PixelData = b"\x00\x00"
    ds.BurnedInAnnotation = "YES"
    result = make_engine("ps3.15-basic", "clean-pixel-data").deidentify(ds)
    assert result.withheld is Risk.BURNED_IN_ANNOTATION
    assert "pixels were not checked" in result.withheld_detail
    # The option looks wider than the Basic Profile: X-ray angiography, secondary images.
    del ds.BurnedInAnnotation
    ds.Modality = "XA"
    assert make_engine().deidentify(ds).dataset is not None
    assert make_engine("ps3.15-basic", "clean-pixel-data").deidentify(ds).dataset is None


def test_cleaned_files_record_the_option_code(make_engine: EngineFactory) -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.4.2"
    ds.Modality = "CT"
    out = make_engine("ps3.15-basic", "clean-pixel-data").deidentify(ds).dataset
    assert out is not None
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert "113101" in codes


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"Modality": "US"}, "ultrasound"),
        ({"Modality": "ES"}, "endoscopy"),
        ({"Modality": "CT", "ImageType": ["DERIVED", "SECONDARY"]}, "ImageType SECONDARY"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "secondary capture"),
        ({"Modality": "CT", "BurnedInAnnotation": "YES"}, "BurnedInAnnotation YES"),
        (
            {"Modality": "OT", "Manufacturer": "ALOKA CO., LTD.", "Rows": 480, "Columns": 640}
            | {"ManufacturerModelName": "SSD-4000"},
            "known text regions (rule aloka-ssd-4000-640x480)",
        ),
    ],
)
def test_header_signals(attributes: dict[str, Any], expected: str) -> None:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    assert expected in header_signals(ds)


def test_a_plain_ct_has_no_signal() -> None:
    ds = Dataset()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    assert header_signals(ds) == ()


def test_bundled_rules_load_and_match() -> None:
    rules = PixelRules.bundled()
    assert len(rules.rules) >= 4
    ds = Dataset()
    ds.Manufacturer, ds.ManufacturerModelName = "ALOKA CO., LTD.", "SSD-4000"
    ds.Rows, ds.Columns = 480, 640
    assert [r.name for r in rules.matching(ds)] == ["aloka-ssd-4000-640x480"]
    ds.Rows = 600  # another image size: another layout
    assert rules.matching(ds) == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = 2\n", "unsupported version"),
        ("colour = 1\n", "unknown key 'colour'"),
        ('[[rule]]\nname = "a"\nboxes = [{x=0, y=0, width=1, height=1}]\n', "names a manufacturer"),
        ('[[rule]]\nname = "a"\nmodel = "X"\nboxes = []\n', "non-empty"),
        (
            '[[rule]]\nname = "a"\nmodel = "X"\nrows = 10\ncolumns = 10\n'
            "boxes = [{x=5, y=0, width=6, height=1}]\n",
            "outside the image",
        ),
        ('[[rule]]\nname = "a"\nmodel = "X"\nboxes = [{x=0, y=0, width=0, height=1}]\n', "> 0"),
        ('[[rule]]\nname = "a"\nmodel = "X"\nboxes = [{x=0, y=0, w=1, height=1}]\n', "'w'"),
        (
            '[[rule]]\nname = "a"\nmodel = "X"\nzoom = 1\nboxes = [{x=0,y=0,width=1,height=1}]\n',
            "'zoom'",
        ),
        (
            '[[rule]]\nname = "a"\nmodel = "X"\nboxes = [{x=0,y=0,width=1,height=1}]\n' * 2,
            "duplicate rule name",
        ),
        ("[[rule]\n", "not valid TOML"),
    ],
)
def test_invalid_rules_are_refused_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=r"rules\.toml") as info:
        PixelRules.from_toml(text, "rules.toml")
    assert message in str(info.value)


def test_words_on_a_line_become_one_padded_box() -> None:
    words = [ocr.Word(10, 20, 30, 12, 90.0, "DOE,"), ocr.Word(46, 21, 28, 11, 90.0, "JANE")]
    far = ocr.Word(150, 20, 20, 12, 90.0, "L12")
    boxes = text_line_boxes([*words, far], 2, 200, 100)
    assert Box(7, 17, 70, 18) in boxes  # the gap between the words is covered too
    assert len(boxes) == 2


def test_replacement_pixel_data_is_written(tmp_path: Path) -> None:
    image, path = _image(tmp_path, text=False)
    source = read_source(path)
    data = bytes(len(image.dataset.PixelData))
    write_output(source, source.dataset, tmp_path / "out.dcm", pixels=data)
    assert dcmread(tmp_path / "out.dcm").PixelData == data


# --------------------------------------------------------------------------------------------
# Real OCR: generated images in every transfer syntax


SYNTAXES = [
    pytest.param(ExplicitVRLittleEndian, False, 8, id="native-grey"),
    pytest.param(ExplicitVRLittleEndian, True, 8, id="native-rgb"),
    pytest.param(RLELossless, False, 16, id="rle-16bit"),
    pytest.param(JPEGLSLossless, False, 8, id="jpeg-ls"),
    pytest.param(JPEG2000Lossless, True, 8, id="jpeg2000-lossless-rgb"),
    pytest.param(JPEGBaseline8Bit, True, 8, id="jpeg-baseline-rgb"),
]


@needs_ocr
@pytest.mark.parametrize(("syntax", "colour", "bits"), SYNTAXES)
def test_text_is_found_and_blacked_out(
    tmp_path: Path, syntax: UID, colour: bool, bits: int
) -> None:
    image, path = _image(
        tmp_path,
        transfer_syntax=syntax,
        colour=colour,
        bits=bits,
        background="speckle" if colour else "gradient",
        font="DejaVuSans" if not colour else textimages.available_fonts()[-1],
    )
    assert image.lines
    source_ds = dcmread(path)
    summary = _run(tmp_path, [path])
    out = dcmread(_written(summary))
    # Same transfer syntax, geometry, photometric interpretation and bit depth.
    assert out.file_meta.TransferSyntaxUID == syntax
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored"):
        assert out[keyword].value == source_ds[keyword].value, keyword
    assert out.PhotometricInterpretation == source_ds.PhotometricInterpretation
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    # Every line of text (all >= 14 px) is black; OCR reads no identifying word back.
    assert _covered(image, out) == []
    assert _leaks(image, out) == []
    before = source_ds.pixel_array
    after = out.pixel_array
    changed = np.argwhere((before != after).reshape(*before.shape[:2], -1).any(axis=-1))
    if syntax == JPEGBaseline8Bit:
        assert out.LossyImageCompression == "01"
        assert list(out.LossyImageCompressionMethod) == ["ISO_10918_1", "ISO_10918_1"]
        assert len(out.LossyImageCompressionRatio) == 2
    else:
        # Lossless: a pixel either is as it was or has been painted black.
        painted = after.reshape(*after.shape[:2], -1)[tuple(changed.T)]
        assert len(changed) and (painted == 0).all()
        assert out.get("LossyImageCompression", "00") == "00"


@needs_ocr
def test_uncompressed_pixels_change_only_inside_the_boxes(tmp_path: Path) -> None:
    _, path = _image(tmp_path, background="dark", bits=16)
    source = read_source(path)
    from dicomveil import Engine, Pseudonymizer

    engine = Engine(CLEAN.compile(), Pseudonymizer(KEY))
    outcome = clean_pixels(source, engine, PixelSettings(fill=7))
    assert outcome.replacement is not None and not outcome.replacement.encapsulated
    before = np.frombuffer(dcmread(path).PixelData, dtype="<u2").reshape(112, 192)
    after = np.frombuffer(outcome.replacement.data, dtype="<u2").reshape(112, 192)
    inside = np.zeros(before.shape, dtype=bool)
    for box in outcome.frames[0].redacted:
        inside[box.y : box.bottom, box.x : box.right] = True
    assert (after[inside] == 7).all(), "the configured fill value"
    assert (after[~inside] == before[~inside]).all(), "every other pixel is unchanged"
    assert source.dataset.BurnedInAnnotation == "NO"


@needs_ocr
def test_every_frame_of_a_multiframe_image(tmp_path: Path) -> None:
    image, path = _image(tmp_path, frames=3, background="dark", transfer_syntax=RLELossless)
    clocks = {line.box for line in image.lines if "/" in line.text}
    assert len(clocks) == 3, "the clock moves between frames"
    out = dcmread(_written(_run(tmp_path, [path])))
    assert int(out.NumberOfFrames) == 3
    assert _covered(image, out) == []


@needs_ocr
def test_text_free_pixels_stay_byte_identical(tmp_path: Path) -> None:
    _, path = _image(tmp_path, text=False, background="gradient")
    out_path = _written(_run(tmp_path, [path]))
    assert dcmread(out_path).PixelData == dcmread(path).PixelData
    assert dcmread(out_path).BurnedInAnnotation == "NO"


@needs_ocr
def test_burned_in_yes_without_text_found_is_withheld(tmp_path: Path) -> None:
    _, path = _image(tmp_path, text=False, background="gradient")
    ds = dcmread(path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(path)
    summary = _run(tmp_path, [path])
    assert summary.count(Outcome.WITHHELD) == 1
    assert "no text was found" in summary.results[0].reason


def test_ocr_missing_withholds_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = _image(tmp_path)
    monkeypatch.setattr(ocr, "unavailable", lambda: "OCR is not available (test)")
    summary = _run(tmp_path, [path])
    assert summary.count(Outcome.WITHHELD) == 1
    assert summary.results[0].reason == "clean-pixel-data: OCR is not available (test)"
    # A profile that allows the risk lets the file through, pixels unchanged.
    allowing = tmp_path / "allow.toml"
    allowing.write_text(
        'extends = "ps3.15-basic"\noptions = ["clean-pixel-data"]\n'
        'allow = ["possible-burned-in-annotation"]\n'
    )
    summary = _run(tmp_path / "allowed", [path], Profile.from_file(allowing))
    assert dcmread(_written(summary)).PixelData == dcmread(path).PixelData


# --------------------------------------------------------------------------------------------
# Real ultrasounds with burned-in text


def _deid_data(name: str) -> Path | None:
    try:
        import deid_data
    except ImportError:
        return None
    path = Path(deid_data.__file__).parent / "data" / "ultrasounds" / name
    return path if path.is_file() else None


def _pydicom_data(name: str) -> Path | None:
    folder = pydicom_data_folder()
    path = folder / name if folder is not None else None
    return path if path is not None and path.is_file() else None


REAL = [
    # file, identifying strings burned in (fake PHI of the test data; OCR must not read them)
    pytest.param(_deid_data, "GREYSCALE_IMAGE.dcm", ["00079241539", "08/29/1951"], id="deid-grey"),
    pytest.param(_deid_data, "RGB_IMAGE.dcm", ["ZZZDOWNTIME", "00047431395"], id="deid-rgb"),
    pytest.param(_pydicom_data, "US1_J2KR.dcm", ["BAPTIST"], id="US1-j2k-lossless"),
    pytest.param(_pydicom_data, "gdcm-US-ALOKA-16_big.dcm", ["WESTWAY"], id="aloka-palette-be"),
]


@needs_ocr
@pytest.mark.parametrize(("where", "name", "identifying"), REAL)
def test_real_ultrasounds(tmp_path: Path, where: Any, name: str, identifying: list[str]) -> None:
    path = where(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install deid-data pydicom-data)")
    local = tmp_path / "in" / name
    local.parent.mkdir()
    shutil.copyfile(path, local)
    summary = _run(tmp_path, [local], preview_dir=tmp_path / "previews")
    out = dcmread(_written(summary))
    assert out.BurnedInAnnotation == "NO"
    source = dcmread(local)
    assert out.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert out.PhotometricInterpretation == source.PhotometricInterpretation
    frame = out.pixel_array
    if out.PhotometricInterpretation == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        frame = apply_color_lut(frame, out)
    read = " ".join(w.text.upper() for w in ocr.find_words(ocr.to_gray8(frame)))
    for text in identifying:
        assert text not in read, "an identifying string is still readable"
    assert list((tmp_path / "previews").glob("*.png")), "a QC preview per redacted frame"


# --------------------------------------------------------------------------------------------
# explain, previews and validity


@needs_ocr
def test_explain_reports_boxes_not_text(tmp_path: Path, key: Key) -> None:
    image, path = _image(tmp_path, background="dark")
    keyfile = tmp_path / "k.key"
    assert cli("keygen", keyfile).exit_code == 0
    result = cli("explain", "--key", keyfile, "-o", "clean-pixel-data", path)
    assert result.exit_code == 0, result.output
    assert "pixels: redacted" in result.stdout and "x=" in result.stdout
    for line in image.lines:
        for word in line.text.replace(",", " ").split():
            if len(word) >= 4:
                assert word not in result.stdout, "recognised text only with --show-values"
    shown = cli("explain", "--key", keyfile, "-o", "clean-pixel-data", "--show-values", path)
    assert any(w in shown.stdout for line in image.lines for w in line.text.split())


def test_preview_dir_must_be_outside_the_output(tmp_path: Path) -> None:
    _, path = _image(tmp_path)
    out = tmp_path / "out"
    keyfile = tmp_path / "k.key"
    assert cli("keygen", keyfile).exit_code == 0
    result = cli(
        "run", "--key", keyfile, "-o", "clean-pixel-data", "--preview-dir", out / "qc", path, out
    )
    assert result.exit_code == 2
    assert "--preview-dir must be outside" in result.output


@needs_ocr
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed")
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEGBaseline8Bit])
def test_redacted_outputs_have_no_new_dciodvfy_errors(tmp_path: Path, syntax: UID) -> None:
    from .test_dciodvfy import dciodvfy_errors

    _, path = _image(tmp_path, transfer_syntax=syntax, colour=True, background="dark")
    allowing = tmp_path / "allow.toml"
    allowing.write_text('extends = "ps3.15-basic"\nallow = ["possible-burned-in-annotation"]\n')
    plain = _written(_run(tmp_path / "plain", [path], Profile.from_file(allowing)))
    cleaned = _written(_run(tmp_path / "clean", [path]))
    new = set(dciodvfy_errors(cleaned)) - set(dciodvfy_errors(plain))
    assert not new, new


def _gray(image: textimages.TextImage) -> Any:
    return ocr.to_gray8(np.asarray(image.dataset.pixel_array))


@pytest.mark.parametrize("background", ["noise", "speckle"])
def test_text_regions_find_text_on_noise_that_ocr_may_not_read(background: str) -> None:
    """Privacy first: rows of text-like marks are redacted even when Tesseract can't read
    them; every identifying line of readable size lies inside a found region."""
    image = textimages.make(textimages.Spec(seed=5, background=background, sizes=(14, 16)))
    gray = _gray(image)
    assert ocr.noise_level(gray) > ocr.OcrSettings().noise_threshold
    regions = ocr.text_regions(gray, float(np.median(gray)) < 128.0, ocr.OcrSettings())
    assert regions
    for line in (line for line in image.lines if line.identifying):
        box = line.box
        centre = (box.x + box.width / 2, box.y + box.height / 2)
        assert any(
            r.x <= centre[0] <= r.x + r.width and r.y <= centre[1] <= r.y + r.height
            for r in regions
        ), line.text


@pytest.mark.parametrize("background", ["noise", "speckle"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_text_regions_stay_quiet_on_text_free_noise(background: str, seed: int) -> None:
    image = textimages.make(textimages.Spec(seed=seed, background=background, text=False))
    gray = _gray(image)
    regions = ocr.text_regions(gray, float(np.median(gray)) < 128.0, ocr.OcrSettings())
    assert len(regions) <= 1, "at most a stray region on an image without text"
