"""The image as the pixel step sees it: the whole file read, its pixel module, its frames
decoded one by one (:mod:`dicomveil.cleaners.pixels.redact` paints and re-encodes them).

Whatever cannot be read or decoded raises :class:`WithholdError` with the reason the file is
withheld.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

from dicomveil.io import SourceFile

if TYPE_CHECKING:
    from numpy.typing import NDArray

_NATIVE = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)
# Lossy JPEG: worked on in RGB, re-encoded by Pillow.
JPEG_LOSSY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})


class WithholdError(Exception):
    """The pixel data cannot be checked or cleaned: the message says why (no values)."""


def read_full(source: SourceFile) -> Dataset:
    """Every element of the input ``source``, pixel data included, read by pydicom.

    Raises
    ------
    WithholdError
        The file cannot be read in full.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dcmread(source.path, force=True)
    except Exception as exc:
        raise WithholdError(f"the pixel data cannot be read ({type(exc).__name__})") from None


@dataclass(frozen=True)
class PixelImage:
    """The pixel module of one image, as the pixel step needs it.

    Attributes
    ----------
    rows, columns : int
        The size of a frame.
    frames : int
        Number of Frames (1 when absent).
    samples : int
        Samples per Pixel.
    bits_allocated, bits_stored : int
        Bits Allocated and Bits Stored.
    signed : bool
        Pixel Representation is 1 (two's complement).
    photometric : str
        Photometric Interpretation, upper case.
    planar : int
        Planar Configuration (0 when absent).
    transfer_syntax : UID
        The transfer syntax of the pixel data.
    """

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
    def of(cls, ds: Dataset, ts: UID) -> PixelImage:
        """Read the pixel module of an image.

        Parameters
        ----------
        ds : Dataset
            The whole image (:func:`read_full`).
        ts : UID
            Its transfer syntax.

        Returns
        -------
        PixelImage
            The pixel module.

        Raises
        ------
        WithholdError
            The pixel module is incomplete or invalid, or the image has no Pixel Data (but
            float pixel data, which cannot be redacted).
        """
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
            raise WithholdError("the image pixel module is incomplete or invalid") from None
        if "PixelData" not in ds:
            raise WithholdError("only Pixel Data (7FE0,0010) can be redacted")
        return image

    @property
    def size(self) -> tuple[int, int]:
        """Columns and rows."""
        return self.columns, self.rows

    @property
    def encapsulated(self) -> bool:
        """The pixel data is encapsulated (compressed)."""
        return self.transfer_syntax not in _NATIVE

    @property
    def monochrome1(self) -> bool:
        """The image is MONOCHROME1: the lowest value is white."""
        return self.photometric == "MONOCHROME1"

    @property
    def decode_as_rgb(self) -> bool:
        """Lossy JPEG is worked on in RGB (Pillow re-encodes it); the rest as stored."""
        return self.transfer_syntax in JPEG_LOSSY

    def display(self, frame: NDArray[Any], ds: Dataset) -> NDArray[Any]:
        """Show the frame as a viewer does (colour as RGB), for OCR.

        Parameters
        ----------
        frame : NDArray
            A decoded frame (:func:`decode_frames`).
        ds : Dataset
            The whole image: a palette colour image's palette is in it.

        Returns
        -------
        NDArray
            The frame, its palette applied or converted from YBR to RGB.
        """
        from pydicom.pixels.processing import apply_color_lut, convert_color_space

        if self.photometric == "PALETTE COLOR":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return apply_color_lut(frame, ds)
        if self.photometric.startswith("YBR_FULL") and not self.decode_as_rgb:
            return convert_color_space(frame, "YBR_FULL", "RGB")
        return frame

    def fill(self, configured: int | None, ds: Dataset) -> tuple[int, ...]:
        """Find the stored value(s) that paint a pixel black (or the configured value).

        Parameters
        ----------
        configured : int or None
            The stored value asked for (``--pixel-fill``); None: black for the photometric
            interpretation (a palette's darkest entry, MONOCHROME1's highest value).
        ds : Dataset
            The whole image: a palette colour image's palette is in it.

        Returns
        -------
        tuple[int, ...]
            One value per sample.

        Raises
        ------
        WithholdError
            The configured value does not fit the pixel data, or a palette colour image has
            no palette.
        """
        top = (1 << self.bits_stored) - 1
        low, high = (-(1 << (self.bits_stored - 1)), (1 << (self.bits_stored - 1)) - 1)
        if not self.signed:
            low, high = 0, top
        if self.samples == 1:
            if configured is not None:
                value = configured
            elif self.photometric == "PALETTE COLOR":
                value = _darkest_index(ds)
            else:
                value = high if self.monochrome1 else low
            if not low <= value <= high:
                raise WithholdError("the configured fill value does not fit the pixel data")
            return (value,)
        value = 0 if configured is None else configured
        if not 0 <= value <= top:
            raise WithholdError("the configured fill value does not fit the pixel data")
        if self.photometric.startswith("YBR_FULL") and not self.decode_as_rgb:
            middle = 1 << (self.bits_stored - 1)
            return (value, middle, middle)
        return (value, value, value)


def _darkest_index(ds: Dataset) -> int:
    import numpy as np
    from pydicom.pixels.processing import apply_color_lut

    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    if descriptor is None:
        raise WithholdError("a palette colour image without its palette")
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


def decode_frames(ds: Dataset, ts: UID, image: PixelImage) -> Iterator[NDArray[Any]]:
    """Decode the frames one by one.

    Parameters
    ----------
    ds : Dataset
        The whole image (:func:`read_full`).
    ts : UID
        Its transfer syntax (named in the reason when decoding fails).
    image : PixelImage
        Its pixel module: lossy JPEG is decoded to RGB, the rest as stored.

    Yields
    ------
    NDArray
        Each frame's stored values.

    Raises
    ------
    WithholdError
        The pixel data cannot be decoded.
    """
    from pydicom.pixels.utils import iter_pixels

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield from iter_pixels(ds, as_rgb=image.decode_as_rgb)
    except Exception as exc:
        raise WithholdError(
            f"the pixel data cannot be decoded ({UID(ts).name}: {type(exc).__name__})"
        ) from None
