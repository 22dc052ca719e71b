"""Finding burned-in text in a frame: OCR (:mod:`dicomveil.cleaners.pixels.ocr`) and the
rectangle rules of the device, the boxes to black out, and previews for human QC.

Words OCR read on one line become one padded box (:func:`text_line_boxes`): the gaps between
words may hold words it missed. A rule's boxes are blacked out as they are, clipped to the
image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dicomveil.cleaners.pixels.ocr as ocr
from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.cleaners.pixels.rules import RectangleRule

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

_PREVIEW_COLOURS = {"ocr": (255, 0, 0), "rule": (255, 160, 0)}


@dataclass(frozen=True)
class Detection:
    """A box of text found in a frame: by OCR or by a rectangle rule.

    Attributes
    ----------
    box : Box
        Where the text is (as found, not padded).
    source : str
        ``"ocr"`` or ``"rule NAME"``.
    confidence : float or None
        OCR's confidence (0-100); None for a rule.
    text : str
        What OCR read: PHI, shown with ``--show-values`` only.
    """

    box: Box
    source: str  # "ocr" or "rule NAME"
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
        Every box of text found.
    redacted : tuple[Box, ...]
        The boxes blacked out (lines of words, padded; rules' boxes), sorted.
    """

    frame: int
    found: tuple[Detection, ...]
    redacted: tuple[Box, ...]


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
        self._seen: dict[bytes, list[ocr.Word]] = {}

    def frame(self, index: int, gray: NDArray[np.uint8]) -> FrameReport:
        """Find the text in one frame and the boxes that black it out.

        Parameters
        ----------
        index : int
            The frame's index, from 0.
        gray : NDArray[np.uint8]
            The frame as OCR reads it (:func:`ocr.to_gray8`).

        Returns
        -------
        FrameReport
            What OCR and the rules found, and the boxes to black out.
        """
        digest = gray.tobytes()
        words = self._seen.get(digest)
        if words is None:
            words = self._seen[digest] = ocr.find_words(gray, self.settings)
        found = [
            Detection(Box(w.x, w.y, max(1, w.width), max(1, w.height)), "ocr", w.confidence, w.text)
            for w in words
            if w.width > 0 and w.height > 0
        ]
        for rule in self.rules:
            for box in rule.boxes:
                clipped = box.clipped(self.columns, self.rows)
                if clipped is not None:
                    found.append(Detection(clipped, f"rule {rule.name}"))
        boxes = tuple(
            sorted(
                {d.box for d in found if d.source != "ocr"}
                | set(text_line_boxes(words, self.padding, self.columns, self.rows))
            )
        )
        return FrameReport(index, tuple(found), boxes)


def write_preview(
    gray: NDArray[np.uint8], found: Iterable[Detection], boxes: tuple[Box, ...], path: Path
) -> None:
    """Write the frame as OCR saw it, redacted boxes filled black and found text outlined.

    For human QC: OCR's boxes in red, rules' in orange. The file is written outside the
    shareable output.

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
        kind = "ocr" if detection.source == "ocr" else "rule"
        b = detection.box
        draw.rectangle((b.x, b.y, b.right - 1, b.bottom - 1), outline=_PREVIEW_COLOURS[kind])
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, "PNG")
