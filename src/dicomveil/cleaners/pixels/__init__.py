"""Burned-in text: find it and black it out in the pixels (PS3.15 Clean Pixel Data Option).

The step itself is :mod:`~dicomveil.cleaners.pixels.clean`; it looks at the images the header
signals (:mod:`~dicomveil.cleaners.pixels.signals`), finds text by the rectangle rules
(:mod:`~dicomveil.cleaners.pixels.rules`) and OCR (:mod:`~dicomveil.cleaners.pixels.detect`,
:mod:`~dicomveil.cleaners.pixels.ocr`), and paints over it in the decoded frames
(:mod:`~dicomveil.cleaners.pixels.image`, :mod:`~dicomveil.cleaners.pixels.redact`).
"""

from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.cleaners.pixels.clean import PixelOutcome, PixelSettings, clean_pixels
from dicomveil.cleaners.pixels.detect import Detection, FrameReport, text_line_boxes
from dicomveil.cleaners.pixels.rules import PixelRules, RectangleRule
from dicomveil.cleaners.pixels.signals import header_signals

__all__ = [
    "Box",
    "Detection",
    "FrameReport",
    "PixelOutcome",
    "PixelRules",
    "PixelSettings",
    "RectangleRule",
    "clean_pixels",
    "header_signals",
    "text_line_boxes",
]
