"""Synthetic images with burned-in fake PHI at known positions: test data for clean-pixel-data.

Each :class:`TextImage` is a DICOM dataset (secondary capture or ultrasound, single- or
multi-frame, in any transfer syntax dicomveil re-encodes) whose pixels carry lines of text
rendered by Pillow, with the ink's bounding box and mask of every line, so a benchmark can
score detection per box and redaction per pixel. Backgrounds: dark, noisy, speckled
(ultrasound-like), graded and light; fonts: DejaVu, Liberation and FreeFont when their
Debian packages are installed, and Pillow's own font. All values are invented.

Needs numpy and Pillow (``pip install 'dicomveil[pixels]'``).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from dicomveil.cleaners.pixels import Box

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import ImageFont

_FONT_FILES = {
    "DejaVuSans": "dejavu/DejaVuSans.ttf",
    "DejaVuSansMono": "dejavu/DejaVuSansMono.ttf",
    "DejaVuSerif": "dejavu/DejaVuSerif.ttf",
    "DejaVuSans-Bold": "dejavu/DejaVuSans-Bold.ttf",
    "LiberationSans": "liberation/LiberationSans-Regular.ttf",
    "LiberationMono": "liberation/LiberationMono-Regular.ttf",
    "FreeSans": "freefont/FreeSans.ttf",
    "FreeMono": "freefont/FreeMono.ttf",
}
_FONT_ROOT = Path("/usr/share/fonts/truetype")
PILLOW_FONT = "pillow"  # Pillow's built-in font (scalable since Pillow 10.1)

_SURNAMES = ("DOE", "SMITH", "MUELLER", "GARCIA", "NGUYEN", "OKAFOR", "KOWALSKI", "TANAKA")
_GIVEN = ("JANE", "JOHN", "KARL", "MARIA", "LINH", "CHIDI", "ANNA", "KENJI")
_INSTITUTIONS = ("ST MARY HOSPITAL", "LAKESIDE CLINIC", "NORTH MEDICAL CTR", "RIVERVIEW IMAGING")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_TECHNICAL = ("L12-5", "MI 0.8", "TIS 0.4", "GAIN 58", "DR 60", "FR 24Hz", "C5-2 ABD")


@dataclass(frozen=True)
class TextLine:
    """One line of burned-in text: where its ink is, and what it says (PHI in tests)."""

    frame: int
    text: str
    box: Box  # the ink's bounding box
    size: int  # font size in pixels
    font: str
    identifying: bool


@dataclass(frozen=True)
class Spec:
    """What to generate. Sizes are font sizes in pixels."""

    seed: int = 0
    rows: int = 160
    columns: int = 224
    frames: int = 1
    colour: bool = False
    bits: int = 8  # 8, or 16 (12 stored) for grey
    background: str = "dark"  # dark | noise | speckle | gradient | light
    contrast: float = 1.0  # of the text against its background, 0 to 1
    sizes: tuple[int, ...] = (14, 16)
    font: str = "DejaVuSans"
    transfer_syntax: UID = ExplicitVRLittleEndian
    text: bool = True  # False: a text-free image
    modality: str = "US"

    def __post_init__(self) -> None:
        if self.background not in ("dark", "noise", "speckle", "gradient", "light"):
            raise ValueError(f"unknown background {self.background!r}")
        if self.bits not in (8, 16) or (self.colour and self.bits != 8):
            raise ValueError("8-bit grey or colour, or 16-bit grey")


@dataclass
class TextImage:
    dataset: FileDataset
    lines: tuple[TextLine, ...]
    ink: NDArray[np.bool_]  # frames x rows x columns: the text's pixels
    spec: Spec = field(repr=False, default_factory=Spec)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dataset.save_as(path, enforce_file_format=True)
        return path


@cache
def available_fonts() -> tuple[str, ...]:
    """Font names usable here: installed TrueType fonts, and Pillow's own."""
    names = [name for name, rel in _FONT_FILES.items() if (_FONT_ROOT / rel).is_file()]
    return (*names, PILLOW_FONT)


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    if name == PILLOW_FONT:
        return ImageFont.load_default(size)
    path = _FONT_ROOT / _FONT_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"font {name} is not installed ({path})")
    return ImageFont.truetype(str(path), size)


def fake_lines(rng: random.Random, frame_clock: int = 0) -> list[tuple[str, bool]]:
    """Lines an ultrasound or a screenshot shows: name, ID, birth date, institution, clock."""
    surname, given = rng.choice(_SURNAMES), rng.choice(_GIVEN)
    year, month, day = rng.randint(1935, 2005), rng.randint(1, 12), rng.randint(1, 28)
    return [
        (f"{surname}, {given}", True),
        (f"ID {rng.randint(10**7, 10**8 - 1)}", True),
        (f"DOB {day:02d}-{_MONTHS[month - 1]}-{year}", True),
        (rng.choice(_INSTITUTIONS), True),
        (f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/2019 10:{frame_clock % 60:02d}", True),
        (rng.choice(_TECHNICAL), False),
    ]


def make(spec: Spec) -> TextImage:
    """Render the image, build its dataset and encode it in ``spec.transfer_syntax``."""
    import numpy as np

    rng = random.Random(spec.seed)
    shape = (spec.frames, spec.rows, spec.columns)
    top = 255 if spec.bits == 8 else 4095
    frames = []
    masks = []
    lines: list[TextLine] = []
    texts = fake_lines(random.Random(spec.seed))
    for index in range(spec.frames):
        frame_rng = np.random.default_rng(spec.seed * 1000 + index)
        background = _background(spec, frame_rng, top)
        mask = np.zeros(shape[1:], dtype=bool)
        level = np.zeros(shape[1:], dtype=np.float32)
        if spec.text:
            per_frame = list(texts)
            clock = fake_lines(random.Random(spec.seed), frame_clock=index * 7)[4]
            per_frame[4] = clock
            lines += _draw(spec, per_frame, index, rng, mask, level)
        frames.append(_compose(spec, background, mask, level, top, rng))
        masks.append(mask)
    pixels = np.stack(frames)
    ds = _dataset(spec, pixels)
    return TextImage(ds, tuple(lines), np.stack(masks), spec)


def _background(spec: Spec, rng: np.random.Generator, top: int) -> NDArray[np.float32]:
    import numpy as np

    rows, columns = spec.rows, spec.columns
    if spec.background == "dark":
        base = np.full((rows, columns), 0.04, dtype=np.float32)
        base += rng.normal(0, 0.01, (rows, columns)).astype(np.float32)
    elif spec.background == "noise":
        base = 0.3 + rng.normal(0, 0.06, (rows, columns)).astype(np.float32)
    elif spec.background == "speckle":
        # Ultrasound speckle: Rayleigh noise, correlated over a few pixels.
        from PIL import Image, ImageFilter

        raw = rng.rayleigh(0.2, (rows, columns)).astype(np.float32)
        image = Image.fromarray(np.clip(raw * 255, 0, 255).astype(np.uint8))
        speckle = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32)
        speckle = speckle / 255.0
        y, x = np.mgrid[0:rows, 0:columns]
        sector = (x - columns / 2) ** 2 + (y + rows * 0.3) ** 2 < (rows * 1.2) ** 2
        base = np.where(sector & (y > rows * 0.15), speckle, 0.03).astype(np.float32)
    elif spec.background == "gradient":
        base = np.tile(np.linspace(0.0, 0.6, columns, dtype=np.float32), (rows, 1))
    else:  # light
        base = np.full((rows, columns), 0.85, dtype=np.float32)
        base += rng.normal(0, 0.02, (rows, columns)).astype(np.float32)
    return np.clip(base, 0.0, 1.0)


def _draw(
    spec: Spec,
    texts: list[tuple[str, bool]],
    frame: int,
    rng: random.Random,
    mask: NDArray[np.bool_],
    level: NDArray[np.float32],
) -> list[TextLine]:
    """Lay the lines out down the left and right margins; record each line's ink."""
    import numpy as np
    from PIL import Image, ImageDraw

    lines = []
    placed: list[Box] = []
    y = 3
    for n, (text, identifying) in enumerate(texts):
        size = spec.sizes[n % len(spec.sizes)]
        font = _font(spec.font, size)
        canvas = Image.new("L", (spec.columns, spec.rows), 0)
        draw = ImageDraw.Draw(canvas)
        left, top_, right, bottom = draw.textbbox((0, 0), text, font=font)
        width, height = right - left, bottom - top_
        if width + 6 > spec.columns or y + height + 2 > spec.rows:
            continue
        # Down the left margin; technical text on the right; the clock moves every frame.
        x = spec.columns - width - 3 if not identifying else 3 + rng.randint(0, 6)
        if n == 4:
            x = min(3 + frame * 3, spec.columns - width - 3)
        draw.text((x - left, y - top_), text, font=font, fill=255)
        ink = np.asarray(canvas) > 96
        if not ink.any():
            continue
        ys, xs = np.nonzero(ink)
        box = Box(
            int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1
        )
        if any(_touch(box, other) for other in placed):
            continue
        placed.append(box)
        mask |= ink
        np.maximum(level, np.asarray(canvas, dtype=np.float32) / 255.0, out=level)
        lines.append(TextLine(frame, text, box, size, spec.font, identifying))
        y += int(height * 1.6) + 3
    return lines


def _touch(a: Box, b: Box) -> bool:
    return a.x < b.right + 2 and b.x < a.right + 2 and a.y < b.bottom + 2 and b.y < a.bottom + 2


def _compose(
    spec: Spec,
    background: NDArray[np.float32],
    mask: NDArray[np.bool_],
    level: NDArray[np.float32],
    top: int,
    rng: random.Random,
) -> NDArray[Any]:
    import numpy as np

    # Contrast: how far the text stands from the bright (or, on light ground, dark) end of
    # its background, so speckle and gradients do not swallow it by construction.
    if spec.background == "light":
        ground = float(np.percentile(background, 10))
        text_value = max(0.0, ground - spec.contrast * ground)
    else:
        ground = float(np.percentile(background, 90))
        text_value = min(1.0, ground + spec.contrast * (1.0 - ground))
    grey = background * (1 - level) + text_value * level
    if not spec.colour:
        values = np.clip(grey * top + 0.5, 0, top)
        return values.astype(np.uint8 if spec.bits == 8 else np.uint16)
    colour = rng.choice(((1.0, 1.0, 1.0), (1.0, 1.0, 0.2), (0.2, 1.0, 1.0), (0.3, 1.0, 0.3)))
    planes = [background * (1 - level) + text_value * c * level for c in colour]
    return np.clip(np.stack(planes, axis=-1) * 255 + 0.5, 0, 255).astype(np.uint8)


def _dataset(spec: Spec, pixels: NDArray[Any]) -> FileDataset:
    multi = spec.frames > 1
    if spec.modality == "US" and spec.bits == 8:
        sop_class = UID("1.2.840.10008.5.1.4.1.1.3.1" if multi else "1.2.840.10008.5.1.4.1.1.6.1")
    elif spec.colour:
        sop_class = UID("1.2.840.10008.5.1.4.1.1.7.4")
    else:
        sop_class = UID(
            "1.2.840.10008.5.1.4.1.1.7.3" if spec.bits == 16 else "1.2.840.10008.5.1.4.1.1.7.2"
        )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    instance = generate_uid(entropy_srcs=[f"textimage-{spec!r}"])
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("textimage.dcm", Dataset(), file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"study-{spec.seed}"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"series-{spec.seed}"])
    ds.PatientName = "DOE^JANE"
    ds.PatientID = f"TXT{spec.seed:05d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20190314"
    ds.StudyTime = "104200"
    ds.AccessionNumber = f"A{spec.seed:06d}"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = spec.modality if spec.bits == 8 else "OT"
    ds.ConversionType = "WSD"
    ds.Manufacturer = "DICOMVEIL TEST IMAGES"
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "PRIMARY"] if spec.modality == "US" else ["DERIVED", "SECONDARY"]
    if multi:
        ds.NumberOfFrames = spec.frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = 40.0
    ds.Rows, ds.Columns = spec.rows, spec.columns
    ds.SamplesPerPixel = 3 if spec.colour else 1
    ds.PhotometricInterpretation = "RGB" if spec.colour else "MONOCHROME2"
    if spec.colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = spec.bits
    ds.BitsStored = 8 if spec.bits == 8 else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = pixels.tobytes()
    _encode(ds, spec, pixels)
    return ds


def _encode(ds: FileDataset, spec: Spec, pixels: NDArray[Any]) -> None:
    ts = spec.transfer_syntax
    if ts == ExplicitVRLittleEndian:
        return
    if ts == JPEGBaseline8Bit:
        from PIL import Image

        fragments = []
        for frame in pixels:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, "JPEG", quality=92, subsampling="4:2:2")
            fragments.append(buffer.getvalue())
        original = pixels.size * pixels.itemsize
        ds.PixelData = encapsulate(fragments, has_bot=True)
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = ts
        if spec.colour:
            ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{original / sum(len(f) for f in fragments):.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        return
    array = pixels if spec.frames > 1 else pixels[0]
    ds.compress(ts, array, generate_instance_uid=False)
