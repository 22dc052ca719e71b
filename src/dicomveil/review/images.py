"""Thumbnails of frames for the reviewer: a frame decoded (pydicom's pixel handlers and the
``pixels`` extra's codecs), windowed to 8 bits, scaled down, as PNG; the regions where the
de-identified frame differs from the original (burned-in text painted over) outlined in red.

The regions are found by comparing the two frames, not by asking the cleaner what it
painted: what the reviewer sees is what the file holds.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["ImagesUnavailableError", "changed_regions", "thumbnail"]

SIZE: Final = 320  # the longer side of a thumbnail, pixels


class ImagesUnavailableError(Exception):
    """Thumbnails need numpy, Pillow and scipy (``pip install 'dicomveil[pixels]'``), or the
    frame cannot be decoded."""


def _frame(path: Path, index: int) -> Any:
    try:
        from pydicom.pixels.utils import pixel_array
    except ImportError as exc:  # pragma: no cover - pydicom 3 has it
        raise ImagesUnavailableError(str(exc)) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pixel_array(path, index=index)
    except ImportError:
        raise ImagesUnavailableError("images need: pip install 'dicomveil[pixels]'") from None
    except Exception as exc:
        raise ImagesUnavailableError(
            f"the frame cannot be decoded ({type(exc).__name__})"
        ) from None


def changed_regions(
    original: Path, deidentified: Path, index: int = 0
) -> list[tuple[int, int, int, int]]:
    """The boxes (left, top, right, bottom; frame pixels) where two frames differ.

    Parameters
    ----------
    original, deidentified : pathlib.Path
        The files.
    index : int
        The frame.

    Returns
    -------
    list of tuple
        The boxes (empty when the frames are equal or of different shapes).

    Raises
    ------
    ImagesUnavailableError
        A frame cannot be decoded, or the libraries are missing.
    """
    try:
        import numpy as np
        from scipy import ndimage
    except ImportError:
        raise ImagesUnavailableError("images need: pip install 'dicomveil[pixels]'") from None
    before, after = _frame(original, index), _frame(deidentified, index)
    if before.shape != after.shape:
        return []
    mask = before != after
    if mask.ndim == 3:
        mask = mask.any(axis=2)
    if not mask.any():
        return []
    # Letters of one line painted as one box: close small gaps first.
    grown = ndimage.binary_dilation(mask, iterations=3)
    labels, _count = ndimage.label(grown)
    boxes = []
    for found in ndimage.find_objects(labels):
        if found is None:
            continue
        rows, cols = found
        boxes.append((int(cols.start), int(rows.start), int(cols.stop), int(rows.stop)))
    return sorted(boxes, key=lambda b: (b[1], b[0]))[:200] if np.any(mask) else []


def thumbnail(path: Path, index: int = 0, boxes: Sequence[tuple[int, int, int, int]] = ()) -> bytes:
    """A frame as a PNG thumbnail, with boxes outlined.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    index : int
        The frame.
    boxes : list of tuple
        Boxes to outline (frame pixels).

    Returns
    -------
    bytes
        The PNG.

    Raises
    ------
    ImagesUnavailableError
        The frame cannot be decoded, or the libraries are missing.
    """
    try:
        import numpy as np
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImagesUnavailableError("images need: pip install 'dicomveil[pixels]'") from None
    frame = _frame(path, index)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        data = frame[..., :3].astype(np.float64)
        low, high = float(data.min()), float(data.max())
        scaled = (data - low) * (255.0 / (high - low)) if high > low else data * 0
        image = Image.fromarray(scaled.astype(np.uint8), "RGB")
    else:
        data = frame.astype(np.float64)
        low, high = (float(v) for v in np.percentile(data, (0.5, 99.5)))
        if high <= low:
            low, high = float(data.min()), float(data.max()) or 1.0
        scaled = np.clip((data - low) * (255.0 / (high - low or 1.0)), 0, 255)
        image = Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    width, height = image.size
    factor = min(1.0, SIZE / max(width, height))
    if factor < 1.0:
        image = image.resize((max(1, round(width * factor)), max(1, round(height * factor))))
    draw = ImageDraw.Draw(image)
    for left, top, right, bottom in boxes:
        draw.rectangle(
            (left * factor, top * factor, right * factor, bottom * factor),
            outline=(255, 40, 40),
            width=2,
        )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
