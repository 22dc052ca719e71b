"""Redaction: boxes painted over text in every frame, the pixel data re-encoded.

Every box of every frame is filled with black (or a configured value) in the stored pixel
values; photometric interpretation, bit depth and geometry are kept. Uncompressed data is
changed in place (only the boxes' bytes differ); RLE, JPEG-LS and JPEG 2000 lossless are
decoded and re-encoded losslessly in the same transfer syntax and checked by decoding again;
JPEG baseline and lossy JPEG 2000 are re-encoded lossily and the Lossy Image Compression
attributes record the extra step (PS3.3 C.7.6.1.1.5).

Whatever cannot be done raises :class:`~dicomveil.cleaners.pixels.image.WithholdError` with
the reason the file is withheld.
"""

from __future__ import annotations

import io as _io
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.cleaners.pixels.header import header_text, header_values
from dicomveil.cleaners.pixels.image import JPEG_LOSSY, PixelImage, WithholdError, decode_frames
from dicomveil.io import PixelSource, SourceFile

if TYPE_CHECKING:
    from numpy.typing import NDArray

_LOSSLESS_ENCODED = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLSNearLossless})


def redact(
    source: SourceFile,
    ds: Dataset,
    image: PixelImage,
    redactions: Mapping[int, tuple[Box, ...]],
    *,
    fill: int | None,
    jpeg_quality: int,
) -> PixelSource:
    """Black out boxes in the frames and encode the result in the source's transfer syntax.

    Native pixel data is changed in place, byte for byte; compressed pixel data is decoded,
    painted and re-encoded (losslessly when the source is lossless, checked by decoding it
    again). A lossy step is recorded in the Lossy Image Compression attributes of
    ``source.dataset``.

    Parameters
    ----------
    source : SourceFile
        The input: its header receives the lossy compression attributes.
    ds : Dataset
        The whole image (:func:`read_full`).
    image : PixelImage
        Its pixel module.
    redactions : Mapping[int, tuple[Box, ...]]
        The boxes to black out, by frame index (frames not named are kept as they are).
    fill : int or None
        The stored value painted (None: black).
    jpeg_quality : int
        The quality of a lossy JPEG re-encoding (1 to 100).

    Returns
    -------
    PixelSource
        The redacted pixel data, for :func:`dicomveil.io.write_output`.

    Raises
    ------
    WithholdError
        The pixel data cannot be redacted or re-encoded.
    """
    painted = image.fill(fill, ds)
    if not image.encapsulated:
        return PixelSource(_redact_native(ds, image, redactions, painted))
    ts = image.transfer_syntax
    if ts not in _LOSSLESS_ENCODED and ts not in JPEG_LOSSY and ts != JPEG2000:
        raise WithholdError(f"burned-in text found but {UID(ts).name} cannot be re-encoded")
    frames = [
        _painted(frame, redactions.get(i, ()), painted)
        for i, frame in enumerate(decode_frames(ds, ts, image))
    ]
    if ts in JPEG_LOSSY:
        data = _encode_jpeg(frames, image, jpeg_quality)
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
    ds: Dataset, image: PixelImage, redactions: Mapping[int, tuple[Box, ...]], fill: tuple[int, ...]
) -> bytes:
    """Black out the boxes in the stored bytes; every other byte stays as it was."""
    import numpy as np

    if image.bits_allocated not in (8, 16, 32):
        raise WithholdError(
            f"burned-in text found but BitsAllocated {image.bits_allocated} cannot be redacted"
        )
    if image.photometric in ("YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420"):
        raise WithholdError("burned-in text found but subsampled native colour cannot be redacted")
    raw = bytearray(ds.PixelData)
    per_sample = image.bits_allocated // 8
    frame_size = image.rows * image.columns * image.samples * per_sample
    if len(raw) < frame_size * image.frames:
        raise WithholdError("the pixel data is shorter than its frames")
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
    frames: list[NDArray[Any]], ds: Dataset, image: PixelImage, source: SourceFile
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
        raise WithholdError(
            f"burned-in text found but {UID(ts).name} cannot be re-encoded ({type(exc).__name__})"
        ) from None
    return bytes(scratch.PixelData)


def _check_lossless(
    data: bytes, ds: Dataset, image: PixelImage, frames: list[NDArray[Any]]
) -> None:
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
                raise WithholdError("re-encoding was not lossless")


def _encode_jpeg(frames: list[NDArray[Any]], image: PixelImage, quality: int) -> bytes:
    """Lossy JPEG (8-bit) re-encoded by Pillow: pydicom has no JPEG baseline encoder."""
    from PIL import Image
    from pydicom.encaps import encapsulate

    if image.bits_allocated != 8 or image.bits_stored > 8:
        raise WithholdError("burned-in text found but 12-bit JPEG cannot be re-encoded")
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


def _ratio(image: PixelImage, compressed: int) -> float:
    size = image.rows * image.columns * image.samples * image.frames * image.bits_allocated // 8
    return size / compressed if compressed > 0 else 1.0


def _record_lossy(
    source: SourceFile, full: Dataset, image: PixelImage, data: bytes, method: str
) -> None:
    """PS3.3 C.7.6.1.1.5: one ratio and one method per lossy step, the new one appended."""
    header = source.dataset
    methods = [str(m) for m in header_values(header.get("LossyImageCompressionMethod"))]
    ratios = [str(r) for r in header_values(header.get("LossyImageCompressionRatio"))]
    if header_text(header, 0x00282110) != "01" or not methods:
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


def _ds(value: float) -> str:
    return f"{value:.2f}"[:16]
