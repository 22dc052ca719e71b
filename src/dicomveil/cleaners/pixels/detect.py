"""Finding burned-in text in a frame: two detectors, the rectangle rules of the device, the
boxes to black out, and previews for human QC.

The detectors are Tesseract (:mod:`dicomveil.cleaners.pixels.ocr`: reads words) and a text
detection network (:mod:`dicomveil.cleaners.pixels.network`: finds regions of text without
reading them). Either alone paints over things that are not text (speckle, anatomy, the
edge of an ultrasound sector), so a finding is blacked out on evidence (:func:`evidence`):

* a region of the network that has the shape of a line of text and a high score, or a
  fair score and either a word Tesseract read in it or a place on a line already blacked
  out, next to it (the "Dr." of "Dr. Halvorsen" scores lower than the name);
* a word Tesseract read with high confidence (three letters or digits at least), or one the
  network agrees is text.

What is kept on one line becomes one padded box (:func:`text_line_boxes`): the gaps between
words may hold words both missed. A line that runs into a textured area (text written over
speckle or anatomy, where neither detector separates the letters from the texture) is
extended into it by up to a few line heights (:func:`into_texture`). A rule's boxes are
blacked out as they are, clipped to the image.

The thresholds were set on the tuning half of the independent corpus (``tests/data/
burnedin/``, issue 23) and are reported on its held-out half by
``benchmarks/bench_ocr.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dicomveil.cleaners.pixels.network as network
import dicomveil.cleaners.pixels.ocr as ocr
from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.cleaners.pixels.rules import RectangleRule

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

_PREVIEW_COLOURS = {"ocr": (255, 0, 0), "network": (0, 160, 255), "rule": (255, 160, 0)}

# Evidence (set on the corpus' tuning half): a network region is a line of text when it is
# at most _LINE_HEIGHT pixels high (or 1/20 of the frame's rows) and _LINE_ASPECT times as
# wide as high, or at most _SMALL_HEIGHT high (a word's fragment); blobs of anatomy score as
# high as text but have no such shape. It is blacked out alone from _SURE_SCORE, with a word
# Tesseract read in it from _FAIR_SCORE. A word of Tesseract alone needs _SURE_CONFIDENCE
# and _SURE_LETTERS letters or digits.
_LINE_HEIGHT = 48
_LINE_ASPECT = 1.5
_SMALL_HEIGHT = 20
_SURE_SCORE = 0.7
_FAIR_SCORE = 0.5
_SURE_CONFIDENCE = 85.0
_SURE_LETTERS = 3
# A line runs on into texture: by steps of its height, up to _TEXTURE_STEPS, while the step's
# grey levels spread more than _TEXTURE_SPREAD (flat ground: about 0 to 10).
_TEXTURE_STEPS = 4
_TEXTURE_SPREAD = 20.0


@dataclass(frozen=True)
class Detection:
    """A box of text found in a frame: by OCR, the network or a rectangle rule.

    Attributes
    ----------
    box : Box
        Where the text is (as found, not padded).
    source : str
        ``"ocr"``, ``"network"`` or ``"rule NAME"``.
    confidence : float or None
        OCR's confidence, or the network's score times 100 (0-100); None for a rule.
    text : str
        What OCR read: PHI, shown with ``--show-values`` only.
    """

    box: Box
    source: str  # "ocr", "network" or "rule NAME"
    confidence: float | None = None
    text: str = field(default="", repr=False)  # PHI: --show-values only


@dataclass(frozen=True)
class FrameReport:
    """What was found and blacked out in one frame.

    Attributes
    ----------
    frame : int
        The frame's index, from 0.
    found : tuple[Detection, ...]
        Every box of text found on evidence (:func:`evidence`), and the rules' boxes.
    redacted : tuple[Box, ...]
        The boxes blacked out (lines of words, padded; rules' boxes), sorted.
    rejected : int
        Findings of one detector that the evidence did not support (not blacked out).
    """

    frame: int
    found: tuple[Detection, ...]
    redacted: tuple[Box, ...]
    rejected: int = 0


def text_line_boxes(words: Iterable[ocr.Word], padding: int, columns: int, rows: int) -> list[Box]:
    """Join the words on one line, close together, into one padded box.

    The gaps between words OCR read may hold words it missed. Each box is padded by a
    quarter of the text's height (at least ``padding``) and clipped to the image.

    Parameters
    ----------
    words : Iterable[ocr.Word]
        The words of one frame (words without area are ignored).
    padding : int
        The least padding, in pixels.
    columns, rows : int
        The image's size.

    Returns
    -------
    list[Box]
        One box per line of words.
    """
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


def _line_like(region: network.Region, rows: int) -> bool:
    """The region has the shape of a line of text (or of a word's fragment)."""
    if region.height > max(_LINE_HEIGHT, rows // 20):
        return False
    return region.height <= _SMALL_HEIGHT or region.width >= _LINE_ASPECT * region.height


def _sideways(region: network.Region, columns: int) -> bool:
    """The region has the shape of a line of text written upwards or downwards (a label
    along an ultrasound's side, text turned 90 degrees) or slanted (long and thin along its
    own axis: :attr:`network.Region.length`), and is not a horizontal line."""
    if (
        _MIN_SIDEWAYS <= region.width <= max(_LINE_HEIGHT, columns // 20)
        and region.height >= _LINE_ASPECT * region.width
    ):
        return True
    thickness = region.thickness
    return (
        _MIN_SIDEWAYS <= thickness <= _LINE_HEIGHT and region.length >= _SLANTED_ASPECT * thickness
    )


_MIN_SIDEWAYS = 6  # pixels: a thinner upright region is an edge or a rule, not letters
_SLANTED_ASPECT = 4.0  # a slanted line of text is at least four times as long as thick


def evidence(
    words: list[ocr.Word], regions: list[network.Region], rows: int, columns: int | None = None
) -> tuple[list[ocr.Word], list[network.Region]]:
    """The findings of the two detectors that are blacked out (see the module's docstring).

    Parameters
    ----------
    words : list[ocr.Word]
        Tesseract's words (and rows of text-like marks, confidence 0) in one frame.
    regions : list[network.Region]
        The network's regions in the same frame.
    rows : int
        The frame's rows.
    columns : int or None
        The frame's columns: with them, a sideways line of text (:func:`_sideways`) the
        network is sure of is kept too (Tesseract reads no such line: the network alone).

    Returns
    -------
    tuple[list[ocr.Word], list[network.Region]]
        The words and the regions kept (sideways lines last).
    """
    sideways = [
        r
        for r in regions
        if columns is not None
        and r.score >= _SURE_SCORE
        and not _line_like(r, rows)
        and _sideways(r, columns)
    ]
    lines = [r for r in regions if _line_like(r, rows)]
    boxes = {id(r): Box(r.x, r.y, max(1, r.width), max(1, r.height)) for r in lines}
    fair = [r for r in lines if r.score >= _FAIR_SCORE]

    def word_box(w: ocr.Word) -> Box:
        return Box(w.x, w.y, max(1, w.width), max(1, w.height))

    kept_words = [
        w
        for w in words
        if (w.confidence >= _SURE_CONFIDENCE and sum(c.isalnum() for c in w.text) >= _SURE_LETTERS)
        or any(word_box(w).overlaps(boxes[id(r)]) for r in fair)
    ]
    kept_regions = [
        r
        for r in lines
        if r.score >= _SURE_SCORE
        or (r.score >= _FAIR_SCORE and any(word_box(w).overlaps(boxes[id(r)]) for w in words))
    ]
    return kept_words, [*_continued(kept_regions, fair), *sideways]


def _continued(kept: list[network.Region], fair: list[network.Region]) -> list[network.Region]:
    """``kept`` and the fair regions that continue one of its lines, transitively: side by
    side with a kept region (the gap at most the taller one's height), sharing at least half
    of the lower one's height. A frame with nothing kept gains nothing."""
    out = list(kept)
    waiting = [r for r in fair if all(r is not k for k in kept)]
    grown = True
    while grown and waiting:
        grown = False
        for r in list(waiting):
            if any(_same_line(r, k) for k in out):
                out.append(r)
                waiting.remove(r)
                grown = True
    return sorted(out, key=lambda r: (r.y, r.x))


def _same_line(a: network.Region, b: network.Region) -> bool:
    """``a`` and ``b`` are neighbours on one line of text."""
    shared = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    gap = max(a.x, b.x) - min(a.x + a.width, b.x + b.width)
    return 2 * shared >= min(a.height, b.height) and gap <= max(a.height, b.height)


def into_texture(boxes: Iterable[Box], gray: NDArray[np.uint8]) -> list[Box]:
    """Extend lines of text that run into a textured area, by steps of their height.

    Text written over speckle or anatomy is hard to tell from it for either detector, and
    the found part of a line often stops where the texture starts ("Highgate Univ." of
    "Highgate Univ. Hosp."). Privacy first: the line is extended while the next step's grey
    levels spread like texture, up to a few steps.

    Parameters
    ----------
    boxes : Iterable[Box]
        Lines of text, padded.
    gray : NDArray[np.uint8]
        The frame (:func:`ocr.to_gray8`).

    Returns
    -------
    list[Box]
        The lines, extended where they run into texture.
    """
    columns = gray.shape[1]
    out = []
    for box in boxes:
        step = max(4, box.height)

        def textured(left: int, right: int, box: Box = box) -> bool:
            region = gray[box.y : box.bottom, left:right]
            return right > left and float(region.std()) > _TEXTURE_SPREAD

        right = box.right
        for _ in range(_TEXTURE_STEPS):
            if right >= columns or not textured(right, min(columns, right + step)):
                break
            right = min(columns, right + step)
        left = box.x
        for _ in range(_TEXTURE_STEPS):
            if left <= 0 or not textured(max(0, left - step), left):
                break
            left = max(0, left - step)
        out.append(Box(left, box.y, right - left, box.height))
    return out


class Detector:
    """Finds the text of the frames of one image.

    A frame identical to one already read (a cine loop's still frames) is not read again.

    Parameters
    ----------
    settings : ocr.OcrSettings
        How hard OCR looks.
    padding : int
        The least padding around a line of words, in pixels.
    rules : tuple[RectangleRule, ...]
        The rectangle rules that match the image.
    size : tuple[int, int]
        The image's columns and rows.
    """

    def __init__(
        self,
        settings: ocr.OcrSettings,
        padding: int,
        rules: tuple[RectangleRule, ...],
        size: tuple[int, int],
    ) -> None:
        self.settings = settings
        self.padding = padding
        self.rules = rules
        self.columns, self.rows = size
        self._seen: dict[bytes, FrameReport] = {}

    def frame(
        self, index: int, gray: NDArray[np.uint8], colour: NDArray[np.uint8] | None = None
    ) -> FrameReport:
        """Find the text in one frame and the boxes that black it out.

        Parameters
        ----------
        index : int
            The frame's index, from 0.
        gray : NDArray[np.uint8]
            The frame as OCR reads it (:func:`ocr.to_gray8`).
        colour : NDArray[np.uint8] or None
            The frame in 8-bit RGB, when it is in colour (the network reads colour text on
            colour better than its grey view).

        Returns
        -------
        FrameReport
            What the detectors found on evidence and the rules give, and the boxes to black
            out.
        """
        hashed = hashlib.blake2b(gray.tobytes(), digest_size=16)
        if colour is not None:
            hashed.update(colour.tobytes())
        digest = hashed.digest()  # not the frame itself: a long cine's frames are large
        known = self._seen.get(digest)
        if known is not None:
            return FrameReport(index, known.found, known.redacted, known.rejected)
        words = ocr.find_words(gray, self.settings)
        regions = network.find_regions(colour if colour is not None else gray)
        kept_words, kept_regions = evidence(words, regions, self.rows, self.columns)
        upright = [r for r in kept_regions if _line_like(r, self.rows)]
        found = [
            Detection(Box(w.x, w.y, max(1, w.width), max(1, w.height)), "ocr", w.confidence, w.text)
            for w in kept_words
            if w.width > 0 and w.height > 0
        ]
        found += [
            Detection(Box(r.x, r.y, r.width, r.height), "network", round(100 * r.score, 1))
            for r in kept_regions
        ]
        lines = text_line_boxes(
            [*kept_words, *(ocr.Word(r.x, r.y, r.width, r.height, 0.0) for r in upright)],
            self.padding,
            self.columns,
            self.rows,
        )
        # a sideways line: its own box (a line of words joins along x), padded by a quarter
        # of its width, never run on into texture (that goes along x by its height)
        sideways = {
            Box(r.x, r.y, r.width, r.height).padded(
                max(self.padding, (r.width + 3) // 4), self.columns, self.rows
            )
            for r in kept_regions
            if not _line_like(r, self.rows)
        }
        ruled = []
        for rule in self.rules:
            for box in rule.boxes:
                clipped = box.clipped(self.columns, self.rows)
                if clipped is not None:
                    ruled.append(clipped)
                    found.append(Detection(clipped, f"rule {rule.name}"))
        boxes = tuple(sorted(set(ruled) | set(into_texture(lines, gray)) | sideways))
        rejected = len(words) + len(regions) - len(kept_words) - len(kept_regions)
        report = FrameReport(index, tuple(found), boxes, rejected)
        self._seen[digest] = report
        return report


def write_preview(
    gray: NDArray[np.uint8], found: Iterable[Detection], boxes: tuple[Box, ...], path: Path
) -> None:
    """Write the frame as OCR saw it, redacted boxes filled black and found text outlined.

    For human QC: OCR's boxes in red, the network's in blue, rules' in orange. The file is
    written outside the shareable output.

    Parameters
    ----------
    gray : NDArray[np.uint8]
        The frame as OCR read it.
    found : Iterable[Detection]
        The text found in it.
    boxes : tuple[Box, ...]
        The boxes blacked out.
    path : Path
        The PNG file written (its folder is made if missing).
    """
    from PIL import Image, ImageDraw

    picture = Image.fromarray(gray).convert("RGB")
    draw = ImageDraw.Draw(picture)
    for box in boxes:
        draw.rectangle((box.x, box.y, box.right - 1, box.bottom - 1), fill=(0, 0, 0))
    for detection in found:
        kind = detection.source if detection.source in ("ocr", "network") else "rule"
        b = detection.box
        draw.rectangle((b.x, b.y, b.right - 1, b.bottom - 1), outline=_PREVIEW_COLOURS[kind])
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, "PNG")
