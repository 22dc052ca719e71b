"""Burned-in text: find it and black it out in the pixels (PS3.15 Clean Pixel Data Option)."""

from dicomveil.cleaners.pixels.core import (
    Box,
    Detection,
    FrameReport,
    PixelOutcome,
    PixelRules,
    PixelSettings,
    RectangleRule,
    clean_pixels,
    header_signals,
    text_line_boxes,
)

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
