"""Burned-in text: find it and black it out in the pixels (PS3.15 Clean Pixel Data Option).

Ultrasound, secondary captures, screenshots and some X-ray and endoscopy images carry names,
IDs and dates written into the pixels. With the ``clean-pixel-data`` option (CID 7050 code
113101) such an image is kept only after this module has looked at every frame and blacked
out what it found:

1. **Header signals** (:func:`header_signals`): Burned In Annotation, modality, SOP class,
   Image Type, conversion type and devices with known text regions decide whether an image
   is looked at. Images without any signal are left to the engine as before.
2. **Rectangle rules** (:class:`PixelRules`, ``data/pixel-rules.toml``, per manufacturer,
   model and image size, as in CTP's pixel anonymizer scripts) give regions that are always
   blacked out on matching images.
3. **OCR** (:mod:`dicomveil.cleaners.pixels.ocr`, Tesseract) of every frame finds the
   rest; each word's box is padded.
4. **Redaction** fills every box of every frame with black (or a configured value) in the
   stored pixel values. Photometric interpretation, bit depth and geometry are kept.
   Uncompressed data is changed in place (only the boxes' bytes differ); RLE, JPEG-LS and
   JPEG 2000 lossless are decoded and re-encoded losslessly in the same transfer syntax and
   checked by decoding again; JPEG baseline and lossy JPEG 2000 are re-encoded lossily and
   the Lossy Image Compression attributes record the extra step (PS3.3 C.7.6.1.1.5).

Policy: Burned In Annotation becomes NO only when this has succeeded. Text found but not
redactable (no encoder for the transfer syntax, an unsupported pixel layout), pixel data
that cannot be decoded, OCR that is not installed, or an image whose header says YES but
where nothing was found, withhold the file with a stated reason (unless the profile allows
the risk). An image with no text keeps its pixel data byte-identical.

Reports (:class:`PixelOutcome`) hold boxes per frame, never the recognised text outside the
object itself (``Detection.text`` is shown with ``--show-values`` only: it is PHI).
"""

from __future__ import annotations

import io as _io
import tomllib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicomveil.cleaners.pixels import ocr
from dicomveil.errors import ProfileError
from dicomveil.io import PixelSource, SourceFile
from dicomveil.standard.options import Option
from dicomveil.standard.risks import Risk

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from dicomveil.engine import Engine

_BURNED_IN = 0x00280301
_NATIVE = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)
_LOSSLESS_ENCODED = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLSNearLossless})
_JPEG_LOSSY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})
# What a modality says about text in the pixels.
_MODALITIES = {
    "US": "ultrasound",
    "IVUS": "intravascular ultrasound",
    "SC": "secondary capture",
    "OT": "modality OT",
    "XA": "X-ray angiography",
    "RF": "radio fluoroscopy",
    "ES": "endoscopy",
    "XC": "external-camera photograph",
    "GM": "general microscopy",
    "SM": "slide microscopy",
    "DOC": "document",
    "OP": "ophthalmic photograph",
}
_SOP_PREFIXES = (
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture"),
    ("1.2.840.10008.5.1.4.1.1.77.1", "visible light image"),
    ("1.2.840.10008.5.1.4.1.1.6.", "ultrasound"),
    ("1.2.840.10008.5.1.4.1.1.3.1", "ultrasound multi-frame"),
    ("1.2.840.10008.5.1.4.1.1.12.", "X-ray angiography or fluoroscopy"),
)
_IMAGE_TYPE_WORDS = ("SECONDARY", "SCREEN", "CAPTURE")
_PREVIEW_COLOURS = {"ocr": (255, 0, 0), "rule": (255, 160, 0)}


# --------------------------------------------------------------------------------------------
# Boxes and rectangle rules


@dataclass(frozen=True, slots=True, order=True)
class Box:
    """A rectangle of pixels: top-left corner (from 0), width and height."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.x < 0 or self.y < 0 or self.width <= 0 or self.height <= 0:
            raise ValueError("a box has x, y >= 0 and width, height > 0")

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def padded(self, padding: int, columns: int, rows: int) -> Box:
        """Grown by ``padding`` on every side, clipped to the image."""
        x, y = max(0, self.x - padding), max(0, self.y - padding)
        right, bottom = min(columns, self.right + padding), min(rows, self.bottom + padding)
        return Box(x, y, max(1, right - x), max(1, bottom - y))

    def clipped(self, columns: int, rows: int) -> Box | None:
        right, bottom = min(columns, self.right), min(rows, self.bottom)
        if right <= self.x or bottom <= self.y:
            return None
        return Box(self.x, self.y, right - self.x, bottom - self.y)

    def text(self) -> str:
        return f"x={self.x} y={self.y} w={self.width} h={self.height}"


@dataclass(frozen=True)
class RectangleRule:
    """Regions of known burned-in text on the images of one kind of device."""

    name: str
    boxes: tuple[Box, ...]
    manufacturer: str = ""
    model: str = ""
    modality: str = ""
    rows: int | None = None
    columns: int | None = None
    source: str = ""

    def matches(self, ds: Dataset) -> bool:
        if self.manufacturer and self.manufacturer.lower() not in _text(ds, 0x00080070).lower():
            return False
        if self.model and self.model.lower() not in _text(ds, 0x00081090).lower():
            return False
        if self.modality and self.modality.upper() != _text(ds, 0x00080060).upper():
            return False
        if self.rows is not None and self.rows != _int(ds, 0x00280010):
            return False
        return self.columns is None or self.columns == _int(ds, 0x00280011)


_RULE_KEYS = frozenset(
    {"name", "manufacturer", "model", "modality", "rows", "columns", "boxes", "source"}
)
_BOX_KEYS = frozenset({"x", "y", "width", "height", "what"})


@dataclass(frozen=True)
class PixelRules:
    """A validated set of rectangle rules (``data/pixel-rules.toml`` and the user's)."""

    rules: tuple[RectangleRule, ...] = ()

    @classmethod
    def bundled(cls) -> PixelRules:
        return _bundled_rules()

    @classmethod
    def from_file(cls, path: str | Path) -> PixelRules:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"cannot read ({exc.strerror})", source=str(path)) from None
        return cls.from_toml(text, str(path))

    @classmethod
    def from_toml(cls, text: str, source: str) -> PixelRules:
        """Parse and validate; any unknown key or impossible box is a ProfileError."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"not valid TOML ({exc})", source=source) from None
        unknown = set(data) - {"version", "rule"}
        if unknown:
            raise ProfileError(f"unknown key {sorted(unknown)[0]!r}", source=source)
        if data.get("version", 1) != 1:
            raise ProfileError("unsupported version (expected 1)", source=source)
        raw_rules = data.get("rule", [])
        if not isinstance(raw_rules, list):
            raise ProfileError("'rule' must be an array of tables ([[rule]])", source=source)
        rules: list[RectangleRule] = []
        names: set[str] = set()
        for i, raw in enumerate(raw_rules):
            rule = _parse_rule(raw, source, f"rule[{i}]")
            if rule.name in names:
                raise ProfileError(f"duplicate rule name {rule.name!r}", source=source)
            names.add(rule.name)
            rules.append(rule)
        return cls(tuple(rules))

    def __add__(self, other: PixelRules) -> PixelRules:
        names = {r.name for r in self.rules}
        for rule in other.rules:
            if rule.name in names:
                raise ProfileError(f"rule name {rule.name!r} is already defined")
        return PixelRules(self.rules + other.rules)

    def matching(self, ds: Dataset) -> tuple[RectangleRule, ...]:
        return tuple(rule for rule in self.rules if rule.matches(ds))


def _parse_rule(raw: Any, source: str, entry: str) -> RectangleRule:
    if not isinstance(raw, dict):
        raise ProfileError("a rule is a table", source=source, entry=entry)
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ProfileError(f"unknown key {sorted(unknown)[0]!r}", source=source, entry=entry)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProfileError("'name' (a non-empty text) is required", source=source, entry=entry)
    texts: dict[str, str] = {}
    for key in ("manufacturer", "model", "modality", "source"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise ProfileError(f"'{key}' must be a text", source=source, entry=entry)
        texts[key] = value.strip()
    sizes: dict[str, int | None] = {}
    for key in ("rows", "columns"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ProfileError(f"'{key}' must be a whole number", source=source, entry=entry)
        if value is not None and value <= 0:
            raise ProfileError(f"'{key}' must be positive", source=source, entry=entry)
        sizes[key] = value
    if not (texts["manufacturer"] or texts["model"]):
        raise ProfileError(
            "a rule names a manufacturer or a model (it would match every device)",
            source=source,
            entry=entry,
        )
    raw_boxes = raw.get("boxes")
    if not isinstance(raw_boxes, list) or not raw_boxes:
        raise ProfileError("'boxes' must be a non-empty array", source=source, entry=entry)
    boxes = []
    for j, raw_box in enumerate(raw_boxes):
        where = f"{entry}.boxes[{j}]"
        if not isinstance(raw_box, dict):
            raise ProfileError("a box is a table {x, y, width, height}", source=source, entry=where)
        unknown = set(raw_box) - _BOX_KEYS
        if unknown:
            raise ProfileError(f"unknown key {sorted(unknown)[0]!r}", source=source, entry=where)
        values = []
        for key in ("x", "y", "width", "height"):
            value = raw_box.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProfileError(f"'{key}' must be a whole number", source=source, entry=where)
            values.append(value)
        try:
            box = Box(*values)
        except ValueError as exc:
            raise ProfileError(str(exc), source=source, entry=where) from None
        columns, rows = sizes["columns"], sizes["rows"]
        if (columns is not None and box.right > columns) or (
            rows is not None and box.bottom > rows
        ):
            raise ProfileError("the box lies outside the image", source=source, entry=where)
        boxes.append(box)
    return RectangleRule(
        name=name.strip(),
        boxes=tuple(boxes),
        manufacturer=texts["manufacturer"],
        model=texts["model"],
        modality=texts["modality"],
        rows=sizes["rows"],
        columns=sizes["columns"],
        source=texts["source"],
    )


@cache
def _bundled_rules() -> PixelRules:
    text = (
        resources.files("dicomveil.cleaners.pixels")
        .joinpath("data/pixel-rules.toml")
        .read_text("utf-8")
    )
    return PixelRules.from_toml(text, "dicomveil/data/pixel-rules.toml")


# --------------------------------------------------------------------------------------------
# Header signals


def header_signals(ds: Dataset, rules: PixelRules | None = None) -> tuple[str, ...]:
    """Why this image may carry burned-in text, from its header alone (no values quoted)."""
    signals: list[str] = []
    if _text(ds, _BURNED_IN).upper() == "YES":
        signals.append("BurnedInAnnotation YES")
    modality = _text(ds, 0x00080060).upper()
    if modality in _MODALITIES:
        signals.append(_MODALITIES[modality])
    sop_class = _text(ds, 0x00080016)
    for prefix, what in _SOP_PREFIXES:
        if sop_class.startswith(prefix) and what not in signals:
            signals.append(what)
    words = [str(v).upper() for v in _values(ds.get(0x00080008))]
    for word in _IMAGE_TYPE_WORDS:
        if any(word in w for w in words):
            signals.append(f"ImageType {word}")
    if _text(ds, 0x00080064):
        signals.append("ConversionType present (secondary capture)")
    for rule in (rules or PixelRules.bundled()).matching(ds):
        signals.append(f"known text regions (rule {rule.name})")
    return tuple(signals)


# --------------------------------------------------------------------------------------------
# Settings and reports


@dataclass(frozen=True)
class PixelSettings:
    """How the clean-pixel-data option works in a run (travels to worker processes)."""

    fill: int | None = None  # None: black for the photometric interpretation
    padding: int = 3  # pixels added around each OCR box
    ocr: ocr.OcrSettings = field(default_factory=ocr.OcrSettings)
    rules_file: Path | None = None  # more rules, added to the bundled ones
    preview_dir: Path | None = None  # PNG previews of redacted frames (outside the output)
    jpeg_quality: int = 95  # re-encoding lossy JPEG

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError("padding is 0 or more pixels")
        if self.fill is not None and self.fill < -(1 << 31):
            raise ValueError("fill is a stored pixel value")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality is 1 to 100")

    def rules(self) -> PixelRules:
        return _rules_for(self.rules_file)


@cache
def _rules_for(path: Path | None) -> PixelRules:
    bundled = PixelRules.bundled()
    return bundled if path is None else bundled + PixelRules.from_file(path)


@dataclass(frozen=True)
class Detection:
    """A box of text found in a frame: by OCR or by a rectangle rule."""

    box: Box
    source: str  # "ocr" or "rule NAME"
    confidence: float | None = None
    text: str = field(default="", repr=False)  # PHI: --show-values only


@dataclass(frozen=True)
class FrameReport:
    """What was found and blacked out in one frame (0-based index)."""

    frame: int
    found: tuple[Detection, ...]
    redacted: tuple[Box, ...]


@dataclass
class PixelOutcome:
    """What the pixel step did to one file."""

    checked: bool = False  # the pixels were looked at
    signals: tuple[str, ...] = ()
    frames: tuple[FrameReport, ...] = ()
    withheld: str | None = None  # why the file must not be written
    replacement: PixelSource | None = None  # the redacted pixel data, when changed
    verdict: str = "not checked"

    @property
    def boxes_found(self) -> int:
        return sum(len(f.found) for f in self.frames)

    @property
    def boxes_redacted(self) -> int:
        return sum(len(f.redacted) for f in self.frames)


class _WithholdError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# The pixel step


def clean_pixels(
    source: SourceFile, engine: Engine, settings: PixelSettings | None = None
) -> PixelOutcome:
    """The clean-pixel-data step for one input, run before the engine.

    Does nothing unless the profile has the option and the header signals possible text. On
    success it sets Burned In Annotation NO (and the lossy compression attributes when it
    re-encoded lossily) on ``source.dataset``, and returns the redacted pixel data (if any
    box was found) for :func:`dicomveil.io.write_output`. Otherwise the outcome says why the
    file is withheld.
    """
    settings = settings or PixelSettings()
    profile = engine.profile
    if profile.copy or Option.CLEAN_PIXEL_DATA not in profile.profile.options:
        return PixelOutcome()
    if not source.has_pixel_data:
        return PixelOutcome(verdict="no pixel data")
    rules = settings.rules()
    signals = header_signals(source.dataset, rules)
    if not signals:
        return PixelOutcome(verdict="no sign of burned-in text in the header: not checked")
    risk = (
        Risk.BURNED_IN_ANNOTATION
        if _text(source.dataset, _BURNED_IN).upper() == "YES"
        else Risk.POSSIBLE_BURNED_IN
    )
    outcome = PixelOutcome(checked=True, signals=signals)
    try:
        _clean(source, settings, rules, outcome, _preview_namer(source.dataset, engine, settings))
    except _WithholdError as exc:
        outcome.replacement = None
        if risk in profile.profile.allow:
            outcome.verdict = f"not cleaned, allowed by the profile ({exc})"
            return outcome
        outcome.withheld = f"clean-pixel-data: {exc}"
        outcome.verdict = f"withheld: {exc}"
    return outcome


def _preview_namer(
    ds: Dataset, engine: Engine, settings: PixelSettings
) -> Callable[[int], Path] | None:
    folder = settings.preview_dir
    if folder is None:
        return None
    original = _text(ds, 0x00080018)
    # Named like the output: the SOP Instance UID the engine will write.
    name = engine.pseudonymizer.uid(original) if engine.profile.replace_uids else original
    name = "".join(ch for ch in name if ch.isdigit() or ch == ".") or "unnamed"
    return lambda frame: folder / f"{name}-frame{frame + 1:04d}.png"


def _clean(
    source: SourceFile,
    settings: PixelSettings,
    rules: PixelRules,
    outcome: PixelOutcome,
    preview: Callable[[int], Path] | None,
) -> None:
    missing = ocr.unavailable()
    if missing is not None:
        raise _WithholdError(missing)
    header = source.dataset
    ts = source.transfer_syntax
    full = _read_full(source)
    image = _Image.of(full, ts)
    matched = rules.matching(header)
    frames: list[FrameReport] = []
    redactions: dict[int, tuple[Box, ...]] = {}
    seen: dict[bytes, list[ocr.Word]] = {}
    for index, frame in enumerate(_decode(full, ts, image)):
        gray = ocr.to_gray8(image.display(frame, full), invert=image.monochrome1)
        digest = gray.tobytes()
        words = seen.get(digest)
        if words is None:
            words = seen[digest] = ocr.find_words(gray, settings.ocr)
        found = [
            Detection(Box(w.x, w.y, max(1, w.width), max(1, w.height)), "ocr", w.confidence, w.text)
            for w in words
            if w.width > 0 and w.height > 0
        ]
        for rule in matched:
            for box in rule.boxes:
                clipped = box.clipped(image.columns, image.rows)
                if clipped is not None:
                    found.append(Detection(clipped, f"rule {rule.name}"))
        boxes = tuple(
            sorted(
                {d.box for d in found if d.source != "ocr"}
                | set(text_line_boxes(words, settings.padding, *image.size))
            )
        )
        frames.append(FrameReport(index, tuple(found), boxes))
        if boxes:
            redactions[index] = boxes
        if preview is not None and boxes:
            _write_preview(gray, found, boxes, preview(index))
    outcome.frames = tuple(frames)
    if not redactions:
        if _text(header, _BURNED_IN).upper() == "YES":
            raise _WithholdError("BurnedInAnnotation is YES but no text was found to redact")
        header.BurnedInAnnotation = "NO"
        outcome.verdict = f"no text found in {len(frames)} frame(s): pixel data unchanged"
        return
    outcome.replacement = _redact(source, full, image, redactions, settings)
    header.BurnedInAnnotation = "NO"
    for tag in (0x7FE00001, 0x7FE00002):  # Extended Offset Table: the fragments changed
        if image.encapsulated and tag in header:
            del header[tag]
    outcome.verdict = (
        f"redacted {outcome.boxes_redacted} box(es) in {len(redactions)} of {len(frames)} frame(s)"
    )


def text_line_boxes(words: Iterable[ocr.Word], padding: int, columns: int, rows: int) -> list[Box]:
    """Words on one line, close together, become one box (the gaps between words OCR read
    may hold words it missed), padded by a quarter of the text's height (at least
    ``padding``) and clipped to the image."""
    lines: list[list[int]] = []  # x, y, right, bottom
    for word in sorted(words, key=lambda w: (w.x, w.y)):
        if word.width <= 0 or word.height <= 0:
            continue
        box = [word.x, word.y, word.x + word.width, word.y + word.height]
        merged = True
        while merged:
            merged = False
            for line in lines:
                height = max(line[3] - line[1], box[3] - box[1])
                overlap = min(line[3], box[3]) - max(line[1], box[1])
                gap = max(line[0], box[0]) - min(line[2], box[2])
                if overlap >= 0.5 * min(line[3] - line[1], box[3] - box[1]) and gap <= 2 * height:
                    lines.remove(line)
                    box = [
                        min(line[0], box[0]),
                        min(line[1], box[1]),
                        max(line[2], box[2]),
                        max(line[3], box[3]),
                    ]
                    merged = True
                    break
        lines.append(box)
    out = []
    for x, y, right, bottom in lines:
        pad = max(padding, (bottom - y + 3) // 4)
        out.append(Box(x, y, right - x, bottom - y).padded(pad, columns, rows))
    return out


def _read_full(source: SourceFile) -> Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dcmread(source.path, force=True)
    except Exception as exc:
        raise _WithholdError(f"the pixel data cannot be read ({type(exc).__name__})") from None


@dataclass(frozen=True)
class _Image:
    """The pixel module of one image, as the pixel step needs it."""

    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar: int
    transfer_syntax: UID

    @classmethod
    def of(cls, ds: Dataset, ts: UID) -> _Image:
        try:
            image = cls(
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                frames=int(ds.get("NumberOfFrames", 1) or 1),
                samples=int(ds.get("SamplesPerPixel", 1) or 1),
                bits_allocated=int(ds.BitsAllocated),
                bits_stored=int(ds.get("BitsStored", ds.BitsAllocated)),
                signed=int(ds.get("PixelRepresentation", 0) or 0) == 1,
                photometric=str(ds.get("PhotometricInterpretation", "")).strip().upper(),
                planar=int(ds.get("PlanarConfiguration", 0) or 0),
                transfer_syntax=ts,
            )
        except (AttributeError, TypeError, ValueError):
            raise _WithholdError("the image pixel module is incomplete or invalid") from None
        if "PixelData" not in ds:
            raise _WithholdError("only Pixel Data (7FE0,0010) can be redacted")
        return image

    @property
    def size(self) -> tuple[int, int]:
        return self.columns, self.rows

    @property
    def encapsulated(self) -> bool:
        return self.transfer_syntax not in _NATIVE

    @property
    def monochrome1(self) -> bool:
        return self.photometric == "MONOCHROME1"

    @property
    def decode_as_rgb(self) -> bool:
        """Lossy JPEG is worked on in RGB (Pillow re-encodes it); the rest as stored."""
        return self.transfer_syntax in _JPEG_LOSSY

    def display(self, frame: NDArray[Any], ds: Dataset) -> NDArray[Any]:
        """The frame as a viewer shows it (colour as RGB), for OCR."""
        from pydicom.pixels.processing import apply_color_lut, convert_color_space

        if self.photometric == "PALETTE COLOR":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return apply_color_lut(frame, ds)
        if self.photometric.startswith("YBR_FULL") and not self.decode_as_rgb:
            return convert_color_space(frame, "YBR_FULL", "RGB")
        return frame

    def fill(self, settings: PixelSettings, ds: Dataset) -> tuple[int, ...]:
        """The stored value(s) that paint a pixel black (or the configured value)."""
        top = (1 << self.bits_stored) - 1
        low, high = (-(1 << (self.bits_stored - 1)), (1 << (self.bits_stored - 1)) - 1)
        if not self.signed:
            low, high = 0, top
        if self.samples == 1:
            if settings.fill is not None:
                value = settings.fill
            elif self.photometric == "PALETTE COLOR":
                value = _darkest_index(ds)
            else:
                value = high if self.monochrome1 else low
            if not low <= value <= high:
                raise _WithholdError("the configured fill value does not fit the pixel data")
            return (value,)
        value = 0 if settings.fill is None else settings.fill
        if not 0 <= value <= top:
            raise _WithholdError("the configured fill value does not fit the pixel data")
        if self.photometric.startswith("YBR_FULL") and not self.decode_as_rgb:
            middle = 1 << (self.bits_stored - 1)
            return (value, middle, middle)
        return (value, value, value)


def _darkest_index(ds: Dataset) -> int:
    import numpy as np
    from pydicom.pixels.processing import apply_color_lut

    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    if descriptor is None:
        raise _WithholdError("a palette colour image without its palette")
    entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    indices = np.arange(
        first, first + entries, dtype=np.uint16 if first + entries > 256 else np.uint8
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rgb = apply_color_lut(indices, ds).astype(np.float64)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    return int(indices[int(np.argmin(luminance))])


def _decode(ds: Dataset, ts: UID, image: _Image) -> Iterator[NDArray[Any]]:
    from pydicom.pixels.utils import iter_pixels

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield from iter_pixels(ds, as_rgb=image.decode_as_rgb)
    except Exception as exc:
        raise _WithholdError(
            f"the pixel data cannot be decoded ({UID(ts).name}: {type(exc).__name__})"
        ) from None


# --------------------------------------------------------------------------------------------
# Redaction and re-encoding


def _redact(
    source: SourceFile,
    ds: Dataset,
    image: _Image,
    redactions: Mapping[int, tuple[Box, ...]],
    settings: PixelSettings,
) -> PixelSource:
    fill = image.fill(settings, ds)
    if not image.encapsulated:
        return PixelSource(_redact_native(ds, image, redactions, fill))
    ts = image.transfer_syntax
    if ts not in _LOSSLESS_ENCODED and ts not in _JPEG_LOSSY and ts != JPEG2000:
        raise _WithholdError(f"burned-in text found but {UID(ts).name} cannot be re-encoded")
    frames = [
        _painted(frame, redactions.get(i, ()), fill)
        for i, frame in enumerate(_decode(ds, ts, image))
    ]
    if ts in _JPEG_LOSSY:
        data = _encode_jpeg(frames, image, settings.jpeg_quality)
        _record_lossy(source, ds, image, data, "ISO_10918_1")
        return PixelSource(data, encapsulated=True)
    data = _encode_pydicom(frames, ds, image, source)
    if ts == JPEG2000:
        _record_lossy(source, ds, image, data, "ISO_15444_1")
    else:
        _check_lossless(data, ds, image, frames)
    return PixelSource(data, encapsulated=True)


def _painted(frame: NDArray[Any], boxes: Iterable[Box], fill: tuple[int, ...]) -> NDArray[Any]:
    import numpy as np

    out = np.array(frame, copy=True)
    for box in boxes:
        region = out[box.y : box.bottom, box.x : box.right]
        region[...] = fill if out.ndim == 3 else fill[0]
    return out


def _redact_native(
    ds: Dataset, image: _Image, redactions: Mapping[int, tuple[Box, ...]], fill: tuple[int, ...]
) -> bytes:
    """Black out the boxes in the stored bytes; every other byte stays as it was."""
    import numpy as np

    if image.bits_allocated not in (8, 16, 32):
        raise _WithholdError(
            f"burned-in text found but BitsAllocated {image.bits_allocated} cannot be redacted"
        )
    if image.photometric in ("YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420"):
        raise _WithholdError("burned-in text found but subsampled native colour cannot be redacted")
    raw = bytearray(ds.PixelData)
    per_sample = image.bits_allocated // 8
    frame_size = image.rows * image.columns * image.samples * per_sample
    if len(raw) < frame_size * image.frames:
        raise _WithholdError("the pixel data is shorter than its frames")
    order = "<" if image.transfer_syntax.is_little_endian else ">"
    mask = (1 << image.bits_allocated) - 1
    stored = [value & mask for value in fill]  # two's complement, sign-extended
    dtype = np.dtype(f"{order}u{per_sample}")
    for index, boxes in redactions.items():
        frame = np.frombuffer(
            memoryview(raw)[index * frame_size : (index + 1) * frame_size], dtype=dtype
        )
        if image.samples == 1:
            view = frame.reshape(image.rows, image.columns)
            for box in boxes:
                view[box.y : box.bottom, box.x : box.right] = stored[0]
        elif image.planar == 1:
            planes = frame.reshape(image.samples, image.rows, image.columns)
            for box in boxes:
                for s in range(image.samples):
                    planes[s, box.y : box.bottom, box.x : box.right] = stored[s]
        else:
            pixels = frame.reshape(image.rows, image.columns, image.samples)
            for box in boxes:
                pixels[box.y : box.bottom, box.x : box.right] = stored
    return bytes(raw)


def _encode_pydicom(
    frames: list[NDArray[Any]], ds: Dataset, image: _Image, source: SourceFile
) -> bytes:
    """RLE, JPEG-LS and JPEG 2000 through pydicom's encoders (pylibjpeg, pyjpegls)."""
    import numpy as np

    scratch = Dataset()
    for keyword in (
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "NumberOfFrames",
    ):
        if keyword in ds:
            scratch[keyword] = ds[keyword]
    if image.samples > 1:
        scratch.PlanarConfiguration = 0
    ts = image.transfer_syntax
    options: dict[str, Any] = {}
    if ts == JPEG2000:
        options["j2k_cr"] = [max(2.0, _ratio(image, _span_length(source)))]
    elif ts == JPEGLSNearLossless:
        options["jls_error"] = 0  # lossless: no further loss
    array = np.stack(frames) if len(frames) > 1 else frames[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scratch.compress(ts, array, generate_instance_uid=False, **options)
    except Exception as exc:
        raise _WithholdError(
            f"burned-in text found but {UID(ts).name} cannot be re-encoded ({type(exc).__name__})"
        ) from None
    return bytes(scratch.PixelData)


def _check_lossless(data: bytes, ds: Dataset, image: _Image, frames: list[NDArray[Any]]) -> None:
    """Decode what was encoded: it must give back exactly the redacted frames."""
    import numpy as np
    from pydicom.pixels.utils import iter_pixels

    check = Dataset()
    check.file_meta = ds.file_meta
    for elem in ds:
        if elem.tag.group == 0x0028:
            check[elem.tag] = elem
    check.PixelData = data
    check["PixelData"].is_undefined_length = True
    check["PixelData"].VR = "OB"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for before, after in zip(frames, iter_pixels(check, as_rgb=False), strict=True):
            if not np.array_equal(before, after):
                raise _WithholdError("re-encoding was not lossless")


def _encode_jpeg(frames: list[NDArray[Any]], image: _Image, quality: int) -> bytes:
    """Lossy JPEG (8-bit) re-encoded by Pillow: pydicom has no JPEG baseline encoder."""
    from PIL import Image
    from pydicom.encaps import encapsulate

    if image.bits_allocated != 8 or image.bits_stored > 8:
        raise _WithholdError("burned-in text found but 12-bit JPEG cannot be re-encoded")
    encoded = []
    for frame in frames:
        buffer = _io.BytesIO()
        if image.samples == 1:
            Image.fromarray(frame.astype("uint8")).save(buffer, "JPEG", quality=quality)
        else:
            subsampling = "4:2:2" if image.photometric == "YBR_FULL_422" else "4:4:4"
            Image.fromarray(frame.astype("uint8")).save(
                buffer,
                "JPEG",
                quality=quality,
                subsampling=subsampling,
                keep_rgb=image.photometric == "RGB",
            )
        encoded.append(buffer.getvalue())
    return bytes(encapsulate(encoded, has_bot=True))


def _span_length(source: SourceFile) -> int:
    span = source.pixels
    return span.end - span.value_start if span is not None else 0


def _ratio(image: _Image, compressed: int) -> float:
    size = image.rows * image.columns * image.samples * image.frames * image.bits_allocated // 8
    return size / compressed if compressed > 0 else 1.0


def _record_lossy(
    source: SourceFile, full: Dataset, image: _Image, data: bytes, method: str
) -> None:
    """PS3.3 C.7.6.1.1.5: one ratio and one method per lossy step, the new one appended."""
    header = source.dataset
    methods = [str(m) for m in _values(header.get("LossyImageCompressionMethod"))]
    ratios = [str(r) for r in _values(header.get("LossyImageCompressionRatio"))]
    if _text(header, 0x00282110) != "01" or not methods:
        # The source's own lossy step was not recorded: record it first.
        methods = [method]
        ratios = [_ds(_ratio(image, _span_length(source)))]
    while len(ratios) < len(methods):
        ratios.append(ratios[-1] if ratios else "1")
    methods.append(method)
    ratios.append(_ds(_ratio(image, len(data))))
    header.LossyImageCompression = "01"
    header.LossyImageCompressionRatio = ratios
    header.LossyImageCompressionMethod = methods


def _values(elem: Any) -> list[Any]:
    """An element's values as a list (none for an absent or empty element)."""
    try:
        value = None if elem is None else elem.value
    except Exception:
        return []
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    return [v for v in value if v not in (None, "")]


def _ds(value: float) -> str:
    return f"{value:.2f}"[:16]


# --------------------------------------------------------------------------------------------
# Previews


def _write_preview(
    gray: NDArray[np.uint8], found: list[Detection], boxes: tuple[Box, ...], path: Path
) -> None:
    """The frame as OCR saw it, redacted boxes filled black and outlined, for human QC."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(gray).convert("RGB")
    draw = ImageDraw.Draw(picture)
    for box in boxes:
        draw.rectangle((box.x, box.y, box.right - 1, box.bottom - 1), fill=(0, 0, 0))
    for detection in found:
        kind = "ocr" if detection.source == "ocr" else "rule"
        b = detection.box
        draw.rectangle((b.x, b.y, b.right - 1, b.bottom - 1), outline=_PREVIEW_COLOURS[kind])
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, "PNG")


# --------------------------------------------------------------------------------------------
# Helpers


def _text(ds: Dataset, tag: int) -> str:
    try:
        elem = ds.get(tag)
        if elem is None or elem.value is None:
            return ""
        value = elem.value
        if isinstance(value, bytes):
            return value.decode("ascii", "replace").strip("\x00 ")
        if isinstance(value, list | tuple):
            return "\\".join(str(v) for v in value)
        return str(value).strip()
    except Exception:
        return ""


def _int(ds: Dataset, tag: int) -> int | None:
    try:
        elem = ds.get(tag)
        return None if elem is None or elem.value is None else int(elem.value)
    except (TypeError, ValueError):
        return None
