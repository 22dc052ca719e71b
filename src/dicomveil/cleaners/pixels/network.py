"""The second detector of burned-in text: PP-OCRv4's text detection network, on the CPU.

Tesseract (:mod:`~dicomveil.cleaners.pixels.ocr`) reads text; it also misses small, faint,
textured and coloured text, because its page segmentation was made for documents. A text
*detection* network finds where text is without reading it: PaddleOCR's PP-OCRv4 detector
(a differentiable-binarisation network, "DB"), as shipped in the ``rapidocr-onnxruntime``
wheel, run with ``onnxruntime``. The model file is in this package
(``data/text-detector/``, with its provenance: version, licence Apache-2.0, SHA-256), copied
there by ``tools/vendor_text_detector.py``; nothing is downloaded at run time.

The network gives each pixel a probability of being inside text; pixels above
:data:`_PIXEL_THRESHOLD` are joined into regions, each region's mean probability is its
score, and its box is widened by the network's shrink ratio (the training labels were
shrunk; PP-OCR's "unclip"). The post-processing here is our own, with numpy and scipy: boxes
are upright rectangles (burned-in text is horizontal).

Optional: ``pip install 'dicomveil[pixels]'`` (onnxruntime, scipy); :func:`unavailable` says
what is missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MODEL: Final = "ppocr-v4-det.onnx"
PROVENANCE: Final = "ppocr-v4-det.json"
_FOLDER: Final = "text-detector"

# PP-OCR's own settings for this model (rapidocr-onnxruntime 1.4.4 config.yaml): the short
# side is brought to at least _MIN_SIDE pixels, both sides to multiples of 32; pixels whose
# probability is above _PIXEL_THRESHOLD are text; a region is a box when its mean
# probability is at least _BOX_THRESHOLD; its box grows by _UNCLIP x area / perimeter.
_MIN_SIDE: Final = 736
_MAX_SIDE: Final = 2048
_PIXEL_THRESHOLD: Final = 0.3
_BOX_THRESHOLD: Final = 0.5
_UNCLIP: Final = 1.6
_MIN_SIZE: Final = 3  # pixels of the network's map: smaller regions are not text
# The frame is looked at with a border of its own edge pixels: text on the very edge (a
# footer on the last rows) is otherwise missed, as the network never saw text cut by a border.
_BORDER: Final = 32


@dataclass(frozen=True, slots=True)
class Region:
    """A region of text the network found, in the frame's pixel coordinates.

    Attributes
    ----------
    x, y : int
        The top-left corner.
    width, height : int
        The size in pixels (grown as PP-OCR grows its regions).
    score : float
        The region's mean text probability, 0 to 1.
    length, thickness : float
        Its extent along and across its main axis, in the frame's pixels (a line of text
        turned by any angle is long and thin; a blob of anatomy is not); 0 when unknown.
    """

    x: int
    y: int
    width: int
    height: int
    score: float
    length: float = 0.0
    thickness: float = 0.0


@cache
def unavailable() -> str | None:
    """Tell why the network cannot run here (checked once per process).

    Returns
    -------
    str or None
        What is missing and how to install it; None when it can run.
    """
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
        import scipy.ndimage  # noqa: F401
        from PIL import Image  # noqa: F401
    except ImportError as exc:
        return (
            f"the text detection network is not available ({exc.name} is missing): "
            "pip install 'dicomveil[pixels]'"
        )
    if not resources.files(__package__).joinpath("data", _FOLDER, MODEL).is_file():
        return "the text detection network's model file is missing from the installation"
    return None


def provenance() -> dict[str, Any]:
    """Where the bundled model comes from: package, version, licence, file and SHA-256."""
    text = resources.files(__package__).joinpath("data", _FOLDER, PROVENANCE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _session() -> Any:
    """The model, loaded once per process, on one thread (a run's workers are processes)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("DICOMVEIL_DETECTOR_THREADS", "1"))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    model = resources.files(__package__).joinpath("data", _FOLDER, MODEL).read_bytes()
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _sizes(rows: int, columns: int, min_side: int) -> tuple[int, int]:
    """The network's input size: the short side at least ``min_side``, the long one at most
    :data:`_MAX_SIDE`, both multiples of 32."""
    ratio = min(max(1.0, min_side / min(rows, columns)), _MAX_SIDE / max(rows, columns))
    return (
        max(32, round(rows * ratio / 32) * 32),
        max(32, round(columns * ratio / 32) * 32),
    )


def probabilities(frame: NDArray[np.uint8], min_side: int = _MIN_SIDE) -> NDArray[np.float32]:
    """The network's text probability per pixel of a frame, at the network's size.

    Parameters
    ----------
    frame : NDArray[np.uint8]
        Rows x columns (grey) or rows x columns x 3 (RGB).
    min_side : int
        The least short side the frame is enlarged to.

    Returns
    -------
    NDArray[np.float32]
        The probabilities, rows x columns of the network's input (:func:`_sizes`).
    """
    import numpy as np
    from PIL import Image

    rows, columns = frame.shape[:2]
    height, width = _sizes(rows, columns, min_side)
    picture = Image.fromarray(np.ascontiguousarray(frame))
    picture = picture.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    data = np.asarray(picture, dtype=np.float32)[:, :, ::-1]  # the model was trained on BGR
    data = (data / 127.5 - 1.0).transpose(2, 0, 1)[np.newaxis]
    session = _session()
    name = session.get_inputs()[0].name
    output = session.run(None, {name: np.ascontiguousarray(data)})[0]
    result: NDArray[np.float32] = output[0, 0]
    return result


def _extents(mask: NDArray[np.bool_], sx: float, sy: float) -> tuple[float, float]:
    """A region's length and thickness in the frame's pixels: of the band of the same
    second moments along its principal axes (a band of width t has variance t**2 / 12)."""
    import numpy as np

    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return 0.0, 0.0
    low, high = np.linalg.eigvalsh(np.cov(np.vstack([xs * sx, ys * sy])))
    return float(np.sqrt(12 * max(high, 0.0))), float(np.sqrt(12 * max(low, 0.0)))


def find_regions(
    frame: NDArray[np.uint8],
    *,
    box_threshold: float = _BOX_THRESHOLD,
    min_side: int = _MIN_SIDE,
) -> list[Region]:
    """Find the regions of text in a frame.

    Parameters
    ----------
    frame : NDArray[np.uint8]
        Rows x columns (grey) or rows x columns x 3 (RGB), 8 bits.
    box_threshold : float
        The least mean probability of a region kept.
    min_side : int
        The least short side the frame is enlarged to (small text must reach ~10 pixels).

    Returns
    -------
    list[Region]
        The regions, in the frame's coordinates, top to bottom.
    """
    import numpy as np
    from scipy import ndimage

    rows, columns = frame.shape[:2]
    border = ((_BORDER, _BORDER), (_BORDER, _BORDER)) + (((0, 0),) if frame.ndim == 3 else ())
    prob = probabilities(np.pad(frame, border, mode="edge"), min_side + 2 * _BORDER)
    height, width = prob.shape
    mask = ndimage.binary_dilation(prob > _PIXEL_THRESHOLD, structure=np.ones((2, 2), bool))
    labels, count = ndimage.label(mask)
    if count == 0:
        return []
    scores = ndimage.mean(prob, labels, index=np.arange(1, count + 1))
    sy, sx = (rows + 2 * _BORDER) / height, (columns + 2 * _BORDER) / width
    found: list[Region] = []
    for index, where in enumerate(ndimage.find_objects(labels)):
        if where is None or scores[index] < box_threshold:
            continue
        top, bottom = where[0].start, where[0].stop
        left, right = where[1].start, where[1].stop
        h, w = bottom - top, right - left
        if min(h, w) < _MIN_SIZE:
            continue
        grow = h * w * _UNCLIP / (2 * (h + w))
        x0 = max(0, int((left - grow) * sx) - _BORDER)
        y0 = max(0, int((top - grow) * sy) - _BORDER)
        x1 = min(columns, int(np.ceil((right + grow) * sx)) - _BORDER)
        y1 = min(rows, int(np.ceil((bottom + grow) * sy)) - _BORDER)
        if x1 > x0 and y1 > y0:
            length, thickness = _extents(labels[where] == index + 1, sx, sy)
            found.append(Region(x0, y0, x1 - x0, y1 - y0, float(scores[index]), length, thickness))
    return sorted(found, key=lambda r: (r.y, r.x))
